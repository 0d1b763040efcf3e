"""Near-duplicate removal: MinHash LSH over word shingles, verified with exact Jaccard.

(Over 400 lines: one algorithm, most of it the comments that say why each step is safe and fast.)

**What counts as a duplicate (the one definition):** two examples are near-duplicates when the Jaccard
similarity of their sets of word 3-shingles is at least ``threshold`` (default 0.9). The text compared is
``question + "\\n" + answer`` (the last user message and the training target), normalised by
:func:`words`: lower-cased, ASCII punctuation, U+0001 and the usual Unicode quotes/dashes become spaces,
words are what whitespace separates. Texts
with fewer than three words are one (padded) shingle. 3-shingles rather than 2: with 2-shingles two
different answers built from the same template ("your order #123 ships Monday" / "#456 … Friday") look
more alike than they are; with 3 a single changed word in a 60-word answer still leaves J ≈ 0.9.

**How it is found, at scale (~50,000 examples/s at 1M on one core, compact state):**

1. A chunk's texts are normalised and hashed with numpy as one buffer: ``bytes.translate`` lower-cases
   ASCII and blanks punctuation (``str.lower`` only for non-ASCII texts), each word gets a polynomial
   hash of its bytes from one prefix sum (``_hash_words``), and shingles are combined from word hashes.
2. MinHash signatures are computed for a chunk at once with ``h_i(x) = (a_i·x + b_i) mod 2^32`` (a_i
   odd) over the 32-bit shingle hashes and ``np.minimum.reduceat``, keeping the low 8 bits of each
   minimum (b-bit MinHash). datasketch's per-object ``MinHash`` costs ~50 µs per example and its
   in-memory ``MinHashLSH`` keeps a Python dict entry per example per band — gigabytes at 1M — so only
   its banding rule is used here.
3. LSH banding with ``b`` bands of ``r`` rows. A pair with similarity ``s`` becomes a candidate with
   probability ``1 − (1 − s^r)^b``. :func:`lsh_params` picks the largest ``r`` (fewest false candidates)
   whose probability *at the threshold itself* is ≥ 0.995; datasketch's default weights (0.5, 0.5) at 0.9
   give ``P(0.9) ≈ 0.34``. With 64 permutations at 0.9 this is b=9, r=7: P(0.9)=0.997, P(0.5)=0.07.
   (8-bit values only raise a row's collision probability, by at most (1 − s)/256.)
4. Examples whose shingle sets are identical are grouped first (J = 1, no LSH needed), so buckets stay
   small. A bucket can still be huge for templated answers: there, only examples up to
   ``MAX_BUCKET_SPAN`` apart in (band key, next bands' keys) order are paired — the neighbours most likely
   to be near-duplicates — so the work stays linear (documented recall trade-off, measured by the bench).
5. Candidates whose MinHash estimate is more than 0.15 below the threshold are dropped (3.9 s.d.), and
   so are those whose set sizes alone rule the threshold out (J ≤ min/max); the rest are verified with
   exact Jaccard on the stored shingle sets (a sparse-matrix merge in scipy), so precision is 1 by
   construction; recall is what LSH tuning buys.
6. Verified pairs are clustered (connected components = union-find); one representative per cluster is
   kept: the highest rating, then the newest, then the highest id (deterministic).

Per example the finder keeps its sorted shingle hashes (uint32, ~4 bytes a shingle) and an 8-bit b-bit
MinHash signature (1 byte × b·r); no text. Where the time goes, and what each step cost before, is in
docs/PERFORMANCE.md ("Dedup").
"""

from __future__ import annotations

import string
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.sparse import coo_matrix, csr_array, csr_matrix
from scipy.sparse.csgraph import connected_components

