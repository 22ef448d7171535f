"""From a pre-processed batch to CSR rows: all groups counted, sorted and weighed at once.

This is the array-at-a-time statement of vectorizing, and the reference that
:mod:`mlcycle.featurization.compiled` is held to bit for bit
(``tests/unit/test_featurizer_compiled.py``); transforms run the compiled one,
which walks each text once instead of paying a few dozen numpy calls per batch.
:class:`Layout` and the weight table are shared by both.

The costly part of featurizing is not hashing but turning a bag of indices per
text into sorted, distinct, counted CSR entries. A sort of the whole batch's
(row, index) keys is slow (tens of ns per key); short per-row sorts are not.
So every text becomes one row of a 2-D uint32 array holding its char n-gram
buckets, its word columns and its metadata slots, each already shifted to its
place in the joint index space, padded with :data:`~hashing.EMPTY`. One
``sort(axis=1)`` orders every row (a thousand or two cells, cache-resident), and
comparing neighbours yields distinct indices with their counts. Texts are
processed in bins of similar length so padding stays small; a final gather
puts the rows back in input order.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from mlcycle.featurization.hashing import EMPTY, char_ngram_width, fill_char_ngrams, spread
from mlcycle.featurization.preprocess import SPACE, Cleaned
from mlcycle.featurization.sparse import CsrBuilder

# Texts per bin: small bins keep each 2-D array in cache and its padding low.
ROWS_PER_BIN = 64


@dataclass(frozen=True)
class Layout:
    """Where the groups sit and how their values are computed."""

    word_dim: int
    char_dim: int
    meta_dim: int
    char_range: tuple[int, int] | None  # None: no char group
    weighting: str  # "binary" | "log_count"
    normalize: str  # "l2" | "none"

    @property
    def dim(self) -> int:
        return self.word_dim + self.char_dim + self.meta_dim


def vectorize(
    batch: Cleaned,
    layout: Layout,
    word_columns: Sequence[tuple[np.ndarray, np.ndarray]],
    meta_slots: np.ndarray,
    meta_values: np.ndarray,
    slot_fields: np.ndarray,
    out: CsrBuilder,
) -> None:
    """Append the CSR rows of ``batch`` to ``out``.

    ``word_columns``: (rows, cols) arrays sorted by row, repeats allowed.
    ``meta_slots``/``meta_values``: (n, fields) from the metadata encoder, -1 for none;
    ``slot_fields`` maps a metadata slot to its field's column there.
    """
    n = len(batch.seps) - 1
    lengths = np.diff(batch.seps) - 1
    codes = batch.codes.astype(np.uint32)
    codes[batch.seps] = SPACE
    words = [_per_row(rows, cols, n) for rows, cols in word_columns]
    meta_offset = layout.word_dim + layout.char_dim
    meta_cells = np.where(meta_slots < 0, EMPTY, meta_slots + meta_offset).astype(np.uint32)
    order = np.argsort(lengths, kind="stable")
    parts = []
    for start in range(0, n, ROWS_PER_BIN):
        rows = order[start : start + ROWS_PER_BIN]
        cells = _bin_cells(codes, batch.seps[rows], lengths[rows], rows, layout, words, meta_cells)
        cells.sort(axis=1)
        local, cols, counts = _distinct(cells)
        values = _values(local, cols, counts, len(rows), layout)
        if meta_values.shape[1]:
            _fill_metadata(values, rows[local], cols, layout, meta_values, slot_fields)
        parts.append((np.bincount(local, minlength=len(rows)), cols, values))
    per_row = np.zeros(n, np.int64)
    if parts:
        per_row[order] = np.concatenate([p[0] for p in parts])
    cols = np.concatenate([p[1] for p in parts]) if parts else np.empty(0, np.uint32)
    values = np.concatenate([p[2] for p in parts]) if parts else np.empty(0, np.float32)
    # Entries are grouped by row in ``order``; gather them back into input order.
    in_order = np.empty(n, np.int64)
    in_order[order] = np.cumsum(per_row[order]) - per_row[order]
    take = spread(in_order, per_row)
    indices_out, values_out = out.reserve(len(take))
    np.take(cols, take, out=indices_out.view(np.uint32))
    np.take(values, take, out=values_out)
    out.commit(per_row, batch.truncated)


def _per_row(rows: np.ndarray, cols: np.ndarray, n: int) -> tuple[np.ndarray, ...]:
    """(entries per row, first entry of each row, cols as uint32) for row-sorted input."""
    counts = np.bincount(rows, minlength=n)
    return counts, np.cumsum(counts) - counts, cols.astype(np.uint32)


def _bin_cells(
    codes: np.ndarray,
    seps: np.ndarray,
    lengths: np.ndarray,
    rows: np.ndarray,
    layout: Layout,
    words: list[tuple[np.ndarray, ...]],
    meta_cells: np.ndarray,
) -> np.ndarray:
    """One row of cells per text of the bin: char n-grams | word columns | metadata slots."""
    n_bin = len(rows)
    char_width = 0
    if layout.char_range is not None:
        char_width = char_ngram_width(int(lengths.max()), layout.char_range)
    word_counts = [counts[rows] for counts, _, _ in words]
    word_widths = [int(c.max()) if n_bin else 0 for c in word_counts]
    total = char_width + sum(word_widths) + meta_cells.shape[1]
    cells = np.empty((n_bin, total), np.uint32)
    if char_width:
        fill_char_ngrams(
            cells, codes, seps, lengths, layout.char_range, layout.char_dim, layout.word_dim
        )
    column = char_width
    flat = cells.ravel()
    line = np.arange(n_bin) * total
    for (_, firsts, cols), counts, width in zip(words, word_counts, word_widths, strict=True):
        cells[:, column : column + width] = EMPTY
        flat[spread(line + column, counts)] = cols[spread(firsts[rows], counts)]
        column += width
    cells[:, column:] = meta_cells[rows]
    return cells


def _distinct(cells: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(row, value, count) of each distinct value per row of row-sorted ``cells``."""
    width = cells.shape[1]
    flat = cells.ravel()
    if flat.size == 0:
        return np.empty(0, np.int64), np.empty(0, np.uint32), np.empty(0, np.int64)
    change = np.empty(flat.size, bool)
    change[0] = True
    np.not_equal(flat[1:], flat[:-1], out=change[1:])
    change[::width] = True
    starts = np.flatnonzero(change)
    counts = np.diff(starts, append=flat.size)
    values = flat[starts]
    real = values != EMPTY
    starts = starts[real]
    return starts // width, values[real], counts[real]


