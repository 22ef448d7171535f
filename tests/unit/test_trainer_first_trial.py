"""A retrain's search tries the production model's hyper-parameters first (no training here:
the fit is replaced by one that only records what it was asked to train)."""

from __future__ import annotations

import logging
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from optuna.trial import TrialState
from pydantic import ValidationError

from mlcycle.contracts.retraining import RetrainingPolicy
from mlcycle.contracts.training import FloatRange, IntRange, JobConfig, SearchSpace, TrialParams
from mlcycle.trainer.fit import FitResult
from mlcycle.trainer.search import Search, first_trial_values
from mlcycle.trainer.stages.search import start_with_production

SPACE = SearchSpace(
    features=["words+chars", "bigrams+chars"],
    hidden_units=IntRange(low=32, high=192, log=True),
    hidden_layers=IntRange(low=1, high=2),
    dropout=FloatRange(low=0.2, high=0.6),
    learning_rate=FloatRange(low=2e-4, high=3e-3, log=True),
    batch_size=[64, 128],
    epochs=6,
)
PRODUCTION = TrialParams(
    features="bigrams+chars",
    hidden_units=77,
    hidden_layers=2,
    dropout=0.41,
    learning_rate=1.3e-3,
    batch_size=64,
    epochs=6,
)


class Registry:
    """The registry as the search stage asks it: the production model, or none."""

    def __init__(self, params: dict[str, Any] | None) -> None:
        self.params = params

    def production(self, name: str) -> Any:
        if self.params is None:
            return None
        return SimpleNamespace(name=name, version=3, params=self.params)


@pytest.fixture
def trained(monkeypatch: pytest.MonkeyPatch) -> list[TrialParams]:
    """Every trial's parameters, in the order the search fits them; each scores 0.5 + a bit."""
    seen: list[TrialParams] = []

    def fake_fit(self: Search, params: TrialParams, data: Any, number: int, **_: Any) -> FitResult:
        seen.append(params)
        return FitResult(
            model=SimpleNamespace(save_weights=lambda path: None),
            params=params,
            dev_probabilities=np.zeros((1, 2)),
            dev_metric=0.5 + 0.01 * number,
            best_epoch=1,
            epochs_run=1,
            stopped="patience",
            seconds=0.0,
            history={},
        )

    monkeypatch.setattr(Search, "_fit", fake_fit)
    return seen


def search(tmp_path: Path, trials: int = 3) -> Search:
    config = JobConfig(trials=trials, search=SPACE, first_trial="production")
    return Search("job-first", config, "roc_auc", f"sqlite:///{tmp_path}/s.db", tmp_path / "w")


def waiting(study_search: Search) -> list[dict[str, Any]]:
    trials = study_search.study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
    return [t.system_attrs.get("fixed_params", {}) for t in trials]


def test_production_is_the_first_trial_and_the_search_goes_on(
    tmp_path: Path, trained: list[TrialParams]
) -> None:
    job = search(tmp_path)
    source = start_with_production(job, Registry(PRODUCTION.model_dump()), "toxicity")
    assert source == "production version 3"
    assert waiting(job) == [first_trial_values(PRODUCTION, SPACE)]
    outcome = job.run(lambda _: None, budget_s=60)
    assert trained[0] == PRODUCTION  # every hyper-parameter, the fixed epochs included
    assert outcome.trials[0].params == PRODUCTION.model_dump()
    assert len(trained) == 3 and len({p.hidden_units for p in trained}) > 1  # then it searches


def test_without_a_production_model_the_search_starts_as_usual(
    tmp_path: Path, trained: list[TrialParams], caplog: pytest.LogCaptureFixture
) -> None:
    job = search(tmp_path, trials=2)
    with caplog.at_level(logging.INFO):
        assert start_with_production(job, Registry(None), "toxicity") is None
    assert "no production model of toxicity" in caplog.text
    assert waiting(job) == []
    job.run(lambda _: None, budget_s=60)
    assert len(trained) == 2 and PRODUCTION not in trained


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"hidden_units": 512}, "hidden_units=512"),  # beyond the range
        ({"features": "words"}, "features='words'"),  # not a choice
        ({"epochs": 9}, "epochs=9"),  # the space fixes another value
        ({"preset": "seed"}, "preset 'seed'"),  # the talk's network is no point of it
    ],
)
def test_parameters_outside_the_space_leave_the_search_as_usual(
    tmp_path: Path,
    trained: list[TrialParams],
    caplog: pytest.LogCaptureFixture,
    change: dict[str, Any],
    named: str,
) -> None:
    job = search(tmp_path, trials=1)
    production = PRODUCTION.model_copy(update=change).model_dump()
    assert start_with_production(job, Registry(production), "toxicity") is None
    assert named in caplog.text and waiting(job) == []
    job.run(lambda _: None, budget_s=60)
    assert trained[0] != TrialParams(**production)


def test_parameters_of_another_release_are_not_tried(tmp_path: Path) -> None:
    job = search(tmp_path)
    unknown = {**PRODUCTION.model_dump(), "momentum": 0.9}
    assert start_with_production(job, Registry(unknown), "toxicity") is None
    assert waiting(job) == []


def test_only_the_searched_parameters_are_queued_and_a_resumed_study_is_left_alone(
    tmp_path: Path, trained: list[TrialParams]
) -> None:
    values = first_trial_values(PRODUCTION, SPACE)
    assert values == {
        "features": "bigrams+chars",
        "hidden_units": 77,
        "hidden_layers": 2,
        "dropout": 0.41,
        "learning_rate": 1.3e-3,
        "batch_size": 64,
    }  # epochs and wide are fixed by the space, so Optuna proposes neither
    job = search(tmp_path, trials=1)
    job.run(lambda _: None, budget_s=60)
    again = search(tmp_path, trials=2)
    assert again.start_with(PRODUCTION, "production version 3") is False
    assert waiting(again) == []


def test_the_option_is_a_retrain_default_and_off_for_a_plain_job() -> None:
    assert JobConfig().first_trial is None
    assert RetrainingPolicy().first_trial == "production"
    assert RetrainingPolicy(first_trial=None).first_trial is None
    with pytest.raises(ValidationError, match="first_trial"):
        JobConfig(first_trial="latest")