SHINGLE_SIZE = 3
DEFAULT_NUM_PERM = 64
TARGET_RECALL_AT_THRESHOLD = 0.995
# In a band bucket larger than this (templated answers) only neighbours this far apart are compared.
MAX_BUCKET_SPAN = 24
ESTIMATE_MARGIN = 0.15
_SIG_STEP = 128
# Separators: ASCII punctuation and the usual Unicode quotes, dashes and the no-break space. One
# bytes.translate table lower-cases ASCII letters and blanks ASCII punctuation (10× faster than
# str.translate); only texts with non-ASCII characters need str.lower and the Unicode replacements.
_NORMALISE = bytes.maketrans(
    (string.ascii_uppercase + string.punctuation).encode(),
    (string.ascii_lowercase + " " * len(string.punctuation)).encode(),
)
_UNICODE_SEPARATORS = "\u2018\u2019\u201c\u201d\u2013\u2014\u2026\u00a0"
_TEXT_END = "\x01"  # joins the texts of a chunk so one translate/split handles them all
_END_HASH = 1 << 40  # outside the 32-bit word hashes' range
_MASK32 = np.uint64(0xFFFFFFFF)
# Odd multipliers that combine three word hashes into one order-sensitive shingle hash.
_SHINGLE_K = (np.uint64(0x9E3779B97F4A7C15), np.uint64(0xC2B2AE3D27D4EB4F), np.uint64(0x165667B19E3779F9))


def _lowered(text: str) -> str:
    """A non-ASCII text lower-cased, its Unicode separators turned into spaces (ASCII ones: the table)."""
    text = text.lower()
    for ch in _UNICODE_SEPARATORS:
        if ch in text:
            text = text.replace(ch, " ")
    return text


def _normalised(text: str) -> bytes:
    """The text lower-cased, as UTF-8, with every separator turned into a space (words: what's between).

    For ASCII text ``str.lower`` is exactly the table's A–Z → a–z, and ``str.lower`` costs ~3× the rest of
    normalising: it runs only on texts that are not ASCII.
    """
    if not text.isascii():
        text = _lowered(text)
    return text.encode().translate(_NORMALISE)


_WORD_K = np.uint64(0x100000001B3)  # FNV's 64-bit prime: the base of the polynomial word hash
_MIX = np.uint64(0xFF51AFD7ED558CCD)  # murmur3's finaliser constant
_TEXT_END_BYTE = ord(_TEXT_END)
# K^(i+1) and K^-i mod 2^64 for i < len: grown on demand; chunks are cut to at most _PIECE_CHARS
# characters (shingle_sets), so the tables stay ~16 bytes × a piece's bytes (a single longer text
# grows them to its own size).
_power_tables: tuple[np.ndarray, np.ndarray] = (np.zeros(0, np.uint64), np.zeros(0, np.uint64))
_PIECE_CHARS = 1 << 20


def _powers(n: int) -> tuple[np.ndarray, np.ndarray]:
    global _power_tables
    if len(_power_tables[0]) < n:
        size = max(n, 2 * len(_power_tables[0]), 1 << 16)
        inverse = np.full(size, pow(int(_WORD_K), -1, 1 << 64), dtype=np.uint64)
        inverse[0] = 1
        with np.errstate(over="ignore"):
            _power_tables = (np.cumprod(np.full(size, _WORD_K, dtype=np.uint64)), np.cumprod(inverse))
    return _power_tables