def _values(
    local: np.ndarray, cols: np.ndarray, counts: np.ndarray, n_rows: int, layout: Layout
) -> np.ndarray:
    """Weights of the entries of a bin: per text group, normalized per row if asked."""
    if layout.weighting == "binary":
        values = np.ones(len(cols), np.float32)
    else:
        values = log_weights_table(int(counts.max()) if len(counts) else 1)[counts]
    if layout.normalize == "l2":
        # Group of an entry: 0 word, 1 char, 2 metadata (whose norm is left at 1).
        meta_offset = layout.word_dim + layout.char_dim
        group = local * 3 + (cols >= layout.word_dim) + (cols >= meta_offset)
        norms = np.bincount(group, weights=np.square(values), minlength=3 * n_rows)
        norms = np.sqrt(norms, dtype=np.float32)
        norms[2::3] = 1.0
        norms[norms == 0] = 1.0
        values /= norms[group]
    return values


_LOG_WEIGHTS: list[np.ndarray] = []


def log_weights_table(max_count: int) -> np.ndarray:
    """``1 + ln(count)`` as float32 for counts up to at least ``max_count`` (index = count).

    A table filled with Python's ``math.log`` (the C library's, correctly rounded
    in practice), not numpy's vectorized log, whose last bit can depend on the
    CPU's instruction set: the same text must get the same bits on every machine.
    """
    if not _LOG_WEIGHTS or len(_LOG_WEIGHTS[0]) <= max_count:
        size = max(max_count + 1, 2 * len(_LOG_WEIGHTS[0]) if _LOG_WEIGHTS else 4096)
        table = np.array([0.0] + [1.0 + math.log(c) for c in range(1, size)], np.float32)
        table.flags.writeable = False
        _LOG_WEIGHTS[:] = [table]
    return _LOG_WEIGHTS[0]


def _fill_metadata(
    values: np.ndarray,
    rows: np.ndarray,
    cols: np.ndarray,
    layout: Layout,
    meta_values: np.ndarray,
    slot_fields: np.ndarray,
) -> None:
    """Put the encoded metadata values in place of the metadata entries' counts."""
    meta_offset = layout.word_dim + layout.char_dim
    meta = np.flatnonzero(cols >= meta_offset)
    fields = slot_fields[cols[meta].astype(np.int64) - meta_offset]
    values[meta] = meta_values[rows[meta], fields]
