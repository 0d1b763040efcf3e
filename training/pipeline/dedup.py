"""Near-duplicate removal: MinHash LSH over word shingles, verified with exact Jaccard.

(Over 400 lines: one algorithm, most of it the comments that say why each step is safe and fast.)

**What counts as a duplicate (the one definition):** two examples are near-duplicates when the Jaccard
similarity of their sets of word 3-shingles is at least ``threshold`` (default 0.9). The text compared is
``question + "\\n" + answer`` (the last user message and the training target), normalised by
:func:`words`: lower-cased, ASCII punctuation and the usual Unicode quotes/dashes become spaces, words are
what whitespace separates. Texts
with fewer than three words are one (padded) shingle. 3-shingles rather than 2: with 2-shingles two
different answers built from the same template ("your order #123 ships Monday" / "#456 … Friday") look
more alike than they are; with 3 a single changed word in a 60-word answer still leaves J ≈ 0.9.

**How it is found, at scale (≥ 20,000 examples/s, compact state for 1M examples):**

1. Words are hashed with numpy, a chunk's whole text at once (a polynomial hash of their bytes, see
   ``_hash_words``), and shingles are combined from word hashes, per chunk.
2. MinHash signatures are computed for a whole chunk at once with a 2-universal multiply-shift family
   ``h_i(x) = ((a_i·x + b_i) mod 2^64) >> 32`` and ``np.minimum.reduceat`` (datasketch's per-object
   ``MinHash`` costs ~50 µs per example and its in-memory ``MinHashLSH`` keeps a Python dict entry per
   example per band — gigabytes at 1M — so only its banding rule is used here).
3. LSH banding with ``b`` bands of ``r`` rows. A pair with similarity ``s`` becomes a candidate with
   probability ``1 − (1 − s^r)^b``. :func:`lsh_params` picks the largest ``r`` (fewest false candidates)
   whose probability *at the threshold itself* is ≥ 0.995; datasketch's default weights (0.5, 0.5) at 0.9
   give ``P(0.9) ≈ 0.34``. With 64 permutations at 0.9 this is b=9, r=7: P(0.9)=0.997, P(0.5)=0.07.
4. Examples whose shingle sets are identical are grouped first (J = 1, no LSH needed), so buckets stay
   small. A bucket can still be huge for templated answers: there, only examples up to
   ``MAX_BUCKET_SPAN`` apart in (band key, next bands' keys) order are paired — the neighbours most likely
   to be near-duplicates — so the work stays linear (documented recall trade-off, measured by the bench).
5. Candidates whose MinHash estimate is more than 0.15 below the threshold are dropped (3.9 s.d.), the
   rest are verified with exact Jaccard on the stored shingle sets (vectorised), so precision is 1 by
   construction; recall is what LSH tuning buys.
6. Verified pairs are clustered (connected components = union-find); one representative per cluster is
   kept: the highest rating, then the newest, then the highest id (deterministic).

Per example the finder keeps its sorted shingle hashes (uint32, ~4 bytes a shingle) and a 16-bit
b-bit MinHash signature (2 bytes × b·r); no text.
"""

from __future__ import annotations

import string
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.sparse import coo_matrix, csr_matrix
from scipy.sparse.csgraph import connected_components

SHINGLE_SIZE = 3
DEFAULT_NUM_PERM = 64
TARGET_RECALL_AT_THRESHOLD = 0.995
# In a band bucket larger than this (templated answers) only neighbours this far apart are compared.
MAX_BUCKET_SPAN = 24
ESTIMATE_MARGIN = 0.15
_SIG_STEP = 64
# Separators: ASCII punctuation (a bytes.translate table: 10× faster than str.translate) and the usual
# Unicode quotes, dashes and the no-break space (replaced first).
_SEPARATORS = bytes.maketrans(string.punctuation.encode(), b" " * len(string.punctuation))
_UNICODE_SEPARATORS = "\u2018\u2019\u201c\u201d\u2013\u2014\u2026\u00a0"
_TEXT_END = "\x01"  # joins the texts of a chunk so one translate/split handles them all
_END_HASH = 1 << 40  # outside crc32's range
_MASK32 = np.uint64(0xFFFFFFFF)
# Odd multipliers that combine three word hashes into one order-sensitive shingle hash.
_SHINGLE_K = (np.uint64(0x9E3779B97F4A7C15), np.uint64(0xC2B2AE3D27D4EB4F), np.uint64(0x165667B19E3779F9))