def _hash_words(buf: bytes) -> np.ndarray:
    """A 32-bit hash of each word of ``buf`` (as ``buf.split()`` cuts them), in order; the text-end
    marker gets ``_END_HASH``. Vectorised over the whole chunk: hashing word by word in Python (a dict
    lookup and crc32 each) was the largest single cost of deduplication.

    Each word's hash is the polynomial sum(byte_k · K^(k+1)) mod 2^64 over its bytes, mixed and folded
    to 32 bits: deterministic across processes and machines, unlike Python's ``hash``. It is computed
    from one prefix sum P of byte_i · K^(i+1) over the buffer: a word at [s, e) hashes to
    (P[e] − P[s]) · K^−s (K is odd, so invertible mod 2^64) — a handful of passes over the bytes instead
    of gathering each word's bytes (2–3× faster).
    """
    data = np.frombuffer(buf, dtype=np.uint8)
    if not len(data):
        return np.zeros(0, dtype=np.uint64)
    # bytes.split()'s whitespace: 9–13 and space; padded with a space at both ends, so the edges
    # alternate word start, word end.
    space = np.ones(len(data) + 2, dtype=bool)
    np.less_equal(data - np.uint8(9), np.uint8(4), out=space[1:-1])
    space[1:-1] |= data == 32
    edges = np.flatnonzero(space[1:] != space[:-1])
    if not len(edges):
        return np.zeros(0, dtype=np.uint64)
    starts, ends = edges[0::2], edges[1::2]
    powers, inverse = _powers(len(data))
    prefix = np.zeros(len(data) + 1, dtype=np.uint64)
    with np.errstate(over="ignore"):
        np.multiply(data, powers[: len(data)], out=prefix[1:])
        np.cumsum(prefix, out=prefix)
        h = prefix[ends] - prefix[starts]
        del prefix
        h *= inverse[starts]
        h ^= h >> np.uint64(33)
        h *= _MIX
        h ^= h >> np.uint64(33)
    h &= _MASK32
    h[(ends - starts == 1) & (data[starts] == _TEXT_END_BYTE)] = _END_HASH
    return h


def words(text: str) -> list[str]:
    """The normalised words of a text (see the module docstring). U+0001, the marker that joins a
    chunk's texts, is a separator too, as in the finder (which replaces it in the rare text that has it)."""
    return [w.decode() for w in _normalised(text.replace(_TEXT_END, " ")).split()]


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
    """Concatenated ``arange(start, start + length)`` for each pair, vectorised: a cumulative sum of
    ones that jumps to the next start at each segment's first position (half the passes of building
    it from repeats)."""
    keep = lengths > 0
    if not keep.all():
        starts, lengths = starts[keep], lengths[keep]
    if not len(lengths):
        return np.zeros(0, dtype=np.int64)
    ends = np.cumsum(lengths)
    step = np.ones(int(ends[-1]), dtype=np.int64)
    step[0] = starts[0]
    step[ends[:-1]] = starts[1:] - (starts[:-1] + lengths[:-1] - 1)
    return np.cumsum(step, out=step)


def _joined(texts: Sequence[str]) -> bytes:
    """The normalised texts as one buffer, each followed by the text-end marker (a word of its own)."""
    # Lower-casing is per character (Greek final sigma looks at its neighbours, but never across the
    # marker's spaces), so lowering only the non-ASCII texts gives the bytes lowering all would.
    texts = [t if t.isascii() else _lowered(t) for t in texts]
    sep = f" {_TEXT_END} "
    joined = sep.join(texts) + sep
    if joined.count(_TEXT_END) != len(texts):  # a text contained the marker itself
        joined = sep.join(t.replace(_TEXT_END, " ") for t in texts) + sep
    return joined.encode().translate(_NORMALISE)


