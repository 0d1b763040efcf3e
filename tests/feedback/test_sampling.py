"""Deterministic sampling (feedback/sampling.py): a key's fixed position in [0, 1)."""

from __future__ import annotations

from feedback.sampling import unit_interval


def test_a_key_has_one_position():
    assert unit_interval("7:req-1") == unit_interval("7:req-1")


def test_positions_lie_in_the_unit_interval_and_spread_over_it():
    positions = [unit_interval(f"7:req-{i}") for i in range(10_000)]
    assert all(0.0 <= u < 1.0 for u in positions)
    assert abs(sum(positions) / len(positions) - 0.5) < 0.02  # the mean of a uniform sample
    assert abs(sum(u < 0.1 for u in positions) / len(positions) - 0.1) < 0.01  # a 10 % sample is 10 %
