"""The vectorizing step compiled with Numba: one text at a time, no per-call numpy overhead.

:mod:`~mlcycle.featurization.vectors` turns a batch into CSR rows with a few
dozen numpy calls whatever the batch size: a fixed cost of a few hundred
microseconds that dominates a served request's featurization (one to a few
texts). This module does the same work in one compiled call that walks each
text once: its words (hashed, looked up or bucketed, with their pairs), its
char n-grams, its metadata slots, then a sort, the counts and the weights.

It reproduces the numpy path bit for bit, by the same arithmetic in the same
order: unsigned integer hashing that wraps as numpy's does; word hashes summed
directly instead of through prefix sums (equal modulo 2**64, since the base is
odd); weights read from the same ``1 + ln(count)`` table; L2 norms summed in
float64 over float32 squares in column order, as ``np.bincount`` does, then
rounded to float32 for the square root. ``tests/unit/test_featurizer_compiled.py``
holds it to that on random and edge-case texts under every layout.

Compiled once per machine and cached beside this file (``cache=True``; set
``NUMBA_CACHE_DIR`` where the package is read-only): the first call of a process
then loads it in about a quarter of a second, the very first compiles it in two
or three. ``nogil``: featurizing threads run in parallel.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from mlcycle.featurization.config import WordConfig
from mlcycle.featurization.hashing import EMPTY as _EMPTY
from mlcycle.featurization.preprocess import SEP as _SEP
from mlcycle.featurization.preprocess import SPACE as _SPACE
from mlcycle.featurization.preprocess import Cleaned
from mlcycle.featurization.sparse import CsrBuilder
from mlcycle.featurization.vectors import Layout, log_weights_table
from mlcycle.featurization.words import Vocabulary

# The constants of mlcycle.featurization.hashing, as plain ints Numba folds in.
BASE = 0x100000001B3
FMIX1 = 0xFF51AFD7ED558CCD
FMIX2 = 0xC4CEB9FE1A85EC53
GOLDEN = 0x9E3779B97F4A7C15
SEED_WORD = 0x13198A2E03707344
SEED_PAIR = 0xA4093822299F31D0
BASE32 = 0x01000193
CHAR_MULT = np.array([0, 0, 0x243F6A89, 0x85A308D3, 0x13198A2F, 0x03707345], np.uint32)
EMPTY = int(_EMPTY)
SEP = int(_SEP)
SPACE = int(_SPACE)

# Rows of at least RADIX_FROM cells are radix-sorted, RADIX_BITS bits a pass.
RADIX_BITS = 11
RADIX = 1 << RADIX_BITS
RADIX_FROM = 256
# Word group modes.
WORDS_OFF, WORDS_VOCAB, WORDS_HASHED = 0, 1, 2
# The lookup table's arguments when there is no vocabulary (never read).
_NO_TABLE = (np.zeros(1, np.uint64), np.full(1, -1, np.int64), 0, 0)


@njit(cache=True, nogil=True)
def _fmix64(x: np.uint64) -> np.uint64:
    x ^= x >> np.uint64(33)
    x *= np.uint64(FMIX1)
    x ^= x >> np.uint64(33)
    x *= np.uint64(FMIX2)
    x ^= x >> np.uint64(33)
    return x


@njit(cache=True, nogil=True)
def _sorted(cells: np.ndarray, count: int, scratch: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """``cells[:count]`` in ascending order (``cells`` and ``scratch`` are overwritten).

    A long text has a couple of thousand cells: a least-significant-digit radix sort
    (11 bits a pass, as many passes as the largest cell needs) orders them in a few
    linear passes, where a comparison sort took most of the text's time. Short rows
    are left to the comparison sort, which needs no count table.
    """
    if count < RADIX_FROM:
        return np.sort(cells[:count])
    largest = 0
    for k in range(count):
        largest = max(largest, cells[k])
    source, target = cells, scratch
    shift = 0
    while shift == 0 or (largest >> shift) > 0:
        counts[:] = 0
        for k in range(count):
            counts[(source[k] >> shift) & (RADIX - 1)] += 1
        total = 0
        for digit in range(RADIX):
            here = counts[digit]
            counts[digit] = total
            total += here
        for k in range(count):
            digit = (source[k] >> shift) & (RADIX - 1)
            target[counts[digit]] = source[k]
            counts[digit] += 1
        source, target = target, source
        shift += RADIX_BITS
    return source[:count]


@njit(cache=True, nogil=True)
def _word_column(
    key: np.uint64,
    mode: int,
    buckets: int,
    shift: int,
    table_keys: np.ndarray,
    table_index: np.ndarray,
    table_shift: int,
    table_mask: int,
) -> int:
    """The word group's column of a word or pair hash, -1 when the vocabulary lacks it."""
    if mode == WORDS_HASHED:
        if shift:
            return np.int64(key >> np.uint64(shift))
        return np.int64(((key >> np.uint64(32)) * np.uint64(buckets)) >> np.uint64(32))
    slot = np.int64((key * np.uint64(GOLDEN)) >> np.uint64(table_shift))
    mask = np.int64(table_mask)
    while True:
        index = table_index[slot]
        if index < 0:
            return -1
        if table_keys[slot] == key:
            return index
        slot = (slot + np.int64(1)) & mask


