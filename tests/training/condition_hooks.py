"""Retrain condition hooks for the tests (named by dotted path in RETRAIN_CONDITION_HOOKS)."""

from __future__ import annotations


def errors_seen(assistant, policy, stats):
    """A reason built from what the hook was given, so a test can see the arguments."""
    return [
        f"{assistant.slug}: {stats['feedback']['error_count']} errors in {stats['feedback_count']} "
        f"feedback (policy of {policy.assistant.slug})"
    ]


def says_nothing(assistant, policy, stats):
    return None


def one_string(assistant, policy, stats):
    return "Team rule: always"


def broken(assistant, policy, stats):
    raise RuntimeError("the team's rule broke")


NOT_CALLABLE = 42


def returns_true(assistant, policy, stats):
    return True  # a bug in the team's hook: not a reason, nor a list of them
