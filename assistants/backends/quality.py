"""The answer-quality metric: how close an answer is to the reference answer (SQuAD token F1).

The local model tunes its threshold with it, the local trainer reports validation accuracy with it, the
offline evaluation's ``token_f1`` grader is it, and the demo's customers judge answers with it: one
definition of "a correct answer" for all of them.
"""

from __future__ import annotations

import re
import string
from collections import Counter

__all__ = ["CORRECT_AT", "answer_quality", "squad_tokens"]

# An answer counts as "correct" when its token F1 against the reference is at least
# 0.5. Why 0.5: the model returns whole stored answers, so a prediction is usually
# either the right answer (F1 = 1.0, or ~0.7-0.9 when a reviewer reworded it) or the
# answer to a different question (typically F1 < 0.3, sharing only filler words).
# 0.5 sits in that gap: it tolerates rewording and an added greeting, while an answer
# has to share at least about half of its content words with the reference, in both
# directions, to count. It is also the conventional cut-off for "partially right" in
# SQuAD-style evaluation.
CORRECT_AT = 0.5

_ARTICLES = re.compile(r"\b(a|an|the)\b")


def squad_tokens(text: str) -> list[str]:
    """SQuAD normalisation: lowercase, drop punctuation and articles, split on spaces."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in string.punctuation)
    text = _ARTICLES.sub(" ", text)
    return text.split()


def answer_quality(candidate: str | None, reference: str) -> float:
    """Token-level F1 between a candidate answer and the reference answer (0.0 - 1.0).

    This is the SQuAD answer metric: both texts are lowercased, punctuation and the
    articles a/an/the are removed, and F1 is computed over the bag of remaining
    tokens. It rewards answers with the same content even when worded a little
    differently, which exact-match would not.

    A missing or empty candidate (the model abstained) scores 0.0. If the candidate
    is non-empty but both texts normalise to nothing (e.g. "The." vs "a"), SQuAD
    counts that as a match (1.0); if only one does, 0.0.
    """
    if candidate is None or not candidate.strip():
        return 0.0
    cand_tokens = squad_tokens(candidate)
    ref_tokens = squad_tokens(reference or "")
    if not cand_tokens or not ref_tokens:
        return float(cand_tokens == ref_tokens)
    overlap = sum((Counter(cand_tokens) & Counter(ref_tokens)).values())
    if overlap == 0:
        return 0.0
    precision = overlap / len(cand_tokens)
    recall = overlap / len(ref_tokens)
    return 2 * precision * recall / (precision + recall)
