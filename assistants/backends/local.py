"""The embedded local model: a small retrieval answerer that learns from feedback.

(Over 400 lines: one model class and its index, about a third of it this explanation.)

What it is
----------
A customer-service "model" that answers a question by finding the most similar
question it was trained on and returning that example's answer. Training data are
chat-completion examples reduced to (user question -> approved or corrected answer)
pairs, so every correction a reviewer makes becomes a new example and the next
version answers differently. It is real machine learning (TF-IDF features, cosine
nearest neighbour, a threshold tuned on held-out data), small enough to train in
seconds inside a web worker and needing no network or GPU.

How similarity is computed
--------------------------
Each question is normalised (lowercase, punctuation removed) and turned into two
L2-normalised TF-IDF vectors with sublinear term frequency:

* word 1-2 grams -- captures the vocabulary and short phrases ("reset password");
* character 3-5 grams within word boundaries ("char_wb") -- survives typos and
  inflections ("pasword", "resetting") that break word features.

Both halves are scaled by sqrt(1/2) and stacked, so each row still has unit length
and the cosine similarity of two questions is simply the average of the word cosine
and the char cosine. Scores therefore lie in [0, 1].

``fit(features=...)`` can keep one half only ("word" or "char", unscaled): a trainer
setting a comparison of candidates can vary (training/trainers/local.py), because
which features suit an assistant's customers is an empirical question.

Versions and the fallback (design choice)
-----------------------------------------
The design (docs/ARCHITECTURE.md) says a new version should fall back to the
previous version "when unsure". We implement that as a *two-tier index stored in
one artifact* rather than nesting the whole previous model inside the new one:

* tier "model"    -- the examples this version was trained on (``fit``'s arguments);
* tier "fallback" -- the base version's knowledge, flattened: the base's own
  examples plus whatever the base itself was falling back to.

Answering looks in the model tier first; only when its best match is below the
threshold do we consult the fallback tier (same threshold), and only when that is
also below the threshold do we return ``Answer(None, ...)`` so the caller can hand
off to a human. Flattening keeps artifacts bounded by the number of distinct
questions ever learned (nesting would copy every ancestor into every version) and
keeps answering at two index look-ups whatever the lineage depth.

Both tiers share one vectoriser, fitted on all questions, so their similarity
scores are on the same scale and one threshold is meaningful for both.

Duplicates: examples are keyed by the normalised question. When the same question
appears more than once in the training lists, the *later* example wins (feedback is
processed in time order, so the newest correction is the one we trust). A question
present in the new training data also removes the same question from the fallback
tier, so a corrected answer always overrides the old one.

Cost: on 2 cores, fitting 9,000 examples + tuning on 1,000 + answering 1,000 takes
about 3-5 s; answering runs at roughly 1,000-2,000 questions/s. Artifacts hold the
fitted vectorisers and the texts (~2 MB per 10,000 examples); the search index is
rebuilt on load (~1 s per 10,000 examples). A fitted model is read-only while
answering, so one instance can serve many threads; ``tune_threshold`` mutates it.

Security: ``load``/``from_bytes`` unpickle data. Only load artifacts this system
wrote itself (pass ``expected_sha256`` to verify the bytes you stored).
"""

from __future__ import annotations

import hashlib
import io
import math
import os
import pickle
import re
import string
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
from sklearn.feature_extraction.text import TfidfVectorizer

from assistants.backends.quality import CORRECT_AT, answer_quality

__all__ = [
    "DEFAULT_THRESHOLD",
    "FEATURES",
    "Answer",
    "LocalRetrievalModel",
]

# Threshold used until ``tune_threshold`` has seen validation data. Chosen from
# experiments on paraphrased FAQ questions: paraphrases and typo'd versions of a
# seen question usually score 0.55-0.95, while unrelated questions score below 0.1
# on a realistic corpus and up to ~0.35 on a tiny one (with few documents, shared
# filler words such as "what" and common character n-grams weigh more).
DEFAULT_THRESHOLD = 0.4

