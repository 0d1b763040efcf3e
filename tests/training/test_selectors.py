"""Reads over training: datasets and the health blocks the REST API answers with."""

from __future__ import annotations

from training import selectors

from .conftest import make_dataset, make_job

PAIRS = [("Where is my order?", "Open Orders and click Track.")]


def test_datasets_are_listed_newest_first_per_assistant(assistant, other_assistant):
    first = make_dataset(assistant, PAIRS, PAIRS)
    theirs = make_dataset(other_assistant, PAIRS, PAIRS)
    second = make_dataset(assistant, PAIRS, PAIRS)
    assert list(selectors.dataset_list(assistant=assistant)) == [second, first]
    assert list(selectors.dataset_list()) == [second, theirs, first]


def test_a_dataset_comes_with_its_assistant(assistant, django_assert_num_queries):
    dataset = make_dataset(assistant, PAIRS, PAIRS)
    with django_assert_num_queries(1):
        assert selectors.dataset_get(dataset_id=dataset.pk).assistant.slug == "shop"
    assert selectors.dataset_get(dataset_id=dataset.pk + 1) is None


def test_the_health_of_all_assistants_is_one_block_each(assistant, other_assistant):
    job = make_job(assistant, "training")
    blocks = {block["assistant"]: block for block in selectors.training_loop_health_all()}
    assert set(blocks) == {"shop", "bank"}
    assert blocks["shop"]["training_loop"]["active_job"] == {
        "id": job.pk,
        "status": "training",
        "trigger": "manual",
    }
    assert blocks["bank"]["training_loop"]["active_job"] is None
    assert blocks["bank"]["training_loop_ready"] is False