def _normalised(text: str) -> bytes:
    """The text lower-cased, as UTF-8, with every separator turned into a space (words: what's between)."""
    text = text.lower()
    for ch in _UNICODE_SEPARATORS:
        if ch in text:
            text = text.replace(ch, " ")
    return text.encode().translate(_SEPARATORS)


def _tokens(text: str) -> list[bytes]:
    return _normalised(text).split()


# bytes.split()'s whitespace, as a lookup table over byte values.
_SPACE = np.zeros(256, dtype=bool)
_SPACE[list(b" \t\n\r\x0b\x0c")] = True
_WORD_K = np.uint64(0x100000001B3)  # FNV's 64-bit prime: the base of the polynomial word hash
_MIX = np.uint64(0xFF51AFD7ED558CCD)  # murmur3's finaliser constant


def _hash_words(buf: bytes) -> np.ndarray:
    """A 32-bit hash of each word of ``buf`` (as ``buf.split()`` cuts them), in order; the text-end
    marker gets ``_END_HASH``. Vectorised over the whole chunk: hashing word by word in Python (a dict
    lookup and crc32 each) was the largest single cost of deduplication.

    Each word's hash is the polynomial sum(byte_k · K^k) mod 2^64 (computed with one reduceat), mixed
    and folded to 32 bits: deterministic across processes and machines, unlike Python's ``hash``.
    """
    data = np.frombuffer(buf, dtype=np.uint8)
    if not len(data):
        return np.zeros(0, dtype=np.uint64)
    word = ~_SPACE[data]
    is_start = word.copy()
    is_start[1:] &= ~word[:-1]
    inside = np.flatnonzero(word)  # the word bytes, in order
    if not len(inside):
        return np.zeros(0, dtype=np.uint64)
    starting = is_start[inside]
    first_in_word = np.flatnonzero(starting)  # each word's first byte, as an index into ``inside``
    starts = inside[first_in_word]
    # Position of each word byte within its word: its index minus its word's start.
    pos = inside - starts[np.cumsum(starting) - 1]
    powers = np.cumprod(np.full(int(pos.max()) + 1, _WORD_K, dtype=np.uint64))
    with np.errstate(over="ignore"):
        h = np.add.reduceat(data[inside].astype(np.uint64) * powers[pos], first_in_word)
        h ^= h >> np.uint64(33)
        h *= _MIX
        h ^= h >> np.uint64(33)
    h &= _MASK32
    lengths = np.diff(np.append(first_in_word, len(inside)))
    h[(lengths == 1) & (data[starts] == _TEXT_END_BYTE)] = _END_HASH
    return h


def words(text: str) -> list[str]:
    """The normalised words of a text (see the module docstring)."""
    return [w.decode() for w in _tokens(text)]


_TEXT_END_BYTE = ord(_TEXT_END)


def lsh_params(threshold: float, num_perm: int = DEFAULT_NUM_PERM) -> tuple[int, int]:
    """(bands, rows): the largest r with candidate probability ≥ 0.995 at the threshold itself."""
    best = (num_perm, 1)
    for r in range(1, num_perm + 1):
        b = num_perm // r
        if 1 - (1 - threshold**r) ** b >= TARGET_RECALL_AT_THRESHOLD:
            best = (b, r)
    return best


def candidate_probability(s: float, bands: int, rows: int) -> float:
    return 1 - (1 - s**rows) ** bands