def shingle_sets(texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Sorted unique shingle hashes of each text: (values uint32 concatenated, counts per text)."""
    pieces, lo, size = [], 0, 0
    for i, text in enumerate(texts):
        size += len(text)
        if size > _PIECE_CHARS and i > lo:
            pieces.append(_shingle_sets(texts[lo:i]))
            lo, size = i, len(text)
    pieces.append(_shingle_sets(texts[lo:]))
    if len(pieces) == 1:
        return pieces[0]
    return np.concatenate([v for v, _ in pieces]), np.concatenate([c for _, c in pieces])


def _shingle_sets(texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    if not texts:
        return np.zeros(0, dtype=np.uint32), np.zeros(0, dtype=np.int64)
    # One pass over the whole piece: texts are joined with an end marker that survives translate/split.
    raw = _hash_words(_joined(texts))
    is_end = raw == _END_HASH
    ends = np.flatnonzero(is_end)
    lens = np.diff(ends, prepend=-1) - 1  # words per text
    # The shingles of every window of three words inside one text, straight off the word stream (the
    # windows that touch a marker are dropped) ...
    with np.errstate(over="ignore"):
        sh = raw[:-2] * _SHINGLE_K[0] + raw[1:-1] * _SHINGLE_K[1] + raw[2:] * _SHINGLE_K[2]
    sh = sh[~(is_end[:-2] | is_end[1:-1] | is_end[2:])]
    ex = np.repeat(np.arange(len(texts), dtype=np.uint64), np.maximum(lens - (SHINGLE_SIZE - 1), 0))
    # ... and texts with fewer than three words are one shingle, padded with 0 words.
    short = np.flatnonzero(lens < SHINGLE_SIZE)
    if len(short):
        first = ends[short] - lens[short]
        w0 = np.where(lens[short] >= 1, raw[first], 0)
        w1 = np.where(lens[short] >= 2, raw[np.minimum(first + 1, len(raw) - 1)], 0)
        with np.errstate(over="ignore"):
            sh = np.concatenate([sh, w0 * _SHINGLE_K[0] + w1 * _SHINGLE_K[1]])
        ex = np.concatenate([ex, short.astype(np.uint64)])
    sh = (sh >> np.uint64(32)) ^ (sh & _MASK32)
    # Sort by (example, shingle) — one uint64 key, example in the high bits — and drop repeats inside
    # an example: sets, not bags.
    key = (ex << np.uint64(32)) | sh
    del ex, sh
    key.sort(kind="stable")  # timsort: already in example order, 2× faster than quicksort here
    keep = np.ones(len(key), dtype=bool)
    keep[1:] = key[1:] != key[:-1]
    key = key[keep]
    counts = np.bincount((key >> np.uint64(32)).astype(np.int64), minlength=len(texts)).astype(np.int64)
    return (key & _MASK32).astype(np.uint32), counts


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
        # h_i(x) = (a_i·x + b_i) mod 2^32, a_i odd: 32-bit arithmetic, because numpy has no SIMD 64-bit
        # multiply on AVX2 (the 64-bit multiply-shift ((a·x + b) mod 2^64) >> 32 cost 4× as much). The
        # inputs are already well-mixed 32-bit shingle hashes, and the minimum is decided by the
        # product's high bits: measured on sets at J ≈ 0.9 the estimate's mean and s.d. and the band
        # collision rate match theory, and the 64-bit family's, to within sampling error.
        self._a = rng.integers(0, 2**31, size=self.num_perm, dtype=np.uint32) * np.uint32(2) + np.uint32(1)
        self._b = rng.integers(0, 2**32, size=self.num_perm, dtype=np.uint32)
        self._band_k = rng.integers(0, 2**63, size=self.rows, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
        # A pair passes the estimate filter with k equal signature positions iff _likely_count[k].
        estimates = (np.arange(self.num_perm + 1) / self.num_perm).astype(np.float32)
        self._likely_count = estimates >= threshold - ESTIMATE_MARGIN
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
        # MinHash signatures, a hundred-odd texts at a time so the (permutations × shingles) block stays
        # in the CPU cache (3–8× faster than one big block); permutations are rows, so each minimum
        # is a contiguous run.
        sig = np.empty((len(texts), self.num_perm), dtype=np.uint8)
        a, b = self._a[:, None], self._b[:, None]
        width = int(np.diff(np.append(starts[::_SIG_STEP], len(values))).max())
        block = np.empty((self.num_perm, width), dtype=np.uint32)
        for lo in range(0, len(texts), _SIG_STEP):
            hi = min(lo + _SIG_STEP, len(texts))
            s0, s1 = int(starts[lo]), int(starts[hi - 1] + counts[hi - 1])
            hv = block[:, : s1 - s0]
            np.multiply(a, values[None, s0:s1], out=hv)
            hv += b
            # b-bit MinHash, b = 8: the low 8 bits of each minimum. A false match (1/256 a position)
            # raises an estimate by at most (1 − J)/256 < 0.4 % and a band's collision probability
            # as little: a few more candidates, never fewer; and a quarter of the bytes of 32-bit
            # values to store and compare (8 bits halved the estimate's time against 16).
            sig[lo:hi] = np.minimum.reduceat(hv, starts[lo:hi] - s0, axis=1).T
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
        # Column by column over every example, then the active ones: cheaper than gathering the
        # active rows' band first.
        sig = self._sigs[0]
        key = np.zeros(len(sig), dtype=np.uint64)
        with np.errstate(over="ignore"):
            for c in range(self.rows):
                key += sig[:, band * self.rows + c] * self._band_k[c]
        return key[active]

    def _candidates(self, active: np.ndarray) -> tuple[np.ndarray, int]:
        """Likely pairs (i < j) among ``active`` that share a band, and how many candidates were seen.

        Within a band, examples are sorted by band key (and, inside a bucket too long to pair whole, by
        the next two bands' keys): a bucket is a run of equal keys, and pairs are taken up to
        ``MAX_BUCKET_SPAN`` positions apart — every pair in
        an ordinary bucket; in a huge one (templated answers) the neighbours that also agree on the next
        bands, i.e. the likeliest near-duplicates. Candidates are filtered by their MinHash estimate band
        by band, so memory holds only likely pairs.
        """
        sig = self._sigs[0]
        pairs = []
        seen = 0
        # Each band's key once (they were computed three times each, as a band and as a tiebreak).
        keys = [self._band_keys(active, band) for band in range(self.bands)]
        for band in range(self.bands):
            key = keys[band]
            # Examples are ordered by the band key's high 32 bits: a bucket is a run of equal keys (a
            # rare 32-bit collision only adds candidates, which the estimate filters out). One sort
            # of (key, position) packed in a uint64 — 4× faster than an argsort.
            packed = (key & ~_MASK32) | np.arange(len(key), dtype=np.uint64)
            packed.sort()
            sk = packed >> np.uint64(32)
            order = (packed & _MASK32).astype(np.int64)
            del packed
            # Keep only the examples in a bucket of two or more (removing the singletons between runs
            # leaves every run, and every distance inside one, as it was), and take their signatures
            # once, in this order: the comparisons below then read them front to back instead of
            # fetching two random rows per candidate (the estimate was a sixth of the time at 1M).
            same = sk[1:] == sk[:-1]
            member = np.zeros(len(sk), dtype=bool)
            member[1:] = same
            member[:-1] |= same
            where = np.flatnonzero(member)
            del same, member
            if not len(where):
                continue
            sk = sk[where]
            order = order[where]
            del where
            run_start = np.flatnonzero(np.concatenate([[True], sk[1:] != sk[:-1]]))
            run_end = np.append(run_start[1:], len(sk))
            run_length = run_end - run_start
            # In a bucket longer than MAX_BUCKET_SPAN + 1 (templated answers) not every pair is taken,
            # so there the order matters: by 16 bits of each of the next two bands' keys, so that the
            # neighbours are those that also agree on the next bands, i.e. the likeliest
            # near-duplicates. (A shorter bucket gives all its pairs in any order.)
            long = np.repeat(run_length > MAX_BUCKET_SPAN + 1, run_length)
            if long.any():
                at = np.flatnonzero(long)
                sub = order[at]
                nxt = keys[(band + 1) % self.bands][sub]
                nxt2 = keys[(band + 2) % self.bands][sub]
                combined = (
                    (key[sub] & ~_MASK32)
                    | ((nxt >> np.uint64(48)) << np.uint64(16))
                    | (nxt2 >> np.uint64(48))
                )
                order[at] = sub[np.argsort(combined)]
                del at, sub, nxt, nxt2, combined
            del long
            rows = active[order]
            band_sig = np.take(sig, rows, axis=0)
            del order
            # Every position pairs with the next ones in its bucket, up to MAX_BUCKET_SPAN of them: all
            # the (left, right) positions at once, left ascending (one pass, not one per distance).
            position = np.arange(len(sk), dtype=np.int64)
            partners = np.minimum(np.repeat(run_end, run_length) - position - 1, MAX_BUCKET_SPAN)
            del run_start, run_end, run_length
            left = np.repeat(position, partners)
            right = _ranges(position + 1, partners)
            del position, partners
            seen += len(left)
            likely = self._likely_count[_equal_counts(band_sig, left, right)]
            pairs.append(np.stack([rows[left[likely]], rows[right[likely]]], axis=1))
            del left, right, likely
        if not pairs:
            return np.zeros((0, 2), dtype=np.int64), seen
        p = np.concatenate(pairs)
        p.sort(axis=1)
        # The same pair shares several bands: one of each, in (i, j) order (a sort: np.unique's
        # hashing was slower here).
        n = np.int64(self.size)
        code = p[:, 0] * n + p[:, 1]
        del p
        code.sort()
        first = np.ones(len(code), dtype=bool)
        first[1:] = code[1:] != code[:-1]
        code = code[first]
        return np.stack([code // n, code % n], axis=1), seen

    def estimate(self, pairs: np.ndarray) -> np.ndarray:
        """MinHash estimate of each pair's Jaccard (share of equal signature positions).

        Candidates are filtered on it: exact Jaccard is the expensive step, so candidates whose estimate
        is more than 0.15 below the threshold are skipped. With 63 permutations the estimate's s.d. at
        J = 0.9 is 0.038, so that margin (3.9 s.d.) loses a true pair with probability < 1e-4.
        """
        sig = self._sigs[0]
        equal = _equal_counts(sig, pairs[:, 0], pairs[:, 1])
        return (equal / sig.shape[1]).astype(np.float32)

    def _verified(self, active: np.ndarray) -> tuple[np.ndarray, int]:
        likely, seen = self._candidates(active)
        # J ≤ min(|A|, |B|) / max(|A|, |B|), and rounding is monotone, so a pair whose size ratio is
        # below the threshold can't pass: skip its exact Jaccard (about a fifth of the likely pairs).
        counts = self._counts[0]
        a, b = counts[likely[:, 0]], counts[likely[:, 1]]
        likely = likely[np.minimum(a, b) / np.maximum(a, b) >= self.threshold]
        sim = self.jaccard(likely) if len(likely) else np.zeros(0)
        return likely[sim >= self.threshold], seen

    def jaccard(self, pairs: np.ndarray, batch: int = 20_000) -> np.ndarray:
        """Exact Jaccard of the shingle sets of each pair, in batches.

        Each batch's left and right sets become two sparse 0/1 matrices (a row per pair, the shingle
        hash as the column; the stored sets are sorted and unique, i.e. canonical), and their
        element-wise product — scipy's merge of sorted rows, in C++ — has the intersection as each
        row's entries (C++ needs them canonical, or it would work over all 2^32 columns). 3–4× faster
        than sorting both sets of every pair together in numpy.
        """
        self._finish()
        values, counts = self._values[0], self._counts[0]
        starts = np.cumsum(counts) - counts

        def matrix(rows: np.ndarray) -> csr_array:
            indptr = np.zeros(len(rows) + 1, dtype=np.int64)
            np.cumsum(counts[rows], out=indptr[1:])
            columns = values[_ranges(starts[rows], counts[rows])].astype(np.int64)
            ones = np.ones(len(columns), dtype=np.int8)
            m = csr_array((ones, columns, indptr), shape=(len(rows), 1 << 32), copy=False)
            m.has_canonical_format = True
            return m

        out = np.empty(len(pairs), dtype=np.float64)
        for lo in range(0, len(pairs), batch):
            p = pairs[lo : lo + batch]
            inter = np.diff(matrix(p[:, 0]).multiply(matrix(p[:, 1])).indptr)
            out[lo : lo + batch] = inter / (counts[p[:, 0]] + counts[p[:, 1]] - inter)
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


def _equal_counts(sig: np.ndarray, left: np.ndarray, right: np.ndarray, batch: int = 1 << 13) -> np.ndarray:
    """How many signature positions rows ``left[k]`` and ``right[k]`` of ``sig`` share, in batches
    small enough for the CPU cache."""
    dtype = np.uint8 if sig.shape[1] < 256 else np.int64
    out = np.empty(len(left), dtype=dtype)
    for lo in range(0, len(left), batch):
        equal = np.take(sig, left[lo : lo + batch], axis=0) == np.take(sig, right[lo : lo + batch], axis=0)
        out[lo : lo + batch] = equal.view(np.uint8).sum(axis=1, dtype=dtype)
    return out


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
