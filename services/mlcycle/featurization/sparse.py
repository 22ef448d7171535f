"""The featurizer's output: one CSR row per text."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class SparseBatch:
    """One CSR row per input text: sorted, distinct column indices and float32 values.

    ``truncated[i]`` says whether text ``i`` was cut at ``max_chars`` before
    featurization.
    """

    indptr: np.ndarray  # int64 (n + 1,)
    indices: np.ndarray  # int32, sorted within each row, no duplicates
    values: np.ndarray  # float32
    dim: int
    truncated: np.ndarray  # bool (n,)

    def __len__(self) -> int:
        return len(self.indptr) - 1

    def row(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """(indices, values) of row ``i``."""
        if not -len(self) <= i < len(self):
            raise IndexError(f"row {i} out of range for a batch of {len(self)}")
        i %= len(self)
        start, end = self.indptr[i], self.indptr[i + 1]
        return self.indices[start:end], self.values[start:end]

    def to_dense(self) -> np.ndarray:
        """A dense float32 (n, dim) matrix; for small batches and tests."""
        dense = np.zeros((len(self), self.dim), np.float32)
        rows = np.repeat(np.arange(len(self)), np.diff(self.indptr))
        dense[rows, self.indices] = self.values
        return dense


def append_dense(batch: SparseBatch, offset: int, dense: np.ndarray) -> SparseBatch:
    """``batch`` with ``dense`` (n, k) as columns ``offset .. offset + k`` at the end of each row.

    The columns must lie after every column ``batch`` uses, so each row stays sorted.
    One pass: every sparse entry moves to its place in the new arrays (shifted by
    ``k`` per row before it), and the dense block fills the gaps as one reshape.
    """
    n, k = dense.shape
    if n != len(batch):
        raise ValueError(f"{n} dense rows for a batch of {len(batch)}")
    columns = np.arange(offset, offset + k, dtype=np.int32)
    if n == 1:  # a served request: two concatenations, a third of the general path's time
        indptr = np.array([0, len(batch.indices) + k], np.int64)
        indices = np.concatenate([batch.indices, columns])
        values = np.concatenate([batch.values, dense[0].astype(np.float32, copy=False)])
        return SparseBatch(indptr, indices, values, batch.dim, batch.truncated)
    per_row = np.diff(batch.indptr)
    indptr = batch.indptr + k * np.arange(n + 1, dtype=np.int64)
    nnz = int(indptr[-1])
    indices = np.empty(nnz, np.int32)
    values = np.empty(nnz, np.float32)
    # Where each old entry goes: its old position plus k for every row before it.
    moved = np.arange(len(batch.indices), dtype=np.int64) + k * np.repeat(
        np.arange(n, dtype=np.int64), per_row
    )
    indices[moved] = batch.indices
    values[moved] = batch.values
    # The dense slots: the last k of each row.
    slots = (indptr[1:, None] - k + np.arange(k, dtype=np.int64)).ravel()
    indices[slots] = np.tile(columns, n)
    values[slots] = dense.astype(np.float32, copy=False).ravel()
    return SparseBatch(indptr, indices, values, batch.dim, batch.truncated)


def empty_batch(dim: int) -> SparseBatch:
    """A batch of no rows."""
    return SparseBatch(
        indptr=np.zeros(1, np.int64),
        indices=np.empty(0, np.int32),
        values=np.empty(0, np.float32),
        dim=dim,
        truncated=np.empty(0, bool),
    )


class CsrBuilder:
    """Collects CSR rows chunk by chunk straight into the final buffers.

    The buffers are allocated once with a generous capacity and grow
    geometrically if ever exceeded. Untouched capacity costs no memory (the OS
    maps pages on first write), and writing each entry once in its final place
    avoids building chunk arrays and then copying them all into a second,
    equally large result: for a large batch, first-touch page faults are a good
    part of the cost.
    """

    def __init__(self, dim: int, capacity: int) -> None:
        self.dim = dim
        self._indices = np.empty(max(capacity, 16), np.int32)
        self._values = np.empty(max(capacity, 16), np.float32)
        self._nnz = 0
        self._per_row: list[np.ndarray] = []
        self._truncated: list[np.ndarray] = []

    def reserve(self, nnz: int) -> tuple[np.ndarray, np.ndarray]:
        """Views for the next ``nnz`` entries (indices, values); :meth:`commit` them after."""
        need = self._nnz + nnz
        if need > len(self._indices):
            size = max(need, 2 * len(self._indices))
            for name in ("_indices", "_values"):
                old = getattr(self, name)
                grown = np.empty(size, old.dtype)
                grown[: self._nnz] = old[: self._nnz]
                setattr(self, name, grown)
        return self._indices[self._nnz : need], self._values[self._nnz : need]

    def commit(self, per_row: np.ndarray, truncated: np.ndarray) -> None:
        """Record the rows whose entries were just written (entries per row, truncation)."""
        self._nnz += int(per_row.sum())
        self._per_row.append(per_row)
        self._truncated.append(truncated)

    def build(self) -> SparseBatch:
        """The batch of every committed row."""
        per_row = np.concatenate(self._per_row) if self._per_row else np.empty(0, np.int64)
        indptr = np.zeros(len(per_row) + 1, np.int64)
        np.cumsum(per_row, out=indptr[1:])
        truncated = np.concatenate(self._truncated) if self._truncated else np.empty(0, bool)
        nnz = self._nnz
        return SparseBatch(indptr, self._indices[:nnz], self._values[:nnz], self.dim, truncated)
