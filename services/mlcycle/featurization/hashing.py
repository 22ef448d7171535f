"""Fixed, vectorized hashing of a pre-processed batch: char n-grams, words, word pairs.

Python's ``hash()`` of a string is salted per process, so it must never decide a
feature index: training and serving would disagree. Everything here is 32- and
64-bit integer arithmetic on numpy arrays, the same on every machine and in
every process:

- a char n-gram's hash is the polynomial ``h = sum(code[i] * BASE**(n-1-i))``
  (mod 2**32), extended one character per n; its bucket is the top bits of
  ``(h ^ h >> 16)`` times an odd per-n multiplier (multiply-shift hashing),
  which spreads real n-grams over the buckets as evenly as random numbers;
- a word's hash is the same polynomial over its code points, computed for
  every word at once from prefix sums, then mixed with MurmurHash3's 64-bit
  finalizer (words are looked up exactly, so they want all 64 bits uniform);
- a bigram's hash mixes its two word hashes.

Input is a :class:`~mlcycle.featurization.preprocess.Cleaned` batch: one code array
``\\n t0 \\n t1 ... \\n`` whose separators count as spaces, so a text's n-grams
see its first word's start and last word's end, and no n-gram spans two texts.
Char n-grams are laid out as a 2-D array, one row per text (see
:mod:`mlcycle.featurization.vectors` for why).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from mlcycle.featurization.preprocess import SEP, SPACE, Cleaned

_BASE = np.uint64(0x100000001B3)
_INV_BASE = np.uint64(pow(int(_BASE), -1, 2**64))
_FMIX1 = np.uint64(0xFF51AFD7ED558CCD)
_FMIX2 = np.uint64(0xC4CEB9FE1A85EC53)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_SEED_WORD = np.uint64(0x13198A2E03707344)
_SEED_PAIR = np.uint64(0xA4093822299F31D0)
# Char n-grams hash in 32 bits: half the memory traffic of 64, and the 2**-32
# chance that two n-grams share a hash is nothing next to sharing one of 2**18
# buckets. The base keeps ASCII bigrams exact; the multipliers (digits of pi,
# odd) differ per n, so "ab" and "abc" land independently.
_BASE32 = np.uint32(0x01000193)
_CHAR_MULT = {
    2: np.uint32(0x243F6A89),
    3: np.uint32(0x85A308D3),
    4: np.uint32(0x13198A2F),
    5: np.uint32(0x03707345),
}
EMPTY = np.uint32(0xFFFFFFFF)  # a cell with no feature; sorts after every index


def fmix64(x: np.ndarray) -> np.ndarray:
    """MurmurHash3's 64-bit finalizer, in place on ``x`` (uint64); returns ``x``."""
    x ^= x >> np.uint64(33)
    x *= _FMIX1
    x ^= x >> np.uint64(33)
    x *= _FMIX2
    x ^= x >> np.uint64(33)
    return x


def to_buckets(hashes: np.ndarray, buckets: int) -> np.ndarray:
    """Map uniform 64-bit ``hashes`` to ``[0, buckets)`` from their high bits.

    ``((h >> 32) * buckets) >> 32``; for a power of two that is simply
    ``h >> (64 - log2(buckets))``, the same numbers with half the work.
    """
    if buckets > 1 and buckets & (buckets - 1) == 0:
        return hashes >> np.uint64(64 - buckets.bit_length() + 1)
    return ((hashes >> np.uint64(32)) * np.uint64(buckets)) >> np.uint64(32)


def char_ngram_width(max_length: int, n_range: tuple[int, int]) -> int:
    """Cells per row that :func:`fill_char_ngrams` needs for texts up to ``max_length``."""
    width = max_length + 2  # the text and its two separators
    return sum(max(width - n + 1, 0) for n in range(n_range[0], n_range[1] + 1))


def fill_char_ngrams(
    cells: np.ndarray,
    codes: np.ndarray,
    seps: np.ndarray,
    lengths: np.ndarray,
    n_range: tuple[int, int],
    buckets: int,
    offset: int,
) -> None:
    """Write bucket + ``offset`` of every char n-gram of some texts into ``cells``, a row each.

    ``cells`` is a C-contiguous uint32 array whose first columns (as many as
    :func:`char_ngram_width` says for the longest text) receive them.
    ``codes`` is a batch's uint32 code array with separators already turned
    into spaces, ``seps[i]`` the separator before text i and ``lengths[i]`` its
    length. Row i gets text i's n-grams for each n in turn; cells past the end
    of a text are :data:`EMPTY`. Pass texts of similar length together.
    """
    n_min, n_max = n_range
    width = int(lengths.max()) + 2
    chars = codes[np.minimum(seps[:, None] + np.arange(width), len(codes) - 1)]
    rows = np.arange(len(seps)) * cells.shape[1]
    flat = cells.ravel()
    rolling = chars
    column = 0
    for n in range(2, n_max + 1):
        span = width - n + 1
        if span <= 0:
            break
        # rolling[:, j] = polynomial hash (mod 2**32) of the n chars from column j.
        rolling = rolling[:, :-1] * _BASE32
        rolling += chars[:, n - 1 :]
        if n < n_min:
            continue
        part = cells[:, column : column + span]
        # The xor-shift folds the high bits into the low ones before the
        # multiply-shift; without it 4-grams collide ~25% more often than at random.
        np.right_shift(rolling, np.uint32(16), out=part)
        part ^= rolling
        part *= _CHAR_MULT[n]
        if buckets > 1 and buckets & (buckets - 1) == 0:
            part >>= np.uint32(33 - buckets.bit_length())
        else:
            part[...] = (part.astype(np.uint64) * np.uint64(buckets)) >> np.uint64(32)
        if offset:
            part += np.uint32(offset)
        # A window is real if it ends by the text's closing separator; an empty
        # text has none (its two separators are not an n-gram).
        real = np.where(lengths > 0, np.maximum(lengths + 3 - n, 0), 0)
        flat[spread(rows + column + real, span - real)] = EMPTY
        column += span


