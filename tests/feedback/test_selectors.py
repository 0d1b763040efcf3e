from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from feedback.models import Feedback
from feedback.selectors import (
    InteractionRef,
    Share,
    comment_words_pattern,
    feedback_comment_match_count,
    feedback_correction_count,
    feedback_daily_series,
    feedback_kind_share,
    feedback_rated_at_most_count,
    feedback_rating_average,
    interaction_error_count,
    interaction_refs,
    interaction_with_assistant_get,
)
from feedback.services import interaction_log


def _feedback(assistant, i, when, **fields):
    interaction = interaction_log(
        assistant=assistant, request_id=f"r{i}", messages=[{"role": "user", "content": "q"}], response="a"
    ).interaction
    return Feedback.objects.create(
        interaction=interaction, assistant=assistant, kind="rating", created_at=when, **fields
    )


def test_the_daily_series_buckets_by_local_day(assistant, django_assert_max_num_queries):
    now = timezone.localtime()
    today_noon = now.replace(hour=12, minute=0, second=0, microsecond=0)
    _feedback(assistant, 1, today_noon - timedelta(days=2), rating=5)
    _feedback(assistant, 2, today_noon - timedelta(days=2), rating=2, helpful=False)
    _feedback(assistant, 3, today_noon, helpful=True)
    _feedback(assistant, 4, today_noon - timedelta(days=40), rating=5)  # outside the window
    with django_assert_max_num_queries(4):  # mark, largest ids, rollups, rows past the mark
        series = feedback_daily_series(assistant=assistant, days=30)
    assert [row["day"] for row in series] == [
        (today_noon - timedelta(days=2)).date().isoformat(),
        today_noon.date().isoformat(),
    ]
    first, last = series
    assert (first["total_feedback"], first["success_rate"], first["avg_rating"]) == (2, 0.5, 3.5)
    assert (last["total_feedback"], last["success_rate"], last["helpful_rate"]) == (1, 1.0, 1.0)


def test_interaction_refs_resolve_each_item_in_order(assistant, other_assistant, django_assert_num_queries):
    mine = [_feedback(assistant, i, timezone.now(), rating=5).interaction for i in (1, 2)]
    theirs = interaction_log(
        assistant=other_assistant, request_id="r1", messages=[{"role": "user", "content": "q"}], response="a"
    ).interaction
    items = [
        {"request_id": "r2"},
        {"interaction_id": mine[0].pk},
        {"interaction_id": theirs.pk},  # another assistant's: not found for this one
        {"request_id": "ghost"},
        {"assistant": "bank", "request_id": "r1"},
    ]
    # One query per assistant and kind of reference: shop's ids and request ids, bank's request ids.
    with django_assert_num_queries(3):
        refs = interaction_refs(items=items, assistant_ids={None: assistant.pk, "bank": other_assistant.pk})
    assert refs == [
        InteractionRef(mine[1].pk, assistant.pk, False),
        InteractionRef(mine[0].pk, assistant.pk, False),
        None,
        None,
        InteractionRef(theirs.pk, other_assistant.pk, False),
    ]


def test_interaction_refs_find_request_ids_of_any_text(assistant):
    texts = ['say "hi"', 'back\\slash \\" mix', "{a,b}", "NULL", " padded ", "a,b;c'd", "émoji 🙂", "x" * 200]
    logged = {
        text: interaction_log(
            assistant=assistant, request_id=text, messages=[{"role": "user", "content": "q"}], response="a"
        ).interaction.pk
        for text in texts
    }
    items = [{"request_id": text} for text in [*texts, "null", "padded", "{a", "back\\slash"]]
    refs = interaction_refs(items=items, assistant_ids={None: assistant.pk})
    assert refs == [InteractionRef(logged[text], assistant.pk, False) for text in texts] + [None] * 4


def test_interaction_refs_carry_whether_the_assistant_redacts(assistant, other_assistant):
    other_assistant.redact_at_ingestion = True
    other_assistant.save(update_fields=("redact_at_ingestion",))
    mine, theirs = (
        interaction_log(
            assistant=a, request_id="r1", messages=[{"role": "user", "content": "q"}], response="a"
        ).interaction
        for a in (assistant, other_assistant)
    )
    refs = interaction_refs(
        items=[{"interaction_id": mine.pk}, {"assistant": "bank", "request_id": "r1"}],
        assistant_ids={None: assistant.pk, "bank": other_assistant.pk},
    )
    assert [ref.redacts for ref in refs] == [False, True]


def test_interaction_with_assistant_get_loads_what_the_api_shows(assistant, django_assert_num_queries):
    logged = _feedback(assistant, 1, timezone.now(), rating=5).interaction
    with django_assert_num_queries(1):
        interaction = interaction_with_assistant_get(interaction_id=logged.pk)
        assert (interaction.assistant.slug, interaction.model_version) == ("shop", None)
    assert interaction_with_assistant_get(interaction_id=logged.pk + 1) is None


def test_the_condition_figures_count_their_window_in_one_query_each(
    assistant, other_assistant, django_assert_num_queries
):
    now = timezone.now()
    _feedback(assistant, 1, now - timedelta(days=3), rating=1, accuracy=1, comment="Refund?")
    _feedback(assistant, 2, now - timedelta(hours=1), rating=2, comment="no REFUND, refunds")
    _feedback(assistant, 3, now - timedelta(hours=1), rating=5, accuracy=4, corrected_answer="Like this.")
    _feedback(other_assistant, 4, now - timedelta(hours=1), rating=1, comment="refund")
    for n, error in enumerate((None, "", "timeout")):
        interaction_log(assistant=assistant, request_id=f"e{n}", messages=[], response="", error=error)
    interaction_log(assistant=other_assistant, request_id="e9", messages=[], response="", error="timeout")
    since, until = now - timedelta(days=1), now + timedelta(minutes=1)
    window = {"assistant": assistant, "since": since, "until": until}
    with django_assert_num_queries(6):
        figures = (
            interaction_error_count(**window),
            feedback_correction_count(**window),
            feedback_rated_at_most_count(field="rating", at_most=2, **window),
            feedback_comment_match_count(words=["refund"], **window),
            feedback_kind_share(kind="rating", **window),
            feedback_rating_average(field="accuracy", **window),
        )
    assert figures == (1, 1, 1, 1, Share(1.0, 2), Share(4.0, 1))
    assert feedback_rated_at_most_count(assistant=assistant, field="accuracy", at_most=1) == 1
    assert feedback_comment_match_count(assistant=assistant, words=["refund", "no"]) == 2
    assert feedback_comment_match_count(assistant=assistant, words=[]) == 0
    assert feedback_kind_share(assistant=assistant, kind="rating", since=until) == Share(None, 0)
    assert feedback_rating_average(assistant=assistant, field="tone") == Share(None, 0)


def test_a_rating_field_that_does_not_exist_is_refused(assistant):
    with pytest.raises(ValueError, match="Unknown rating field 'comment'"):
        feedback_rated_at_most_count(assistant=assistant, field="comment", at_most=2)


def test_the_words_pattern_speaks_each_databases_dialect():
    assert (
        comment_words_pattern(["refund", "late delivery"], "postgresql") == r"\y(?:refund|late\ delivery)\y"
    )
    assert comment_words_pattern(["c.o.d"], "sqlite") == r"\b(?:c\.o\.d)\b"
