"""Training on a mix of corpora: each row's source in the shards, and weights per source.

The data is generated: a row is positive when it holds one of columns 0-4. A
second source, larger, says the opposite of every row; trained on both alike
the model learns its inverted rule, and with that source weighed 0 it learns
the clean one. Dev is clean, so the dev metric tells which was learned.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from mlcycle.common.errors import ValidationFailed
from mlcycle.contracts.features import FeatureSetManifest, ShardEntry, SplitShards
from mlcycle.contracts.training import JobConfig
from mlcycle.featurization.shards import feature_set_dir, file_sha256, read_shard, write_shard
from mlcycle.featurization.sparse import SparseBatch
from mlcycle.trainer.data import SplitData, TrainingData, read_feature_split, source_weight_of
from mlcycle.trainer.fit import class_weights, example_weights, fit
from mlcycle.trainer.linear import fit_linear, weighted_rows
from tests.unit.test_trainer_core import SMALL, make_split

pytestmark = pytest.mark.unit

FLIPPED = {"noisy": 0.0}


def joined(*parts: tuple[SplitData, str]) -> SplitData:
    """Splits one after another, each row tagged with its part's source."""
    offsets = np.cumsum([0] + [int(p.indptr[-1]) for p, _ in parts[:-1]])
    return SplitData(
        indptr=np.concatenate(
            [np.zeros(1, np.int64)]
            + [p.indptr[1:] + off for (p, _), off in zip(parts, offsets, strict=True)]
        ),
        indices=np.concatenate([p.indices for p, _ in parts]),
        values=np.concatenate([p.values for p, _ in parts]),
        labels=np.concatenate([p.labels for p, _ in parts]),
        probabilities=np.concatenate([p.probabilities for p, _ in parts]),
        item_ids=np.concatenate([[f"{s}-{i}" for i in range(len(p))] for p, s in parts]),
        dim=parts[0][0].dim,
        sources=np.concatenate([np.full(len(p), s) for p, s in parts]),
    )


def flipped(split: SplitData) -> SplitData:
    labels = 1 - split.labels
    return SplitData(
        indptr=split.indptr,
        indices=split.indices,
        values=split.values,
        labels=labels,
        probabilities=np.eye(2, dtype=np.float32)[labels],
        item_ids=split.item_ids,
        dim=split.dim,
    )


def mixed_data() -> TrainingData:
    train = joined((make_split(200, 1), "clean"), (flipped(make_split(400, 4)), "noisy"))
    return TrainingData(
        train=train,
        dev=joined((make_split(120, 2), "clean")),
        test=joined((make_split(120, 3), "clean")),
        n_classes=2,
        transform="tf-test",
        label_run="lr-test",
        task="toxicity",
    )


# --------------------------------------------------------------------------- weights


def test_a_source_weighed_zero_is_not_learned_from() -> None:
    data = mixed_data()
    both = fit(SMALL, data, metric="roc_auc")
    less = fit(SMALL, data, metric="roc_auc", source_weights={"noisy": 0.3})
    clean_only = fit(SMALL, data, metric="roc_auc", source_weights=FLIPPED)
    # The larger, inverted source wins when both count; left out, the clean rule is learned.
    assert both.dev_metric < 0.5
    assert clean_only.dev_metric > 0.95
    # Weighed less, it pulls less.
    assert both.dev_metric < less.dev_metric < clean_only.dev_metric


def test_the_linear_companion_weighs_sources_the_same_way() -> None:
    data = mixed_data()
    both = fit_linear(data, metric="roc_auc")
    clean_only = fit_linear(data, metric="roc_auc", source_weights=FLIPPED)
    assert both is not None and clean_only is not None
    assert both.dev_metric < 0.5 < 0.95 < clean_only.dev_metric
    rows, _, weights = weighted_rows(
        data.train, 2, soft_labels=True, class_weight="none", source_weights={"noisy": 0.5}
    )
    assert set(data.train.sources[rows]) == {"clean", "noisy"}
    assert np.allclose(weights, np.where(data.train.sources[rows] == "noisy", 0.5, 1.0))
    rows, _, _ = weighted_rows(
        data.train, 2, soft_labels=False, class_weight="balanced", source_weights=FLIPPED
    )
    assert set(data.train.sources[rows]) == {"clean"}