@njit(cache=True, nogil=True)
def vectorize_rows(
    codes: np.ndarray,
    seps: np.ndarray,
    word_mode: int,
    word_ngram_max: int,
    word_buckets: int,
    word_shift: int,
    table_keys: np.ndarray,
    table_index: np.ndarray,
    table_shift: int,
    table_mask: int,
    word_dim: int,
    char_min: int,
    char_max: int,
    char_dim: int,
    char_shift: int,
    meta_cells: np.ndarray,
    meta_values: np.ndarray,
    slot_fields: np.ndarray,
    log_weights: np.ndarray,
    binary: bool,
    l2: bool,
    out_indices: np.ndarray,
    out_values: np.ndarray,
    per_row: np.ndarray,
) -> int:
    """Write every text's CSR entries to ``out_*`` (sized by the caller); returns the count.

    ``codes`` is a batch's uint32 code array with its separators, ``seps`` their
    positions. ``char_min`` 0 turns the char group off. ``word_shift`` and
    ``char_shift``: see :func:`bucket_shift`. ``log_weights`` must be longer than
    any count a text can have.
    """
    n = len(seps) - 1
    meta_offset = word_dim + char_dim
    n_fields = meta_cells.shape[1]
    longest = 0
    for i in range(n):
        longest = max(longest, seps[i + 1] - seps[i] - 1)
    kinds = char_max - char_min + 1 if char_min > 0 else 0
    cells = np.empty((longest + 2) * (kinds + word_ngram_max) + n_fields + 1, np.uint32)
    chars = np.empty(longest + 2, np.uint32)
    scratch = np.empty(len(cells), np.uint32)
    counts = np.empty(RADIX, np.int64)
    rolling = np.empty(longest + 2, np.uint32)
    written = 0
    for row in range(n):
        start, end = seps[row], seps[row + 1]  # the separators around the text
        length = end - start - 1
        count = 0
        # -- words and word pairs, in order
        if word_mode != WORDS_OFF:
            previous = np.uint64(0)
            have_previous = False
            j = start + 1
            while j < end:
                if codes[j] == SPACE:
                    j += 1
                    continue
                first = j
                h = np.uint64(0)
                p = np.uint64(1)
                while j < end and codes[j] != SPACE:
                    h += np.uint64(codes[j]) * p
                    p *= np.uint64(BASE)
                    j += 1
                h ^= np.uint64(j - first) * np.uint64(GOLDEN)
                h ^= np.uint64(SEED_WORD)
                key = _fmix64(h)
                column = _word_column(
                    key,
                    word_mode,
                    word_buckets,
                    word_shift,
                    table_keys,
                    table_index,
                    table_shift,
                    table_mask,
                )
                if column >= 0:
                    cells[count] = column
                    count += 1
                if word_ngram_max == 2 and have_previous:
                    pair = _fmix64((previous * np.uint64(GOLDEN)) ^ key ^ np.uint64(SEED_PAIR))
                    column = _word_column(
                        pair,
                        word_mode,
                        word_buckets,
                        word_shift,
                        table_keys,
                        table_index,
                        table_shift,
                        table_mask,
                    )
                    if column >= 0:
                        cells[count] = column
                        count += 1
                previous = key
                have_previous = True
        # -- char n-grams of the text between two spaces (its separators)
        if kinds and length > 0:
            width = length + 2
            for k in range(width):
                code = codes[start + k]
                chars[k] = SPACE if code == SEP else code
                rolling[k] = chars[k]
            for gram in range(2, char_max + 1):
                span = width - gram + 1
                if span <= 0:
                    break
                for k in range(span):
                    rolling[k] = rolling[k] * np.uint32(BASE32) + chars[k + gram - 1]
                if gram < char_min:
                    continue
                multiplier = CHAR_MULT[gram]
                for k in range(span):
                    h = rolling[k]
                    # Numba widens uint32 arithmetic to 64 bits: wrap it back as numpy does.
                    mixed = np.uint32(((h >> np.uint32(16)) ^ h) * multiplier)
                    if char_shift:
                        bucket = mixed >> np.uint32(char_shift)
                    else:
                        bucket = np.uint32(
                            (np.uint64(mixed) * np.uint64(char_dim)) >> np.uint64(32)
                        )
                    cells[count] = np.uint32(bucket + np.uint32(word_dim))
                    count += 1
        # -- metadata slots
        for f in range(n_fields):
            if meta_cells[row, f] != EMPTY:
                cells[count] = meta_cells[row, f]
                count += 1
        # -- distinct columns with their counts, then weights
        ordered = _sorted(cells, count, scratch, counts)
        first_entry = written
        k = 0
        while k < count:
            column = ordered[k]
            same = k + 1
            while same < count and ordered[same] == column:
                same += 1
            out_indices[written] = column
            if column >= meta_offset:
                out_values[written] = meta_values[row, slot_fields[column - meta_offset]]
            elif binary:
                out_values[written] = np.float32(1.0)
            else:
                out_values[written] = log_weights[same - k]
            written += 1
            k = same
        per_row[row] = written - first_entry
        if l2:
            # Word and char groups are normalized apart; metadata keeps its values.
            for low, high in ((0, word_dim), (word_dim, meta_offset)):
                total = 0.0
                for e in range(first_entry, written):
                    if low <= out_indices[e] < high:
                        v = out_values[e]
                        total += np.float64(v * v)
                norm = np.sqrt(np.float32(total))
                if norm == 0:
                    continue
                for e in range(first_entry, written):
                    if low <= out_indices[e] < high:
                        out_values[e] = out_values[e] / norm
    return written


