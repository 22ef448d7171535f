"""The searched network's linear companion: soft-label rows, C on dev, the blend and its export."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from mlcycle.featurization.sparse import SparseBatch
from mlcycle.trainer import export as exporting
from mlcycle.trainer.data import SplitData, TrainingData
from mlcycle.trainer.fit import fit, predict_probabilities
from mlcycle.trainer.linear import (
    blend_probabilities,
    blend_with_linear,
    describe_blend,
    fit_linear,
    linear_part_probabilities,
    weighted_rows,
)
from mlcycle.trainer.models import BlendedModel
from tests.unit.test_trainer_core import SMALL, make_data

DIM = 60


def three_class_split(n: int, seed: int, *, classes: int = 3) -> SplitData:
    """Rows of random columns; class k rows also hold column k, with a noisy soft label."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, n)
    rows = [np.unique(np.append(rng.choice(np.arange(3, DIM), 4), y)) for y in labels]
    indptr = np.cumsum([0] + [len(r) for r in rows])
    soft = np.full((n, 3), 0.05, np.float32)
    soft[np.arange(n), labels] = 0.9
    soft[:, classes:] = 0.0
    soft /= soft.sum(axis=1, keepdims=True)
    batch = SparseBatch(
        indptr=indptr.astype(np.int64),
        indices=np.concatenate(rows).astype(np.int32),
        values=np.ones(indptr[-1], np.float32),
        dim=DIM,
        truncated=np.zeros(n, bool),
    )
    return SplitData.from_batch(batch, labels, probabilities=soft, n_classes=3)


def three_class_data(train_classes: int = 3) -> TrainingData:
    return TrainingData(
        train=three_class_split(300, 1, classes=train_classes),
        dev=three_class_split(90, 2),
        test=three_class_split(90, 3),
        n_classes=3,
        transform="tf-test",
        label_run="lr-test",
        task="hate_offensive",
    )


def test_soft_labels_become_weighted_copies_of_the_rows() -> None:
    split = three_class_split(40, 5)
    rows, classes, weights = weighted_rows(split, 3, soft_labels=True, class_weight="none")
    assert len(rows) == 3 * 40  # every row has some probability for every class
    for row in range(40):
        mine = rows == row
        assert np.allclose(weights[mine], split.probabilities[row, classes[mine]])
    rows, classes, weights = weighted_rows(split, 3, soft_labels=False, class_weight="balanced")
    assert np.array_equal(rows, np.arange(40)) and np.array_equal(classes, split.labels)
    counts = np.bincount(split.labels, minlength=3)
    assert np.allclose(weights, 40 / (3 * counts[split.labels]))


@pytest.mark.parametrize("data", [make_data(), three_class_data()], ids=["binary", "3-class"])
def test_linear_logits_answer_like_scikit_learn(data: TrainingData) -> None:
    linear = fit_linear(data, metric="macro_f1", soft_labels=False, class_weight="none")
    assert linear is not None and linear.c in linear.dev_by_c
    reference = LogisticRegression(C=linear.c, max_iter=1000).fit(
        data.train.csr(), data.train.labels
    )
    expected = reference.predict_proba(data.dev.csr())
    assert np.allclose(linear.dev_probabilities, expected, atol=1e-5)
    assert linear.kernel.shape == (data.dim, data.n_classes)


def test_no_linear_part_when_a_class_has_no_training_rows() -> None:
    data = three_class_data(train_classes=2)
    assert fit_linear(data, metric="macro_f1") is None
    network = fit(SMALL, data, metric="macro_f1")
    kept = blend_with_linear(network, data, metric="macro_f1")
    assert kept.model is network.model and kept.blend == {
        "used": False,
        "reason": "a class has no training rows",
    }
    assert describe_blend(kept.blend).startswith("not tried")


def test_blend_weights_run_from_network_to_linear() -> None:
    network = np.array([[0.9, 0.1], [0.2, 0.8]], np.float32)
    linear = np.array([[0.4, 0.6], [0.5, 0.5]], np.float32)
    assert np.allclose(blend_probabilities(network, linear, 1.0), network, atol=1e-6)
    assert np.allclose(blend_probabilities(network, linear, 0.0), linear, atol=1e-6)
    half = blend_probabilities(network, linear, 0.5)
    logit = np.log(half[:, 1] / half[:, 0])
    expected = 0.5 * np.log(network[:, 1] / network[:, 0]) + 0.5 * np.log(
        linear[:, 1] / linear[:, 0]
    )
    assert np.allclose(logit, expected, atol=1e-5)


def test_a_weak_network_is_blended_and_exports_as_one_model(tmp_path: Path) -> None:
    data = make_data()
    weak = fit(SMALL.model_copy(update={"epochs": 1, "learning_rate": 1e-4}), data)
    blended = blend_with_linear(weak, data, metric="roc_auc", class_weight="none")
    info = blended.blend
    assert info is not None and info["used"], info
    assert isinstance(blended.model, BlendedModel)
    assert 0.25 <= info["network_weight"] < 1.0
    assert blended.dev_metric > weak.dev_metric
    assert info["dev"]["network"] == weak.dev_metric
    assert np.allclose(predict_probabilities(blended.model, data.dev), blended.dev_probabilities)
    alone = linear_part_probabilities(blended.model, data.dev)
    assert np.allclose(alone[:, 1], info_linear_dev(data, info["linear_c"]), atol=1e-5)
    assert "network × " in describe_blend(info)

    target = tmp_path / "toxicity" / "1"
    exporting.export_saved_model(blended.model, target)
    indices, values = data.dev.flat_rows(np.arange(20)).padded()
    served = exporting.ServingModel(target).probabilities(indices, values)
    assert np.allclose(served, blended.dev_probabilities[:20], atol=1e-5)


def info_linear_dev(data: TrainingData, c: float) -> np.ndarray:
    """The dev scores of scikit-learn's own fit with soft labels as weighted copies."""
    rows, classes, weights = weighted_rows(data.train, 2, soft_labels=True, class_weight="none")
    model = LogisticRegression(C=c, max_iter=1000)
    model.fit(data.train.csr()[rows], classes, sample_weight=weights)
    return model.predict_proba(data.dev.csr())[:, 1]


def test_a_blend_no_better_on_dev_keeps_the_network() -> None:
    data = make_data()
    network = fit(SMALL, data)
    assert network.dev_metric == pytest.approx(1.0, abs=0.02)
    # A dev metric the blend cannot beat: the network is already perfect on it.
    perfect = dataclasses.replace(network, dev_metric=1.0)
    kept = blend_with_linear(perfect, data, metric="roc_auc")
    assert kept.model is network.model and kept.blend is not None
    assert not kept.blend["used"] and "does not beat" in kept.blend["reason"]
    assert kept.dev_metric == 1.0
