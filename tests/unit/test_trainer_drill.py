"""The rollout drill's data: train labels shuffled across rows, everything else kept."""

from __future__ import annotations

import numpy as np

from mlcycle.contracts.training import JobConfig
from mlcycle.featurization.sparse import SparseBatch
from mlcycle.trainer.data import SplitData
from mlcycle.trainer.features import DRILL_SEED, shuffled_labels


def split(n: int = 200) -> SplitData:
    rows = np.arange(n)
    batch = SparseBatch(
        indptr=np.arange(n + 1, dtype=np.int64),
        indices=(rows % 7).astype(np.int32),
        values=np.ones(n, np.float32),
        dim=7,
        truncated=np.zeros(n, bool),
    )
    return SplitData.from_batch(batch, (rows % 3 == 0).astype(np.int64))


def test_labels_move_to_other_rows_and_features_stay() -> None:
    before = split()
    after = shuffled_labels(before, seed=DRILL_SEED)
    assert np.array_equal(after.indices, before.indices)
    assert np.array_equal(after.item_ids, before.item_ids)
    assert np.array_equal(np.sort(after.labels), np.sort(before.labels))  # same class counts
    assert np.mean(after.labels == before.labels) < 0.75  # most rows got another's label
    assert np.array_equal(after.probabilities.argmax(axis=1), after.labels)  # soft follows hard
    assert np.array_equal(shuffled_labels(before, seed=DRILL_SEED).labels, after.labels)


def test_the_drill_is_off_unless_asked() -> None:
    assert JobConfig().shuffle_train_labels is False
    assert JobConfig(shuffle_train_labels=True).shuffle_train_labels is True