def _ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Concatenated ``arange(start, start + length)`` for each pair, vectorised."""
    total = int(lengths.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    offsets = np.repeat(np.cumsum(lengths) - lengths, lengths)
    return np.repeat(starts, lengths) + (np.arange(total, dtype=np.int64) - offsets)


def shingle_sets(texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Sorted unique shingle hashes of each text: (values uint32 concatenated, counts per text)."""
    if not texts:
        return np.zeros(0, dtype=np.uint32), np.zeros(0, dtype=np.int64)
    # One pass over the whole chunk: texts are joined with an end marker that survives translate/split.
    joined = f" {_TEXT_END} ".join(texts) + f" {_TEXT_END}"
    if joined.count(_TEXT_END) != len(texts):  # a text contained the marker itself
        joined = f" {_TEXT_END} ".join(t.replace(_TEXT_END, " ") for t in texts) + f" {_TEXT_END}"
    raw = _hash_words(_normalised(joined))
    ends = np.nonzero(raw == _END_HASH)[0]
    lens = np.diff(np.concatenate([[-1], ends])) - 1
    word_pos = np.nonzero(raw != _END_HASH)[0]
    # Pad each text to at least SHINGLE_SIZE words (with 0) so every text has one shingle or more.
    padded = np.maximum(lens, SHINGLE_SIZE)
    h = np.zeros(int(padded.sum()), dtype=np.uint64)
    dest = _ranges(np.cumsum(padded) - padded, lens)
    h[dest] = raw[word_pos]
    lens = padded
    h = np.concatenate([h, np.zeros(SHINGLE_SIZE - 1, dtype=np.uint64)])
    starts = np.cumsum(lens) - lens
    n_sh = lens - (SHINGLE_SIZE - 1)
    pos = _ranges(starts, n_sh)
    sh = h[pos] * _SHINGLE_K[0] + h[pos + 1] * _SHINGLE_K[1] + h[pos + 2] * _SHINGLE_K[2]
    sh = (sh >> np.uint64(32)) ^ (sh & _MASK32)
    ex = np.repeat(np.arange(len(texts), dtype=np.int64), n_sh)
    del pos
    # Sort by (example, shingle) — one uint64 key, example in the high bits — and drop repeats inside
    # an example: sets, not bags.
    key = (ex.astype(np.uint64) << np.uint64(32)) | sh
    key.sort()
    keep = np.ones(len(key), dtype=bool)
    keep[1:] = key[1:] != key[:-1]
    key = key[keep]
    sh = key & _MASK32
    ex = (key >> np.uint64(32)).astype(np.int64)
    counts = np.bincount(ex, minlength=len(texts)).astype(np.int64)
    return sh.astype(np.uint32), counts


@dataclass(frozen=True)
class DedupResult:
    keep: np.ndarray  # bool per example, in insertion order
    labels: np.ndarray  # cluster id per example
    candidate_pairs: int
    verified_pairs: int
    exact_duplicates: int


