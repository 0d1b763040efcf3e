from __future__ import annotations

import math
import os
import subprocess
import sys

from django.conf import settings

from abtesting.assignment import CONTROL, VARIANT, arm_names, assign, bucket


def test_it_keeps_a_user_in_the_same_arm():
    arms = {assign(salt="s1", user_ref="user-42", traffic_split=0.5) for _ in range(50)}
    assert len(arms) == 1


def test_a_users_position_is_the_same_on_every_call_and_in_every_process():
    here = [bucket(salt="s1", user_ref=f"user-{i}") for i in range(5)]
    assert here == [bucket(salt="s1", user_ref=f"user-{i}") for i in range(5)]
    # Another interpreter with another hash seed (a restarted worker) puts every user where we do.
    code = (
        "from abtesting.assignment import bucket; "
        "print([bucket(salt='s1', user_ref=f'user-{i}') for i in range(5)])"
    )
    other = subprocess.run(
        [sys.executable, "-c", code],
        cwd=settings.BASE_DIR,
        env={**os.environ, "PYTHONHASHSEED": "12345"},
        capture_output=True,
        text=True,
        check=True,
    )
    assert other.stdout.strip() == repr(here)


def test_positions_are_uniform_in_the_unit_interval():
    n, bins = 20_000, 10
    positions = [bucket(salt="exp-a", user_ref=f"u{i}") for i in range(n)]
    assert all(0.0 <= u < 1.0 for u in positions)
    counts = [0] * bins
    for u in positions:
        counts[int(u * bins)] += 1
    expected = n / bins
    # Each tenth of the interval holds a tenth of the users, within 4 standard deviations.
    assert all(abs(c - expected) < 4 * math.sqrt(expected * (1 - 1 / bins)) for c in counts), counts


def test_another_salt_puts_the_same_user_elsewhere():
    users = [f"u{i}" for i in range(1_000)]
    moved = sum(bucket(salt="exp-a", user_ref=u) != bucket(salt="exp-b", user_ref=u) for u in users)
    assert moved == len(users)


def test_the_arm_follows_the_users_position():
    for i in range(2_000):
        u = bucket(salt="s1", user_ref=f"user-{i}")
        assert assign(salt="s1", user_ref=f"user-{i}", traffic_split=0.3) == (VARIANT if u < 0.3 else CONTROL)


def test_the_realised_split_matches_the_configured_one_within_sampling_error():
    n, split = 20_000, 0.3
    share = sum(assign(salt="exp-a", user_ref=f"u{i}", traffic_split=split) == VARIANT for i in range(n)) / n
    assert abs(share - split) < 4 * math.sqrt(split * (1 - split) / n)


def test_experiments_with_different_salts_assign_independently():
    n = 20_000
    both = sum(
        assign(salt="exp-a", user_ref=f"u{i}", traffic_split=0.5) == VARIANT
        and assign(salt="exp-b", user_ref=f"u{i}", traffic_split=0.5) == VARIANT
        for i in range(n)
    )
    assert abs(both / n - 0.25) < 4 * math.sqrt(0.25 * 0.75 / n)


def test_raising_the_split_only_moves_users_from_control_to_variant():
    users = [f"u{i}" for i in range(5_000)]
    at_10 = {u for u in users if assign(salt="r", user_ref=u, traffic_split=0.1) == VARIANT}
    at_50 = {u for u in users if assign(salt="r", user_ref=u, traffic_split=0.5) == VARIANT}
    assert at_10 <= at_50
    assert len(at_10) < len(at_50)


def test_requests_without_a_user_ref_are_assigned_at_random_per_request():
    n, split = 20_000, 0.3
    arms = [assign(salt="exp-a", user_ref="", traffic_split=split) for _ in range(n)]
    share = arms.count(VARIANT) / n
    assert abs(share - split) < 4 * math.sqrt(split * (1 - split) / n)
    assert set(arms) == {CONTROL, VARIANT}


# ---------------------------------------------------------------- several variants


def test_k_arms_get_equal_shares_and_keep_their_users():
    """30k users over control and three variants (traffic_split 3/4): each arm a quarter (chi-square)."""
    from scipy.stats import chisquare

    n, k = 30_000, 3
    arms = [assign(salt="multi", user_ref=f"u{i}", traffic_split=k / (k + 1), variants=k) for i in range(n)]
    counts = [arms.count(arm) for arm in arm_names(k)]
    assert sum(counts) == n and set(arms) == {"control", "variant", "variant2", "variant3"}
    assert chisquare(counts).pvalue > 0.001, counts
    # Sticky: the same user, asked again, is in the same arm.
    again = [assign(salt="multi", user_ref=f"u{i}", traffic_split=0.75, variants=k) for i in range(2_000)]
    assert again == arms[:2_000]


def test_the_variants_split_the_variant_share_in_arm_order():
    for i in range(3_000):
        u = bucket(salt="s2", user_ref=f"user-{i}")
        arm = assign(salt="s2", user_ref=f"user-{i}", traffic_split=0.8, variants=4)
        expected = "control" if u >= 0.8 else ("variant", "variant2", "variant3", "variant4")[int(u / 0.2)]
        assert arm == expected


def test_one_variant_is_the_two_arm_rule_unchanged():
    for split in (0.1, 0.3, 0.5, 0.9):
        for i in range(2_000):
            u = bucket(salt="s3", user_ref=f"user-{i}")
            arm = assign(salt="s3", user_ref=f"user-{i}", traffic_split=split, variants=1)
            assert arm == assign(salt="s3", user_ref=f"user-{i}", traffic_split=split)
            assert arm == (VARIANT if u < split else CONTROL)


def test_anonymous_requests_spread_over_every_arm():
    arms = {assign(salt="a", user_ref="", traffic_split=0.75, variants=3) for _ in range(2_000)}
    assert arms == {"control", "variant", "variant2", "variant3"}


def test_arm_names_fit_the_interaction_column():
    from abtesting.models import ExperimentUnit, ExperimentVariant
    from feedback.models import Interaction

    assert arm_names(4) == ("control", "variant", "variant2", "variant3", "variant4")
    for model in (Interaction, ExperimentUnit, ExperimentVariant):
        width = model._meta.get_field("arm").max_length
        assert all(len(arm) <= width for arm in arm_names(4)), model
    assert set(arm_names(4)) <= set(Interaction.Arm.values)
