"""Training data: a feature set's splits in memory, checked, and cut into flat sparse batches.

The featurizer writes CSR shards; the trainer reads a whole split into one
CSR matrix (a 160k-comment split is a few hundred MB) and feeds the model
*flat* batches: the non-zero column ids of the batch's rows, their values,
and which row each belongs to. Memory per batch is then proportional to the
batch's non-zeros, never to its longest comment.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TypedDict

import numpy as np
from scipy import sparse

from mlcycle.common.errors import InvalidInput, ValidationFailed
from mlcycle.contracts.features import FeatureSetManifest
from mlcycle.featurization.shards import UNKNOWN_SOURCE, read_split
from mlcycle.featurization.sparse import SparseBatch


@dataclass(frozen=True)
class SplitData:
    """One split: CSR features, hard labels, the labeler's class probabilities, item ids.

    ``sources`` is each row's comment source (its corpus), "" where unknown:
    shards written before sources were kept, or comments without one.
    """

    indptr: np.ndarray  # int64 (n + 1,)
    indices: np.ndarray  # int32
    values: np.ndarray  # float32
    labels: np.ndarray  # int64 (n,)
    probabilities: np.ndarray  # float32 (n, K)
    item_ids: np.ndarray  # str (n,)
    dim: int
    sources: np.ndarray | None = None  # str (n,); None becomes all unknown

    def __post_init__(self) -> None:
        if self.sources is None:
            object.__setattr__(self, "sources", np.full(len(self.labels), UNKNOWN_SOURCE))
        elif len(self.sources) != len(self.labels):
            raise ValueError(f"{len(self.sources)} sources for {len(self.labels)} rows")

    def __len__(self) -> int:
        return len(self.labels)

    def take(self, rows: np.ndarray) -> SplitData:
        """A new split of ``rows`` only, in that order (a copy)."""
        flat = self.flat_rows(np.asarray(rows, np.int64))
        lengths = np.bincount(flat.rows, minlength=flat.n_rows)
        return SplitData(
            indptr=np.concatenate([np.zeros(1, np.int64), np.cumsum(lengths, dtype=np.int64)]),
            indices=flat.ids,
            values=flat.weights,
            labels=self.labels[rows],
            probabilities=self.probabilities[rows],
            item_ids=self.item_ids[rows],
            dim=self.dim,
            sources=np.asarray(self.sources)[rows],
        )

    @classmethod
    def from_batch(
        cls,
        batch: SparseBatch,
        labels: np.ndarray,
        probabilities: np.ndarray | None = None,
        item_ids: np.ndarray | None = None,
        n_classes: int = 2,
        sources: np.ndarray | None = None,
    ) -> SplitData:
        """A split from featurizer output and labels (soft labels default to one-hot)."""
        labels = np.asarray(labels, np.int64)
        if probabilities is None:
            probabilities = np.eye(n_classes, dtype=np.float32)[labels]
        if item_ids is None:
            item_ids = np.array([str(i) for i in range(len(labels))])
        return cls(
            indptr=np.asarray(batch.indptr, np.int64),
            indices=np.asarray(batch.indices, np.int32),
            values=np.asarray(batch.values, np.float32),
            labels=labels,
            probabilities=np.asarray(probabilities, np.float32),
            item_ids=np.asarray(item_ids),
            dim=batch.dim,
            sources=None if sources is None else np.asarray(sources, np.str_),
        )

    def csr(self) -> sparse.csr_matrix:
        """The split as a SciPy CSR matrix (sharing its arrays), for scikit-learn models."""
        return sparse.csr_matrix(
            (self.values, self.indices, self.indptr), shape=(len(self), self.dim)
        )

    def class_counts(self, n_classes: int) -> np.ndarray:
        """How many rows each class has (by hard label)."""
        return np.bincount(self.labels, minlength=n_classes)

    def flat_rows(self, rows: np.ndarray) -> FlatBatch:
        """The non-zeros of ``rows`` as one flat batch, in the order of ``rows``."""
        starts = self.indptr[rows]
        lengths = self.indptr[rows + 1] - starts
        total = int(lengths.sum())
        # For every output position, its source position in the CSR arrays: the row's
        # start plus the offset within the row.
        row_of = np.repeat(np.arange(len(rows), dtype=np.int32), lengths)
        first_out = np.cumsum(lengths) - lengths
        source = np.repeat(starts - first_out, lengths) + np.arange(total)
        return FlatBatch(
            ids=self.indices[source],
            weights=self.values[source],
            rows=row_of,
            n_rows=len(rows),
        )

    def batches(
        self, batch_size: int, rng: np.random.Generator | None = None
    ) -> Iterator[tuple[np.ndarray, FlatBatch]]:
        """``(row numbers, flat batch)`` over the split; shuffled when ``rng`` is given."""
        order = rng.permutation(len(self)) if rng is not None else np.arange(len(self))
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            yield rows, self.flat_rows(rows)


@dataclass(frozen=True)
class FlatBatch:
    """A batch as the model's inputs: ids, weights and row of every non-zero, and the row count."""

    ids: np.ndarray  # int32 (nnz,)
    weights: np.ndarray  # float32 (nnz,)
    rows: np.ndarray  # int32 (nnz,)
    n_rows: int

    def padded(self) -> tuple[np.ndarray, np.ndarray]:
        """The serving signature's inputs: (indices, values) of shape (n_rows, longest row)."""
        lengths = np.bincount(self.rows, minlength=self.n_rows)
        width = max(1, int(lengths.max(initial=0)))
        indices = np.zeros((self.n_rows, width), np.int64)
        values = np.zeros((self.n_rows, width), np.float32)
        first = np.cumsum(lengths) - lengths
        column = np.arange(len(self.rows)) - first[self.rows]
        indices[self.rows, column] = self.ids
        values[self.rows, column] = self.weights
        return indices, values