class NearDuplicateFinder:
    """Add texts in chunks (:meth:`add`), then :meth:`pairs` / :meth:`resolve`. See the module docstring."""

    def __init__(self, *, threshold: float = 0.9, num_perm: int = DEFAULT_NUM_PERM, seed: int = 1) -> None:
        if not 0 < threshold <= 1:
            raise ValueError("threshold must be in (0, 1]")
        self.threshold = threshold
        self.bands, self.rows = lsh_params(threshold, num_perm)
        self.num_perm = self.bands * self.rows
        rng = np.random.Generator(np.random.PCG64(seed))
        self._a = (rng.integers(0, 2**63, size=self.num_perm, dtype=np.uint64) * np.uint64(2) + np.uint64(1))[
            None, :
        ]
        self._b = rng.integers(0, 2**63, size=self.num_perm, dtype=np.uint64)[None, :]
        self._band_k = rng.integers(0, 2**63, size=self.rows, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
        self._values: list[np.ndarray] = []
        self._counts: list[np.ndarray] = []
        self._sigs: list[np.ndarray] = []
        self._set_keys: list[np.ndarray] = []
        self.size = 0

    # -- building ----------------------------------------------------------------------------------
    def add(self, texts: Sequence[str]) -> None:
        if not texts:
            return
        values, counts = shingle_sets(texts)
        self._values.append(values)
        self._counts.append(counts)
        starts = np.cumsum(counts) - counts
        v64 = values.astype(np.uint64)
        # One identity key per set: order-independent sum of mixed shingle hashes, plus the size.
        mixed = v64 * _SHINGLE_K[0]
        set_key = np.add.reduceat(mixed ^ (mixed >> np.uint64(29)), starts) ^ (counts.astype(np.uint64) << 40)
        self._set_keys.append(set_key)
        # MinHash signatures, a few dozen texts at a time so the (shingles × permutations) block stays
        # in the CPU cache (3–8× faster than one big block).
        sig = np.empty((len(texts), self.num_perm), dtype=np.uint16)
        for lo in range(0, len(texts), _SIG_STEP):
            hi = min(lo + _SIG_STEP, len(texts))
            s0, s1 = int(starts[lo]), int(starts[hi - 1] + counts[hi - 1])
            hv = v64[s0:s1, None] * self._a
            hv += self._b
            hv >>= np.uint64(32)
            # b-bit MinHash: the low 16 bits of each minimum are enough to compare signatures
            # (a false match costs 2^-16) and halve the memory of 32-bit values.
            sig[lo:hi] = np.minimum.reduceat(hv, starts[lo:hi] - s0, axis=0)
        self._sigs.append(sig)
        self.size += len(texts)

    def _finish(self) -> None:
        if len(self._values) > 1:
            self._values = [np.concatenate(self._values)]
            self._counts = [np.concatenate(self._counts)]
            self._sigs = [np.concatenate(self._sigs)]
            self._set_keys = [np.concatenate(self._set_keys)]

    # -- querying ----------------------------------------------------------------------------------
    def _exact_groups(self) -> tuple[np.ndarray, np.ndarray]:
        """(representative index per example for identical sets, mask of group representatives)."""
        keys = self._set_keys[0]
        order = np.argsort(keys, kind="stable")
        sorted_keys = keys[order]
        first = np.ones(len(order), dtype=bool)
        first[1:] = sorted_keys[1:] != sorted_keys[:-1]
        group_first = order[np.maximum.accumulate(np.where(first, np.arange(len(order)), 0))]
        rep = np.empty(len(order), dtype=np.int64)
        rep[order] = group_first
        return rep, rep == np.arange(len(order))

    def _band_keys(self, active: np.ndarray, band: int) -> np.ndarray:
        cols = self._sigs[0][active, band * self.rows : (band + 1) * self.rows].astype(np.uint64)
        return (cols * self._band_k[None, :]).sum(axis=1, dtype=np.uint64)

    def _candidates(self, active: np.ndarray) -> tuple[np.ndarray, int]:
        """Likely pairs (i < j) among ``active`` that share a band, and how many candidates were seen.

        Within a band, examples are sorted by (band key, next band's key, the one after): a bucket is a
        run of equal keys, and pairs are taken up to ``MAX_BUCKET_SPAN`` positions apart — every pair in
        an ordinary bucket; in a huge one (templated answers) the neighbours that also agree on the next
        bands, i.e. the likeliest near-duplicates. Candidates are filtered by their MinHash estimate band
        by band, so memory holds only likely pairs.
        """
        pairs = []
        seen = 0
        # Each band's key once (they were computed three times each, as a band and as a tiebreak).
        keys = [self._band_keys(active, band) for band in range(self.bands)]
        for band in range(self.bands):
            key = keys[band]
            # One sort key per example: the band key's high 32 bits, then 16 bits of each of the next
            # two bands' keys as the tiebreak. One argsort of it replaced a lexsort of three full keys.
            # A bucket is then a run of equal 32-bit keys: a rare collision only adds candidates, which
            # the estimate filters out.
            nxt = keys[(band + 1) % self.bands]
            nxt2 = keys[(band + 2) % self.bands]
            combined = (key & ~_MASK32) | ((nxt >> np.uint64(48)) << np.uint64(16)) | (nxt2 >> np.uint64(48))
            order = np.argsort(combined)
            sk = combined[order] >> np.uint64(32)
            del combined
            # Sorted keys: if position p differs from p+d it differs from p+d+1 too, so the set of
            # positions still in a bucket only shrinks as the distance d grows; cost = pairs emitted.
            idx = np.arange(max(len(sk) - 1, 0))
            d = 1
            band_pairs = []
            while idx.size and d <= MAX_BUCKET_SPAN:
                idx = idx[idx + d < len(sk)]
                idx = idx[sk[idx] == sk[idx + d]]
                if idx.size:
                    band_pairs.append(np.stack([active[order[idx]], active[order[idx + d]]], axis=1))
                d += 1
            if band_pairs:
                p = np.concatenate(band_pairs)
                seen += len(p)
                pairs.append(self._likely(p))
        if not pairs:
            return np.zeros((0, 2), dtype=np.int64), seen
        p = np.concatenate(pairs)
        p.sort(axis=1)
        n = np.int64(self.size)
        code = np.unique(p[:, 0] * n + p[:, 1])
        return np.stack([code // n, code % n], axis=1), seen

    def _likely(self, pairs: np.ndarray) -> np.ndarray:
        # Exact Jaccard is the expensive step: skip candidates whose estimate is far below the
        # threshold. With 63 permutations the estimate's s.d. at J = 0.9 is 0.038, so a margin of 0.15
        # (3.9 s.d.) loses a true pair with probability < 1e-4.
        return pairs[self.estimate(pairs) >= self.threshold - ESTIMATE_MARGIN]

    def estimate(self, pairs: np.ndarray, batch: int = 200_000) -> np.ndarray:
        """MinHash estimate of each pair's Jaccard (share of equal signature positions)."""
        sig = self._sigs[0]
        out = np.empty(len(pairs), dtype=np.float32)
        for lo in range(0, len(pairs), batch):
            p = pairs[lo : lo + batch]
            out[lo : lo + batch] = np.count_nonzero(sig[p[:, 0]] == sig[p[:, 1]], axis=1) / sig.shape[1]
        return out

    def _verified(self, active: np.ndarray) -> tuple[np.ndarray, int]:
        likely, seen = self._candidates(active)
        sim = self.jaccard(likely) if len(likely) else np.zeros(0)
        return likely[sim >= self.threshold], seen

    def jaccard(self, pairs: np.ndarray, batch: int = 20_000) -> np.ndarray:
        """Exact Jaccard of the shingle sets of each pair, vectorised in batches."""
        self._finish()
        values, counts = self._values[0], self._counts[0]
        starts = np.cumsum(counts) - counts
        out = np.empty(len(pairs), dtype=np.float64)
        for lo in range(0, len(pairs), batch):
            p = pairs[lo : lo + batch]
            left, right = p[:, 0], p[:, 1]
            lens = counts[left] + counts[right]
            # Both sets of a pair side by side under one key (pair << 32 | shingle): a key seen twice is
            # in the intersection. One radix-friendly sort of uint64 beats a lexsort of two columns.
            seg = np.arange(len(p), dtype=np.uint64) << np.uint64(32)
            keys = np.concatenate(
                [
                    np.repeat(seg, counts[left]) | values[_ranges(starts[left], counts[left])],
                    np.repeat(seg, counts[right]) | values[_ranges(starts[right], counts[right])],
                ]
            )
            keys.sort()
            dup = keys[1:] == keys[:-1]
            inter = np.bincount((keys[1:][dup] >> np.uint64(32)).astype(np.int64), minlength=len(p))
            union = lens - inter
            out[lo : lo + batch] = inter / union
        return out

    def pairs(self) -> tuple[np.ndarray, int]:
        """All verified near-duplicate pairs (i < j) and the number of LSH candidates checked.

        Identical sets are expanded, so the result is comparable with an exact pairwise computation.
        """
        self._finish()
        rep, is_rep = self._exact_groups()
        verified, n_cand = self._verified(np.nonzero(is_rep)[0])
        members: dict[int, list[int]] = {}
        for i in np.nonzero(~is_rep)[0].tolist():
            members.setdefault(int(rep[i]), [int(rep[i])]).append(i)
        out: set[tuple[int, int]] = set()
        for group in members.values():
            for x in range(len(group)):
                for y in range(x + 1, len(group)):
                    out.add((min(group[x], group[y]), max(group[x], group[y])))
        for a, b in verified.tolist():
            for x in members.get(a, [a]):
                for y in members.get(b, [b]):
                    out.add((min(x, y), max(x, y)))
        return np.array(sorted(out), dtype=np.int64).reshape(-1, 2), n_cand

    def resolve(self, *, rating: np.ndarray, newest: np.ndarray, tiebreak: np.ndarray) -> DedupResult:
        """Cluster near-duplicates and keep one per cluster: highest rating, then newest, then tiebreak."""
        self._finish()
        n = self.size
        if n == 0:
            empty = np.zeros(0, dtype=bool)
            return DedupResult(empty, np.zeros(0, dtype=np.int64), 0, 0, 0)
        rep, is_rep = self._exact_groups()
        verified, n_cand = self._verified(np.nonzero(is_rep)[0])
        rows = np.concatenate([verified[:, 0], np.arange(n)])
        cols = np.concatenate([verified[:, 1], rep])
        graph = coo_matrix((np.ones(len(rows), dtype=np.int8), (rows, cols)), shape=(n, n))
        _, labels = connected_components(graph, directed=False)
        order = np.lexsort(
            (-tiebreak.astype(np.float64), -newest.astype(np.float64), -rating.astype(np.float64), labels)
        )
        first = np.ones(n, dtype=bool)
        first[1:] = labels[order][1:] != labels[order][:-1]
        keep = np.zeros(n, dtype=bool)
        keep[order[first]] = True
        return DedupResult(keep, labels, n_cand, len(verified), int((~is_rep).sum()))


def exact_pairs(texts: Sequence[str], threshold: float, block: int = 1000) -> np.ndarray:
    """Brute-force reference: every pair (i < j) with exact Jaccard ≥ threshold (sparse products)."""
    values, counts = shingle_sets(texts)
    n = len(texts)
    _, col = np.unique(values, return_inverse=True)
    rows = np.repeat(np.arange(n), counts)
    m = csr_matrix(
        (np.ones(len(col), dtype=np.int32), (rows, col)), shape=(n, int(col.max()) + 1 if n else 0)
    )
    out = []
    for lo in range(0, n, block):
        inter = (m[lo : lo + block] @ m.T).tocoo()
        i = inter.row + lo
        j = inter.col
        mask = i < j
        i, j, k = i[mask], j[mask], inter.data[mask]
        sim = k / (counts[i] + counts[j] - k)
        sel = sim >= threshold
        out.append(np.stack([i[sel], j[sel]], axis=1))
    return np.concatenate(out) if out else np.zeros((0, 2), dtype=np.int64)


def precision_recall(found: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    f = {tuple(p) for p in found.tolist()}
    t = {tuple(p) for p in truth.tolist()}
    if not f and not t:
        return 1.0, 1.0
    hit = len(f & t)
    return (hit / len(f) if f else 1.0), (hit / len(t) if t else 1.0)