def test_example_weights_are_class_times_source_weights() -> None:
    split = joined((make_split(50, 1), "a"), (make_split(30, 2), "b"), (make_split(20, 3), ""))
    plain = example_weights(split, 2, "balanced")
    assert np.allclose(plain, class_weights(split, 2, "balanced")[split.labels])
    weighted = example_weights(split, 2, "none", {"a": 2.0, "b": 0.0, "elsewhere": 5.0})
    expected = np.select([split.sources == "a", split.sources == "b"], [2.0, 0.0], 1.0)
    assert np.allclose(weighted, expected)
    # Balanced over what trains: each class weighs the same in total, sources included.
    balanced = example_weights(split, 2, "balanced", {"a": 3.0, "b": 0.0})
    totals = np.bincount(split.labels, weights=balanced)
    assert totals[0] == pytest.approx(totals[1])
    assert np.array_equal(source_weight_of(split.sources, None), np.ones(len(split)))


def test_source_weights_that_leave_nothing_to_learn_are_refused() -> None:
    data = mixed_data()
    data.check(FLIPPED)
    with pytest.raises(ValidationFailed, match="none of them"):
        data.check({"davidsn": 0.5})
    with pytest.raises(ValidationFailed, match="single class in the train rows"):
        data.check({"clean": 0.0, "noisy": 0.0})


def test_job_config_validates_the_weights() -> None:
    config = JobConfig(source_weights={"davidson": 0.5, "hatexplain": 2, "armis": 0})
    assert config.source_weights == {"davidson": 0.5, "hatexplain": 2.0, "armis": 0.0}
    assert JobConfig().source_weights == {}
    for bad in ({"davidson": -1}, {"davidson": "lots"}, {"": 1.0}, {"x": float("nan")},
                {"x": float("inf")}, ["davidson"], {"x": {"weight": 1}}):  # fmt: skip
        with pytest.raises(ValidationError, match="source_weights"):
            JobConfig(source_weights=bad)


def test_take_keeps_the_rows_asked_for() -> None:
    split = joined((make_split(30, 1), "a"), (make_split(20, 2), "b"))
    rows = np.array([45, 3, 29, 30])
    part = split.take(rows)
    assert list(part.item_ids) == list(split.item_ids[rows])
    assert list(part.sources) == ["b", "a", "a", "b"]
    assert np.array_equal(part.csr().toarray(), split.csr().toarray()[rows])


# --------------------------------------------------------------------------- shards


def shard_features(n: int) -> SparseBatch:
    return SparseBatch(
        indptr=np.arange(n + 1, dtype=np.int64),
        indices=np.arange(n, dtype=np.int32),
        values=np.ones(n, np.float32),
        dim=10,
        truncated=np.zeros(n, bool),
    )


def test_shards_keep_each_rows_source(tmp_path: Path) -> None:
    path = tmp_path / "shard.npz"
    ids = ["davidson-1", "hatexplain-2", "c-3"]
    write_shard(path, shard_features(3), [1, 0, 1], np.eye(2)[[1, 0, 1]], ids,
                sources=["davidson", "hatexplain", None])  # fmt: skip
    shard = read_shard(path)
    assert list(shard.sources) == ["davidson", "hatexplain", ""]
    write_shard(path, shard_features(3), [1, 0, 1], np.eye(2)[[1, 0, 1]], ids)
    assert list(read_shard(path).sources) == ["", "", ""]
    with pytest.raises(ValueError, match="2 sources for 3 rows"):
        write_shard(path, shard_features(3), [1, 0, 1], np.eye(2)[[1, 0, 1]], ids, ["a", "b"])


def test_shards_written_before_sources_still_read(tmp_path: Path) -> None:
    """A feature set whose shards have no sources: every row's source is unknown."""
    features = shard_features(4)
    manifest = FeatureSetManifest(
        transform="tf-old", dim=10, label_run="lr-old", task="toxicity", n_classes=2,
        splits={}, rows=4, labels_without_comment=0, created_at="2026-01-01T00:00:00Z",
    )  # fmt: skip
    path = feature_set_dir(tmp_path, "tf-old", "lr-old") / "train" / "shard-00000.npz"
    path.parent.mkdir(parents=True)
    with open(path, "wb") as handle:  # the format as it was, without ``sources``
        np.savez_compressed(
            handle,
            indptr=features.indptr,
            indices=features.indices,
            values=features.values,
            truncated=features.truncated,
            dim=np.array(10, np.int64),
            labels=np.array([0, 1, 1, 0], np.int16),
            probabilities=np.eye(2, dtype=np.float32)[[0, 1, 1, 0]],
            item_ids=np.array(["a", "b", "c", "d"]),
        )
    entry = ShardEntry(file="train/shard-00000.npz", rows=4, sha256=file_sha256(path))
    splits = {"train": SplitShards(rows=4, shards=[entry])}
    manifest = manifest.model_copy(update={"splits": splits})
    split = read_feature_split(tmp_path, manifest, "train")
    assert list(split.sources) == ["", "", "", ""]
    assert list(split.labels) == [0, 1, 1, 0]
    assert np.allclose(example_weights(split, 2, "none", {"davidson": 0.0}), 1.0)