def vectorize_compiled(
    batch: Cleaned,
    layout: Layout,
    word: WordConfig,
    vocabulary: Vocabulary | None,
    meta_slots: np.ndarray,
    meta_values: np.ndarray,
    slot_fields: np.ndarray,
    out: CsrBuilder,
) -> None:
    """Append the CSR rows of ``batch`` to ``out``: :func:`~vectors.vectorize`, compiled."""
    n = len(batch.seps) - 1
    codes = batch.codes.astype(np.uint32)
    lengths = np.diff(batch.seps) - 1
    mode, ngram_max = WORDS_OFF, 0
    table_keys, table_index, shift, mask = _NO_TABLE
    if word.enabled:
        ngram_max = word.ngram_max
        if word.mode == "hashed":
            mode = WORDS_HASHED
        else:
            assert vocabulary is not None
            mode = WORDS_VOCAB
            table_keys, table_index, shift, mask = vocabulary.table_arrays()
    char_min, char_max = layout.char_range or (0, 0)
    kinds = char_max - char_min + 1 if layout.char_range is not None else 0
    meta_offset = layout.word_dim + layout.char_dim
    meta_cells = np.where(meta_slots < 0, EMPTY, meta_slots + meta_offset).astype(np.uint32)
    longest = int(lengths.max()) if n else 0
    per_text = (longest + 2) * (kinds + ngram_max) + meta_cells.shape[1] + 1
    bound = (int(lengths.sum()) + 2 * n) * (kinds + ngram_max) + n * meta_cells.shape[1]
    indices_out, values_out = out.reserve(bound)
    per_row = np.zeros(n, np.int64)
    vectorize_rows(
        codes,
        batch.seps,
        mode,
        ngram_max,
        word.hash_buckets,
        bucket_shift(word.hash_buckets, 64),
        table_keys,
        table_index,
        shift,
        mask,
        layout.word_dim,
        char_min,
        char_max,
        layout.char_dim,
        bucket_shift(layout.char_dim, 32),
        meta_cells,
        meta_values,
        slot_fields,
        log_weights_table(per_text),
        layout.weighting == "binary",
        layout.normalize == "l2",
        indices_out,
        values_out,
        per_row,
    )
    out.commit(per_row, batch.truncated)


def bucket_shift(buckets: int, bits: int) -> int:
    """For a power of two above 1, the right shift that maps a ``bits``-bit hash to a bucket.

    As :func:`~mlcycle.featurization.hashing.to_buckets` and ``fill_char_ngrams`` do:
    the hash's top ``log2(buckets)`` bits. 0 for any other count, which takes the
    multiply-shift instead.
    """
    if buckets > 1 and buckets & (buckets - 1) == 0:
        return bits + 1 - buckets.bit_length()
    return 0
