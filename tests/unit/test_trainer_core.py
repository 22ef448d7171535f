"""The trainer's core on small generated data: batches, training, NaN, search resume, export."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import optuna
import pytest
from pydantic import ValidationError

from mlcycle.common.errors import ValidationFailed
from mlcycle.contracts.training import JobConfig, SearchSpace, Trial, TrialParams
from mlcycle.evaluation.classification import evaluate
from mlcycle.featurization.sparse import SparseBatch
from mlcycle.trainer import export as exporting
from mlcycle.trainer.config import SEED
from mlcycle.trainer.data import SplitData, TrainingData
from mlcycle.trainer.fit import NonFiniteLoss, fit, predict_probabilities
from mlcycle.trainer.infra_validation import compare_answers, infra_validate
from mlcycle.trainer.search import INTERRUPTED, Search

DIM = 500
SMALL = TrialParams(hidden_units=16, epochs=4, batch_size=32, learning_rate=0.03, dropout=0.0)


def make_split(n: int, seed: int, *, poison: bool = False, one_class: bool = False) -> SplitData:
    """Rows of 3-8 random columns; a row is positive when it holds one of columns 0-4."""
    rng = np.random.default_rng(seed)
    indptr, indices, values, labels = [0], [], [], []
    for _ in range(n):
        cols = np.sort(rng.choice(np.arange(25, DIM), size=int(rng.integers(3, 9)), replace=False))
        positive = not one_class and rng.random() < 0.4
        if positive:
            cols = np.sort(np.append(cols[:-1], rng.integers(0, 5)))
        indices.extend(cols.tolist())
        values.extend([np.nan if poison else 1.0] * len(cols))
        indptr.append(len(indices))
        labels.append(int(positive))
    batch = SparseBatch(
        indptr=np.array(indptr, np.int64),
        indices=np.array(indices, np.int32),
        values=np.array(values, np.float32),
        dim=DIM,
        truncated=np.zeros(n, bool),
    )
    return SplitData.from_batch(batch, np.array(labels))


def make_data(
    *, poison: bool = False, one_class: bool = False, train_rows: int = 400
) -> TrainingData:
    return TrainingData(
        train=make_split(train_rows, 1, poison=poison, one_class=one_class),
        dev=make_split(120, 2),
        test=make_split(120, 3),
        n_classes=2,
        transform="tf-test",
        label_run="lr-test",
        task="toxicity",
    )


def test_flat_batches_and_padding_reproduce_the_dense_rows() -> None:
    split = make_split(50, 7)
    dense = np.zeros((50, DIM), np.float32)
    for i in range(50):
        start, end = split.indptr[i], split.indptr[i + 1]
        dense[i, split.indices[start:end]] = split.values[start:end]
    rows = np.array([7, 3, 41, 0])
    flat = split.flat_rows(rows)
    rebuilt = np.zeros((4, DIM), np.float32)
    rebuilt[flat.rows, flat.ids] = flat.weights
    assert np.array_equal(rebuilt, dense[rows])
    indices, values = flat.padded()
    assert indices.shape == values.shape == (4, int(np.diff(split.indptr)[rows].max()))
    padded = np.zeros((4, DIM), np.float32)
    for r in range(4):
        np.add.at(padded[r], indices[r], values[r])
    assert np.array_equal(padded, dense[rows])


def test_default_model_learns_and_keeps_its_best_epoch() -> None:
    data = make_data()
    result = fit(SMALL, data, metric="roc_auc")
    assert result.dev_metric > 0.95
    assert 1 <= result.best_epoch <= result.epochs_run <= SMALL.epochs
    assert len(result.history["loss"]) == result.epochs_run
    again = predict_probabilities(result.model, data.dev)
    assert np.allclose(again, result.dev_probabilities, atol=1e-6)
    assert evaluate(again, data.dev.labels).roc_auc == pytest.approx(result.dev_metric)


def test_seed_preset_is_the_talks_network() -> None:
    assert SEED.layer_sizes() == (1000, 900)
    result = fit(SEED.model_copy(update={"epochs": 1}), make_data(train_rows=100))
    kinds = {type(layer).__name__ for layer in result.model.hidden_layers}
    assert kinds == {"Dense"} and result.model.activation_name == "sigmoid"


def test_a_nan_loss_stops_the_trial() -> None:
    with pytest.raises(NonFiniteLoss, match="nan"):
        fit(SMALL, make_data(poison=True))


def test_data_without_examples_or_with_one_class_is_refused() -> None:
    with pytest.raises(ValidationFailed, match="single class"):
        make_data(one_class=True).check()
    with pytest.raises(ValidationFailed, match="no labeled train examples"):
        make_data(train_rows=0).check()


def test_invalid_configs_name_the_field() -> None:
    with pytest.raises(ValidationError, match="trials"):
        JobConfig(trials=0)
    with pytest.raises(ValidationError, match="must not exceed"):
        SearchSpace(hidden_units={"low": 64, "high": 8})
    with pytest.raises(ValidationError, match="features"):
        SearchSpace(features=["trigrams"])
    with pytest.raises(ValidationError, match="unknown_knob"):
        JobConfig(unknown_knob=1)


def _space(**changes: object) -> SearchSpace:
    base = {
        "features": ["words+chars"],
        "hidden_units": [8, 16],
        "hidden_layers": 1,
        "dropout": 0.0,
        "learning_rate": [0.01, 0.02],
        "batch_size": 32,
        "epochs": 2,
    }
    return SearchSpace(**{**base, **changes})


def test_search_goes_on_past_nan_trials(tmp_path: Path) -> None:
    good, bad = make_data(), make_data(poison=True)
    config = JobConfig(trials=4, search=_space(features=["words", "words+chars"]), seed=1)
    search = Search("job-nan", config, "roc_auc", f"sqlite:///{tmp_path}/s.db", tmp_path / "w")
    seen: list[Trial] = []
    outcome = search.run(
        lambda v: bad if v == "words" else good, budget_s=120, on_trial=seen.append
    )
    states = [t.state for t in outcome.trials]
    assert len(outcome.trials) == 4 and len(seen) == 4
    assert "complete" in states
    failed = [t for t in outcome.trials if t.state == "fail"]
    assert all("nan" in t.error for t in failed)
    assert outcome.best.params.features == "words+chars"


def test_a_killed_search_resumes_with_the_interrupted_trial(tmp_path: Path) -> None:
    data = make_data()
    url = f"sqlite:///{tmp_path}/s.db"
    config = JobConfig(trials=3, search=_space(), seed=2)
    first = Search("job-kill", config, "roc_auc", url, tmp_path / "w")
    first.run(lambda _: data, budget_s=120)
    # A process killed inside trial 3: Optuna's storage holds it as RUNNING.
    killed = first.study.ask(
        {"hidden_units": optuna.distributions.CategoricalDistribution([8, 16])}
    )
    config = config.model_copy(update={"trials": 5})

    resumed = Search("job-kill", config, "roc_auc", url, tmp_path / "w")
    outcome = resumed.run(lambda _: data, budget_s=120)
    by_number = {t.number: t for t in outcome.trials}
    assert by_number[killed.number].state == "fail"
    assert by_number[killed.number].error == INTERRUPTED
    counted = [t for t in outcome.trials if t.error != INTERRUPTED]
    assert len(counted) == 5  # the 3 from before plus 2 new ones, the killed one run again
    rerun = [t for t in outcome.trials if t.number > killed.number]
    assert rerun[0].params["hidden_units"] == killed.params["hidden_units"]


@pytest.mark.integration
def test_export_loads_cold_and_answers_like_training(tmp_path: Path) -> None:
    data = make_data()
    result = fit(SMALL, data)
    target = tmp_path / "models" / "toxicity" / "1"
    exporting.export_saved_model(result.model, target)
    indices, values = data.dev.flat_rows(np.arange(20)).padded()
    expected = result.dev_probabilities[:20]

    served = exporting.ServingModel(target).probabilities(indices, values)
    assert np.allclose(served, expected, atol=1e-5)
    ok, message = infra_validate(target, "toxicity", 1, indices, values, expected, 120)
    assert ok and "model server" in message, message
    ok, message = compare_answers(served, 1 - expected, 0.0)
    assert not ok and "differ" in message
    ok, message = compare_answers(served[:, :1], expected, 0.0)
    assert not ok and "shape" in message
    broken = tmp_path / "models" / "toxicity" / ".candidate-2"
    broken.mkdir()
    (broken / "saved_model.pb").write_bytes(b"not a SavedModel")
    ok, message = infra_validate(broken, "toxicity", 2, indices, values, expected, 120)
    assert not ok and "failed to load" in message, message


def test_versions_are_allocated_once_each(tmp_path: Path) -> None:
    first = exporting.allocate_version(tmp_path, "toxicity", 1)
    second = exporting.allocate_version(tmp_path, "toxicity", 1)
    (tmp_path / "toxicity" / "3").mkdir()
    third = exporting.allocate_version(tmp_path, "toxicity", 3)
    assert (first, second, third) == (1, 2, 4)