class SplitCounts(TypedDict):
    """How many rows a split has, and how many of each class (by hard label)."""

    rows: int
    classes: list[int]


@dataclass
class TrainingData:
    """Train, dev and test splits of one feature set, and where they came from."""

    train: SplitData
    dev: SplitData
    test: SplitData
    n_classes: int
    transform: str
    label_run: str
    task: str
    # The feature variant (n-gram settings) the splits were featurized with, when known.
    variant: str | None = None

    @property
    def dim(self) -> int:
        return self.train.dim

    def counts(self) -> dict[str, SplitCounts]:
        """Rows and class counts per split, for the lineage."""
        return {
            name: {"rows": len(split), "classes": split.class_counts(self.n_classes).tolist()}
            for name, split in (("train", self.train), ("dev", self.dev), ("test", self.test))
        }

    def source_counts(self) -> dict[str, dict[str, int]]:
        """Rows per source (corpus) in each split; unknown sources count under ""."""
        counts: dict[str, dict[str, int]] = {}
        for name, split in (("train", self.train), ("dev", self.dev), ("test", self.test)):
            values, n = np.unique(split.sources, return_counts=True)
            counts[name] = {str(v): int(k) for v, k in zip(values, n, strict=True)}
        return counts

    def check(self, source_weights: Mapping[str, float] | None = None) -> None:
        """Refuse data a model cannot learn from or be judged on, saying why.

        With ``source_weights``, the rows they leave in training (weight above 0)
        must still hold two classes, and at least one named source must be
        there: weights that match nothing are a typo or shards without sources.
        """
        if len(self.train) == 0:
            raise ValidationFailed(
                f"label run {self.label_run} has no labeled train examples",
                details={"label_run": self.label_run, "counts": self.counts()},
            )
        if source_weights:
            self._check_sources(source_weights)
        kept = source_weight_of(self.train.sources, source_weights) > 0
        present = int((np.bincount(self.train.labels[kept], minlength=self.n_classes) > 0).sum())
        if present < 2:
            which = "its train split"
            if source_weights:
                which = "the train rows its source_weights keep"
            raise ValidationFailed(
                f"label run {self.label_run} has a single class in {which}: "
                "a classifier needs examples of at least two",
                details={"label_run": self.label_run, "counts": self.counts()},
            )
        if len(self.dev) == 0:
            raise ValidationFailed(
                f"label run {self.label_run} has no dev examples to select a model on",
                details={"label_run": self.label_run, "counts": self.counts()},
            )

    def _check_sources(self, source_weights: Mapping[str, float]) -> None:
        present = set(np.unique(self.train.sources).tolist())
        if not present & set(source_weights):
            raise ValidationFailed(
                f"source_weights name {sorted(source_weights)}, but the train split of label "
                f"run {self.label_run} has none of them",
                details={"label_run": self.label_run, "sources": self.source_counts()["train"]},
            )


def source_weight_of(sources: np.ndarray, source_weights: Mapping[str, float] | None) -> np.ndarray:
    """Each row's source weight: the job's weight for its source, 1.0 for any other source."""
    weights = np.ones(len(sources), np.float64)
    for source, weight in (source_weights or {}).items():
        weights[sources == source] = weight
    return weights


def read_feature_split(root: Path, manifest: FeatureSetManifest, split: str) -> SplitData:
    """One split of a feature set, all its shards joined into one CSR matrix."""
    n_classes = manifest.n_classes
    shards = list(read_split(root, manifest, split))
    if not shards:
        return SplitData(
            indptr=np.zeros(1, np.int64),
            indices=np.empty(0, np.int32),
            values=np.empty(0, np.float32),
            labels=np.empty(0, np.int64),
            probabilities=np.empty((0, n_classes), np.float32),
            item_ids=np.empty(0, str),
            dim=manifest.dim,
            sources=np.empty(0, str),
        )
    offsets = np.cumsum([0] + [int(s.features.indptr[-1]) for s in shards[:-1]])
    indptr = np.concatenate(
        [np.zeros(1, np.int64)]
        + [
            s.features.indptr[1:].astype(np.int64) + off
            for s, off in zip(shards, offsets, strict=True)
        ]
    )
    labels = np.concatenate([s.labels for s in shards]).astype(np.int64)
    if labels.size and (labels.min() < 0 or labels.max() >= n_classes):
        raise InvalidInput(f"feature set labels fall outside 0..{n_classes - 1}")
    return SplitData(
        indptr=indptr,
        indices=np.concatenate([s.features.indices for s in shards]).astype(np.int32),
        values=np.concatenate([s.features.values for s in shards]).astype(np.float32),
        labels=labels,
        probabilities=np.concatenate([s.probabilities for s in shards]).astype(np.float32),
        item_ids=np.concatenate([s.item_ids for s in shards]),
        dim=manifest.dim,
        sources=np.concatenate([s.sources for s in shards]),
    )


def read_training_data(root: Path, manifest: FeatureSetManifest) -> TrainingData:
    """Every split of the feature set described by ``manifest``."""
    splits = {name: read_feature_split(root, manifest, name) for name in ("train", "dev", "test")}
    return TrainingData(
        **splits,
        n_classes=manifest.n_classes,
        transform=manifest.transform,
        label_run=manifest.label_run,
        task=manifest.task or "",
    )


DataSource = Callable[[str], TrainingData]  # feature variant -> its training data