def spread(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """``concatenate([arange(s, s + n) for s, n in zip(starts, lengths)])``, vectorized."""
    total = int(lengths.sum())
    if total == 0:
        return np.empty(0, np.int64)
    before = np.cumsum(lengths) - lengths
    return np.repeat(starts - before, lengths) + np.arange(total)


@dataclass(frozen=True)
class Words:
    """The words of a batch, in order: their text, start/end positions and hashes."""

    rows: np.ndarray  # int32
    starts: np.ndarray  # int64 positions into the batch's codes
    ends: np.ndarray  # int64, exclusive
    keys: np.ndarray  # uint64


def words(batch: Cleaned) -> Words:
    """Split on spaces and hash each word: a polynomial over its code points, then mixed."""
    codes = batch.codes
    is_char = (codes != SPACE) & (codes != SEP)
    # Both ends are separators, so every word has a boundary on each side.
    edges = np.flatnonzero(is_char[1:] != is_char[:-1])
    starts, ends = edges[0::2] + 1, edges[1::2] + 1
    keys = _segment_hashes(codes, starts, ends)
    rows = (np.searchsorted(batch.seps, starts) - 1).astype(np.int32)
    return Words(rows=rows, starts=starts, ends=ends, keys=keys)


def _segment_hashes(codes: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Polynomial hash of each ``codes[start:end]``, mixed with its length.

    With S the prefix sums of ``code[i] * BASE**i`` (mod 2**64), a segment's hash
    is ``(S[end] - S[start]) * BASE**-start``: O(1) per segment after one pass.
    """
    if len(starts) == 0:
        return np.empty(0, np.uint64)
    n = int(ends[-1])
    powers, inverse = _powers(n + 1)
    # np.empty, not np.zeros: zeroed memory of this size is freshly mapped by the
    # OS, and faulting it in costs more than the sum itself.
    prefix = np.empty(n + 1, np.uint64)
    prefix[0] = 0
    np.cumsum(codes[:n].astype(np.uint64) * powers[:n], out=prefix[1:])
    raw = (prefix[ends] - prefix[starts]) * inverse[starts]
    raw ^= (ends - starts).astype(np.uint64) * _GOLDEN
    raw ^= _SEED_WORD
    return fmix64(raw)


_POWERS: dict[str, np.ndarray] = {}


def _powers(n: int) -> tuple[np.ndarray, np.ndarray]:
    """``BASE**i`` and ``BASE**-i`` (mod 2**64) for i < at least n; computed once, then grown."""
    if len(_POWERS.get("up", ())) < n:
        size = max(n, 2 * len(_POWERS.get("up", ())), 1 << 16)
        up = np.full(size, _BASE, np.uint64)
        up[0] = 1
        np.cumprod(up, out=up)
        down = np.full(size, _INV_BASE, np.uint64)
        down[0] = 1
        np.cumprod(down, out=down)
        up.flags.writeable = down.flags.writeable = False
        _POWERS["down"] = down  # written before "up", which is what readers check
        _POWERS["up"] = up
    return _POWERS["up"], _POWERS["down"]


def pair_keys(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """An order-sensitive hash of two word hashes (a bigram)."""
    return fmix64((first * _GOLDEN) ^ second ^ _SEED_PAIR)


def term_keys(terms: Sequence[str]) -> np.ndarray:
    """Hashes of vocabulary terms: a word, or two words joined by one space (a bigram).

    The same arithmetic as :func:`words` and :func:`pair_keys`, so a term saved
    as text hashes back to the key the batch code computes.
    """
    if not terms:
        return np.empty(0, np.uint64)
    joined = "\n" + "\n".join(terms) + "\n"
    codes = np.frombuffer(joined.encode("utf-32-le"), np.uint32)
    batch = Cleaned(codes, np.flatnonzero(codes == SEP), np.zeros(len(terms), bool))
    found = words(batch)
    counts = np.bincount(found.rows, minlength=len(terms))
    if len(batch.seps) != len(terms) + 1 or np.any((counts < 1) | (counts > 2)):
        raise ValueError("a vocabulary term must be one or two words")
    first = np.searchsorted(found.rows, np.arange(len(terms)))
    keys = found.keys[first].copy()
    pairs = np.flatnonzero(counts == 2)
    keys[pairs] = pair_keys(found.keys[first[pairs]], found.keys[first[pairs] + 1])
    return keys