# Which TF-IDF halves a model uses: both (the default), word n-grams only, character n-grams only.
FEATURES = ("word+char", "word", "char")

# Artifact layout version, bumped when the pickled dictionary changes shape so an old
# artifact fails loudly instead of half-loading.
_FORMAT_VERSION = 1

# Queries are scored in chunks so that evaluating thousands of prompts against tens
# of thousands of examples never materialises a huge dense similarity matrix.
_QUERY_CHUNK = 512

_PUNCTUATION_TABLE = str.maketrans({ch: " " for ch in string.punctuation})
_WHITESPACE = re.compile(r"\s+")


# ----------------------------------------------------------------------------------
# Model
# ----------------------------------------------------------------------------------


@dataclass
class Answer:
    """One reply from the model.

    text   -- the answer, or None when the model is unsure (caller should hand off).
    score  -- cosine similarity of the best match that was considered (0.0 - 1.0).
    source -- "model" (this version's own examples), "fallback" (the previous
              version's knowledge) or "none" (nothing similar enough).
    """

    text: str | None
    score: float
    source: str


def _normalise_question(text: str) -> str:
    """Lowercase, turn punctuation into spaces, collapse whitespace.

    Used both as the dedup key and as the text fed to the vectorisers, so
    "How do I reset my password?" and "how do i reset my password" are the same
    question.
    """
    text = (text or "").lower().translate(_PUNCTUATION_TABLE)
    return _WHITESPACE.sub(" ", text).strip()


def _dedupe(questions: Sequence[str], answers: Sequence[str]) -> dict[str, tuple[str, str]]:
    """Map normalised question -> (original question, answer); later examples win.

    Examples whose question or answer is blank carry no information and are dropped.
    """
    merged: dict[str, tuple[str, str]] = {}
    for question, answer in zip(questions, answers, strict=True):
        if not isinstance(question, str) or not isinstance(answer, str):
            raise TypeError("questions and answers must be strings")
        key = _normalise_question(question)
        if not key or not answer.strip():
            continue
        # pop + re-insert so the dict order reflects the most recent occurrence
        merged.pop(key, None)
        merged[key] = (question, answer)
    return merged


class _TierIndex:
    """Fast exact cosine search over one tier's unit-length sparse rows.

    A plain sparse product ``queries @ rows.T`` is slow here because a few n-grams
    ("how", " my ", "do i") occur in most questions: that makes the result fully
    dense, and sparse-times-sparse code is poor at dense output. So the feature
    columns are split: for the few very common ones the stored rows are kept as a
    *dense* block (sparse query x dense block is a tight loop), the long tail stays
    sparse, and the two partial scores are added. Same cosine, several times faster.
    """

    # a column is "common" when it occurs in more than this share of the rows
    COMMON_DF = 0.1
    # cap on the dense block (rows x common columns) so memory stays ~80 MB at most
    MAX_DENSE_CELLS = 20_000_000

    def __init__(self, rows: sp.csr_matrix) -> None:
        self.size = rows.shape[0]
        df = np.bincount(rows.indices, minlength=rows.shape[1])
        max_common = self.MAX_DENSE_CELLS // max(self.size, 1)
        frequent = np.flatnonzero(df > max(1.0, self.COMMON_DF * self.size))
        if len(frequent) > max_common:  # keep the most frequent ones
            frequent = frequent[np.argsort(df[frequent])[::-1][:max_common]]
        self.common = np.sort(frequent)
        self.rare = np.setdiff1d(np.arange(rows.shape[1]), self.common)
        # Scores are accumulated in float64 (the vectorisers emit float32) so the
        # two partial sums add up without visible rounding error.
        self.common_dense_t = np.ascontiguousarray(rows[:, self.common].toarray().T, dtype=np.float64)
        self.rare_t = rows[:, self.rare].T.tocsr().astype(np.float64)  # (rare x rows)

    def best(self, queries: sp.csr_matrix) -> tuple[np.ndarray, np.ndarray]:
        """Best cosine score and row index per query (score 0 / index -1 if empty)."""
        n = queries.shape[0]
        scores = np.zeros(n, dtype=np.float64)
        index = np.full(n, -1, dtype=np.int64)
        if self.size == 0 or n == 0:
            return scores, index
        queries = queries.astype(np.float64)
        q_common = queries[:, self.common].tocsr()
        q_rare = queries[:, self.rare].tocsr()
        for start in range(0, n, _QUERY_CHUNK):
            stop = start + _QUERY_CHUNK
            block = (q_rare[start:stop] @ self.rare_t).toarray()
            # sparse x dense: scipy's plain loop over the query's few common features
            block += q_common[start:stop] @ self.common_dense_t
            best = block.argmax(axis=1)
            index[start : start + len(best)] = best
            scores[start : start + len(best)] = block[np.arange(len(best)), best]
        # A question's score must not depend on which batch it was scored in (alone
        # in ``answer`` or among thousands in ``tune_threshold``), because the tuned
        # threshold is exactly one of the validation scores. Each row is computed
        # independently in a fixed order, so it is already reproducible; rounding to
        # 1e-9 guards against last-bit differences should a BLAS kernel be involved.
        np.round(scores, 9, out=scores)
        # float32 features: an identical question can score 1.0000001
        np.clip(scores, 0.0, 1.0, out=scores)
        return scores, index


