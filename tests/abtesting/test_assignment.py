from __future__ import annotations

import hashlib
import math

from abtesting.assignment import CONTROL, VARIANT, assign, bucket


def test_it_keeps_a_user_in_the_same_arm():
    arms = {assign(salt="s1", user_ref="user-42", traffic_split=0.5) for _ in range(50)}
    assert len(arms) == 1


def test_it_is_a_pure_function_of_salt_and_user():
    digest = hashlib.sha256(b"s1:user-42").digest()
    assert bucket(salt="s1", user_ref="user-42") == int.from_bytes(digest[:8], "big") / 2**64
    expected = VARIANT if bucket(salt="s1", user_ref="user-42") < 0.3 else CONTROL
    assert assign(salt="s1", user_ref="user-42", traffic_split=0.3) == expected


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