class LocalRetrievalModel:
    """TF-IDF + cosine nearest-neighbour answerer with a fallback tier.

    Build one with ``LocalRetrievalModel.fit(...)``; do not call the constructor
    directly (it only wires fitted pieces together, for ``fit`` and ``from_bytes``).
    """

    def __init__(
        self,
        *,
        word_vectorizer: TfidfVectorizer | None,
        char_vectorizer: TfidfVectorizer | None,
        questions: list[str],
        answers: list[str],
        fallback_questions: list[str],
        fallback_answers: list[str],
        threshold: float = DEFAULT_THRESHOLD,
        metrics: dict[str, Any] | None = None,
    ) -> None:
        if word_vectorizer is None and char_vectorizer is None:
            raise ValueError("a LocalRetrievalModel needs at least one vectoriser")
        self._word = word_vectorizer
        self._char = char_vectorizer
        # Original (un-normalised) questions are kept so a newer version can be
        # trained on top of this one and so the artifact is inspectable.
        self.questions = questions
        self.answers = answers
        self.fallback_questions = fallback_questions
        self.fallback_answers = fallback_answers
        self.threshold = float(threshold)
        self.metrics: dict[str, Any] | None = metrics
        # Matrices are derived data: rebuilt on load instead of being pickled, which
        # keeps artifacts small (the vocabulary + texts are enough).
        self._model_index = _TierIndex(self._vectorise(questions))
        self._fallback_index = _TierIndex(self._vectorise(fallback_questions))

    # -- training -------------------------------------------------------------------

    @classmethod
    def fit(
        cls,
        questions: list[str],
        answers: list[str],
        *,
        base: LocalRetrievalModel | None = None,
        features: str = "word+char",
    ) -> LocalRetrievalModel:
        """Learn (question -> answer) examples; keep ``base``'s knowledge as fallback.

        ``features``: one of FEATURES (see "How similarity is computed").

        Raises ValueError when there is nothing to learn (no non-blank examples),
        when the two lists differ in length, or for unknown ``features``. The threshold is inherited from
        ``base`` when given (it was tuned on real data), otherwise the default;
        call ``tune_threshold`` with held-out data to set it properly.
        """
        if len(questions) != len(answers):
            raise ValueError(
                f"questions and answers must have the same length ({len(questions)} != {len(answers)})"
            )
        if features not in FEATURES:
            raise ValueError(f"unknown features {features!r}: use one of {', '.join(FEATURES)}")
        own = _dedupe(questions, answers)
        if not own:
            raise ValueError(
                "cannot fit LocalRetrievalModel: the training set has no (question, answer) examples"
            )

        fallback: dict[str, tuple[str, str]] = {}
        if base is not None:
            # Flatten the base: its own fallback first, then its own examples on top
            # (its own examples are newer than what it was falling back to).
            fallback = _dedupe(base.fallback_questions + base.questions, base.fallback_answers + base.answers)
            # A question we were just taught overrides the old answer entirely.
            for key in own:
                fallback.pop(key, None)

        own_q = [q for q, _ in own.values()]
        own_a = [a for _, a in own.values()]
        fb_q = [q for q, _ in fallback.values()]
        fb_a = [a for _, a in fallback.values()]

        corpus = [_normalise_question(q) for q in own_q + fb_q]
        word = char = None
        if features in ("word+char", "word"):
            word = TfidfVectorizer(
                analyzer="word",
                ngram_range=(1, 2),
                sublinear_tf=True,
                # keep one-letter tokens ("a", "2") -- short questions need every token
                token_pattern=r"(?u)\b\w+\b",
                dtype=np.float32,
            ).fit(corpus)
        if features in ("word+char", "char"):
            char = TfidfVectorizer(
                analyzer="char_wb",
                ngram_range=(3, 5),
                sublinear_tf=True,
                dtype=np.float32,
            ).fit(corpus)
        return cls(
            word_vectorizer=word,
            char_vectorizer=char,
            questions=own_q,
            answers=own_a,
            fallback_questions=fb_q,
            fallback_answers=fb_a,
            threshold=base.threshold if base is not None else DEFAULT_THRESHOLD,
        )

    @property
    def features(self) -> str:
        """Which TF-IDF halves this model compares questions with (one of FEATURES)."""
        if self._word is not None and self._char is not None:
            return "word+char"
        return "word" if self._word is not None else "char"

    @property
    def n_examples(self) -> int:
        """Distinct examples this version learned itself (after dedup, excl. fallback)."""
        return len(self.questions)

    @property
    def n_fallback_examples(self) -> int:
        """Distinct examples inherited from previous versions."""
        return len(self.fallback_questions)

    # -- scoring --------------------------------------------------------------------

    def _vectorise(self, questions: Sequence[str]) -> sp.csr_matrix:
        """Unit-length rows: [sqrt(.5) * word tf-idf | sqrt(.5) * char tf-idf] (one half unscaled
        when the model uses only one)."""
        texts = [_normalise_question(q) for q in questions]
        vectorisers = [v for v in (self._word, self._char) if v is not None]
        if not texts:
            n_features = sum(len(v.vocabulary_) for v in vectorisers)
            return sp.csr_matrix((0, n_features), dtype=np.float32)
        weight = np.float32(np.sqrt(1.0 / len(vectorisers)))
        stacked = sp.hstack([v.transform(texts) * weight for v in vectorisers], format="csr")
        # A row whose word part is empty (all words unseen) has norm < 1; we do NOT
        # renormalise, so "half the evidence missing" honestly lowers the score.
        return stacked

    def _match(self, questions: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Best match in each tier: (model_scores, model_idx, fallback_scores, fallback_idx).

        ``answer_many`` and ``tune_threshold`` both go through here so that the
        threshold is tuned on exactly the scores used when answering.
        """
        queries = self._vectorise(list(questions))
        model_scores, model_idx = self._model_index.best(queries)
        fb_scores, fb_idx = self._fallback_index.best(queries)
        return model_scores, model_idx, fb_scores, fb_idx

    # -- answering --------------------------------------------------------------------

    def answer(self, question: str) -> Answer:
        """Answer one question (see ``answer_many``)."""
        return self.answer_many([question])[0]

    def answer_many(self, questions: list[str]) -> list[Answer]:
        """Answer many questions at once (one sparse matrix product per chunk).

        Model tier if its best score >= threshold, else fallback tier if its best
        score >= threshold, else Answer(None, best score seen, "none").
        """
        model_scores, model_idx, fb_scores, fb_idx = self._match(questions)
        out: list[Answer] = []
        for i in range(len(questions)):
            # score > 0 as well: a question sharing no feature with any example must
            # never be answered, even if someone sets the threshold to 0
            if model_scores[i] >= self.threshold and model_scores[i] > 0:
                out.append(Answer(self.answers[model_idx[i]], float(model_scores[i]), "model"))
            elif fb_scores[i] >= self.threshold and fb_scores[i] > 0:
                out.append(Answer(self.fallback_answers[fb_idx[i]], float(fb_scores[i]), "fallback"))
            else:
                out.append(Answer(None, float(max(model_scores[i], fb_scores[i])), "none"))
        return out

    # -- threshold tuning -------------------------------------------------------------

    def tune_threshold(self, questions: list[str], answers: list[str]) -> dict[str, Any]:
        """Pick the similarity threshold that maximises accuracy on held-out examples.

        Accuracy = share of validation questions whose answer (model or fallback)
        has ``answer_quality >= CORRECT_AT``; an abstention (None) counts as wrong.
        Candidate thresholds are every distinct similarity score observed (accuracy
        only changes at those points) plus "answer nothing". Ties are broken towards
        the *highest* threshold: among equally accurate settings we prefer the one
        that answers least, because in customer service an unnecessary wrong answer
        is worse than a hand-off to a human.

        Sets ``self.threshold`` and ``self.metrics`` and returns the metrics:
        validation_accuracy, coverage (share answered at the chosen threshold),
        threshold, validation_examples, plus answered_accuracy (accuracy among the
        answered ones; None when nothing was answered). With no validation examples
        the threshold is left at its current value and the metrics are None.

        The questions must be held out from training, otherwise the accuracy is
        meaningless (every question would match itself with score 1.0).
        """
        if len(questions) != len(answers):
            raise ValueError("questions and answers must have the same length")
        n = len(questions)
        if n == 0:
            self.metrics = {
                "validation_accuracy": None,
                "coverage": None,
                "answered_accuracy": None,
                "threshold": self.threshold,
                "validation_examples": 0,
            }
            return dict(self.metrics)

        model_scores, model_idx, fb_scores, fb_idx = self._match(questions)
        model_ok = np.array(
            [
                i >= 0 and answer_quality(self.answers[i], ref) >= CORRECT_AT
                for i, ref in zip(model_idx, answers, strict=True)
            ],
            dtype=bool,
        )
        fb_ok = np.array(
            [
                i >= 0 and answer_quality(self.fallback_answers[i], ref) >= CORRECT_AT
                for i, ref in zip(fb_idx, answers, strict=True)
            ],
            dtype=bool,
        )
        # Scores of 0 (nothing in common, or an empty tier) are never answered (see
        # answer_many); -1 keeps them below every candidate threshold.
        model_scores = np.where(model_scores > 0, model_scores, -1.0)
        fb_scores = np.where(fb_scores > 0, fb_scores, -1.0)

        # np.inf = "answer nothing"; sorted descending so argmax picks the highest
        # threshold among ties.
        observed = np.unique(np.concatenate([model_scores, fb_scores]))
        candidates = np.concatenate([[np.inf], observed[observed > 0][::-1]])

        def outcome(t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            """(n_correct, n_answered) for each threshold in ``t``."""
            use_model = model_scores[None, :] >= t[:, None]
            use_fb = ~use_model & (fb_scores[None, :] >= t[:, None])
            correct = (use_model & model_ok[None, :]) | (use_fb & fb_ok[None, :])
            return correct.sum(axis=1), (use_model | use_fb).sum(axis=1)

        # Evaluate candidates in blocks so (candidates x examples) grids stay ~4M cells
        # even for validation sets of tens of thousands of questions.
        block = max(1, 4_000_000 // n)
        n_correct = np.concatenate(
            [outcome(candidates[i : i + block])[0] for i in range(0, len(candidates), block)]
        )
        best = int(np.argmax(n_correct))
        # No threshold produces a single right answer: there is no evidence to move
        # the threshold, so keep the current one and report it honestly.
        threshold = float(candidates[best]) if n_correct[best] > 0 else self.threshold
        right, answered_arr = outcome(np.array([threshold]))
        n_right, answered = int(right[0]), int(answered_arr[0])

        self.threshold = threshold
        self.metrics = {
            "validation_accuracy": n_right / n,
            "coverage": answered / n,
            "answered_accuracy": (n_right / answered) if answered else None,
            "threshold": threshold,
            "validation_examples": n,
        }
        return dict(self.metrics)

    def threshold_for_coverage(self, questions: list[str], coverage: float) -> float:
        """The highest threshold at which at least ``coverage`` (0-1] of ``questions`` get an answer.

        For a chosen hand-off rate instead of the accuracy-maximising threshold of
        ``tune_threshold``: a question is answered when its best match in either tier
        scores at least the threshold (as in ``answer_many``). Questions sharing no
        feature with any example are never answered; if the target needs them, the
        threshold answers every other one. Without questions the threshold is kept.
        Does not change the model.
        """
        if not 0 < coverage <= 1:
            raise ValueError("coverage must be in (0, 1]")
        if not questions:
            return self.threshold
        model_scores, _, fb_scores, _ = self._match(questions)
        best = np.maximum(model_scores, fb_scores)
        best = np.sort(best[best > 0])[::-1]
        if best.size == 0:
            return self.threshold
        need = min(math.ceil(coverage * len(questions) - 1e-9), best.size)
        return float(best[need - 1])

    # -- persistence ------------------------------------------------------------------

    def to_bytes(self) -> bytes:
        """Serialise the fitted pieces (vectorisers, texts, threshold, metrics)."""
        state = {
            "format": _FORMAT_VERSION,
            "word_vectorizer": self._word,
            "char_vectorizer": self._char,
            "questions": self.questions,
            "answers": self.answers,
            "fallback_questions": self.fallback_questions,
            "fallback_answers": self.fallback_answers,
            "threshold": self.threshold,
            "metrics": self.metrics,
        }
        buffer = io.BytesIO()
        pickle.dump(state, buffer, protocol=pickle.HIGHEST_PROTOCOL)
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes, *, expected_sha256: str | None = None) -> LocalRetrievalModel:
        """Inverse of ``to_bytes``. Only use on bytes this system produced (pickle)."""
        if expected_sha256 is not None:
            actual = hashlib.sha256(data).hexdigest()
            if actual != expected_sha256:
                raise ValueError(
                    f"model artifact checksum mismatch: expected {expected_sha256}, got {actual}"
                )
        state = pickle.loads(data)
        if not isinstance(state, dict) or state.get("format") != _FORMAT_VERSION:
            raise ValueError("not a LocalRetrievalModel artifact (or an unsupported format version)")
        return cls(
            word_vectorizer=state["word_vectorizer"],
            char_vectorizer=state["char_vectorizer"],
            questions=state["questions"],
            answers=state["answers"],
            fallback_questions=state["fallback_questions"],
            fallback_answers=state["fallback_answers"],
            threshold=state["threshold"],
            metrics=state["metrics"],
        )

    def save(self, path: str | os.PathLike[str]) -> str:
        """Write the artifact atomically to ``path``; return its sha256 hex digest."""
        data = self.to_bytes()
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        # write-then-rename so a crash never leaves a half-written model behind
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=target.name, suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return hashlib.sha256(data).hexdigest()

    @classmethod
    def load(cls, path: str | os.PathLike[str], *, expected_sha256: str | None = None) -> LocalRetrievalModel:
        """Read an artifact written by ``save`` (optionally verifying its sha256)."""
        return cls.from_bytes(Path(path).read_bytes(), expected_sha256=expected_sha256)

    def __repr__(self) -> str:
        return (
            f"LocalRetrievalModel(n_examples={self.n_examples}, "
            f"n_fallback_examples={self.n_fallback_examples}, threshold={self.threshold:.3f})"
        )
