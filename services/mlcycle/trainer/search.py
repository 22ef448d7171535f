"""Hyper-parameter search with Optuna: persistent, resumable studies, pruning, a time budget.

One job is one Optuna study (named by the job id) in an RDB storage — SQLite
under the data directory by default. A search killed midway is resumed by
running it again: finished trials stay finished, a trial the kill caught
halfway is marked failed and its parameters are queued to run again first,
and only the trials still missing are run, within what is left of the
budget. Each finished trial's weights are saved when it is the best so far,
so the winner of a resumed search need not be trained a second time.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from mlcycle.contracts.training import (
    FloatRange,
    IntRange,
    JobConfig,
    ParamValue,
    SearchSpace,
    Trial,
    TrialParams,
    trial_id,
)
from mlcycle.trainer.data import TrainingData
from mlcycle.trainer.fit import FitResult, NonFiniteLoss, fit, predict_probabilities
from mlcycle.trainer.models import build_model
from mlcycle.trainer.progress import JobInterrupted

log = logging.getLogger(__name__)
optuna.logging.set_verbosity(optuna.logging.WARNING)

DataFor = Callable[[str], TrainingData]  # feature variant -> training data
TrialHook = Callable[[Trial], None]  # called with each finished trial's record
INTERRUPTED = "interrupted"


@dataclass
class SearchOutcome:
    """The winning trial, its trained model, and every trial's record."""

    best: FitResult
    best_trial: int
    trials: list[Trial]
    seconds: float


SEARCHED = (
    "features",
    "hidden_units",
    "hidden_layers",
    "dropout",
    "learning_rate",
    "batch_size",
    "epochs",
    "wide",
)


def _suggest(trial: optuna.Trial, name: str, spec: Any) -> Any:
    if isinstance(spec, IntRange):
        return trial.suggest_int(name, spec.low, spec.high, log=spec.log)
    if isinstance(spec, FloatRange):
        return trial.suggest_float(name, spec.low, spec.high, log=spec.log)
    if isinstance(spec, list):
        return spec[0] if len(spec) == 1 else trial.suggest_categorical(name, list(spec))
    return spec


def suggest_params(trial: optuna.Trial, space: SearchSpace) -> TrialParams:
    """One point of ``space``, as Optuna's sampler proposes it."""
    values = {name: _suggest(trial, name, getattr(space, name)) for name in SEARCHED}
    return TrialParams(**values)


def first_trial_values(params: TrialParams, space: SearchSpace) -> dict[str, ParamValue]:
    """What Optuna is given so that its first proposal from ``space`` is ``params``: the
    values of the parameters ``space`` searches (a fixed one must already equal ``params``'s).

    ValueError naming the first parameter ``params`` has outside ``space``, or its preset
    when it is not a searched network's (the seed's and the encoder's are no point of it).
    """
    if params.preset != "default":
        raise ValueError(f"preset {params.preset!r} is not a point of the search space")
    values: dict[str, ParamValue] = {}
    for name in SEARCHED:
        value, spec = getattr(params, name), getattr(space, name)
        if isinstance(spec, IntRange | FloatRange):
            inside = spec.low <= value <= spec.high
        elif isinstance(spec, list):
            inside = value in spec
        else:
            inside = value == spec
        if not inside:
            raise ValueError(f"{name}={value!r} is outside the search space's {spec!r}")
        if isinstance(spec, IntRange | FloatRange) or (isinstance(spec, list) and len(spec) > 1):
            values[name] = value
    return values


def trial_record(job_id: str, trial: FrozenTrial, metric: str) -> Trial:
    """What the store keeps of a trial: parameters, dev metrics, state, time, error."""
    seconds = (
        (trial.datetime_complete - trial.datetime_start).total_seconds()
        if trial.datetime_complete and trial.datetime_start
        else None
    )
    return Trial(
        id=trial_id(job_id, trial.number),
        job=job_id,
        number=trial.number,
        state=trial.state.name.lower(),
        params=trial.user_attrs.get("params", dict(trial.params)),
        dev=trial.user_attrs.get("dev"),
        metric=metric,
        value=trial.value if trial.state == TrialState.COMPLETE else None,
        epochs=trial.user_attrs.get("epochs"),
        best_epoch=trial.user_attrs.get("best_epoch"),
        history=trial.user_attrs.get("history"),
        seconds=seconds,
        error=trial.user_attrs.get("error"),
    )


class Search:
    """A job's study: run what is missing, remember the best weights, report every trial."""

    def __init__(
        self,
        job_id: str,
        config: JobConfig,
        metric: str,
        storage_url: str,
        weights_dir: Path,
    ) -> None:
        self.job_id = job_id
        self.config = config
        self.metric = metric
        self.weights_dir = weights_dir
        self.storage = optuna.storages.RDBStorage(storage_url)
        self.study = optuna.create_study(
            study_name=job_id,
            storage=self.storage,
            direction="maximize",
            load_if_exists=True,
            sampler=optuna.samplers.TPESampler(seed=config.seed, n_startup_trials=4),
            pruner=optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=1),
        )
        self._best: FitResult | None = None

    # -- resuming ------------------------------------------------------------------------------

    def _recover_interrupted(self) -> None:
        """Fail the trials a killed process left running, and queue their parameters again."""
        for trial in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            self.storage.set_trial_user_attr(trial._trial_id, "error", INTERRUPTED)
            self.storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
            if trial.params:
                self.study.enqueue_trial(trial.params, skip_if_exists=False)
            log.info("trial %s was interrupted; queued again", trial.number)

    def finished(self) -> list[FrozenTrial]:
        """Trials that count towards the job's number: all but the interrupted ones."""
        done = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
        return [
            t
            for t in self.study.get_trials(deepcopy=False, states=done)
            if t.user_attrs.get("error") != INTERRUPTED
        ]

    def start_with(self, params: TrialParams, source: str) -> bool:
        """Queue ``params`` (from ``source``, e.g. "production version 3") as the search's
        first trial; True when queued. A study that has trials already (a resumed job) is
        left as it is, and ``params`` outside the search space are logged and left out:
        the search then starts as usual."""
        if self.study.get_trials(deepcopy=False):
            return False
        try:
            values = first_trial_values(params, self.config.search)
        except ValueError as exc:
            log.warning("job %s: %s is not tried first: %s", self.job_id, source, exc)
            return False
        self.study.enqueue_trial(values, user_attrs={"first_trial": source})
        log.info("job %s: first trial: %s's hyper-parameters %s", self.job_id, source, values)
        return True

    # -- running -------------------------------------------------------------------------------

    def run(
        self,
        data_for: DataFor,
        *,
        budget_s: float,
        fixed: TrialParams | None = None,
        on_trial: TrialHook | None = None,
        stop: threading.Event | None = None,
    ) -> SearchOutcome:
        """Run trials until the job has ``config.trials`` of them or ``budget_s`` is spent.

        When ``stop`` is set, the search ends after the trial that is running (the
        study keeps it) and raises JobInterrupted: a later run resumes from there.
        """
        started = time.monotonic()
        self._recover_interrupted()
        remaining = self.config.trials - len(self.finished())
        deadline = started + budget_s
        if remaining > 0 and budget_s > 0:
            self.study.optimize(
                lambda trial: self._objective(trial, data_for, fixed, deadline),
                n_trials=remaining,
                timeout=budget_s,
                catch=(NonFiniteLoss,),
                callbacks=[self._callback(on_trial, stop)],
                gc_after_trial=True,
            )
        if stop is not None and stop.is_set():
            raise JobInterrupted(f"the search of job {self.job_id} stopped after a finished trial")
        complete = self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if not complete:
            errors = sorted({str(t.user_attrs.get("error")) for t in self.finished()})
            raise RuntimeError(
                f"no trial of job {self.job_id} finished with a dev metric "
                f"({len(self.finished())} ran; errors: {errors or 'none'})"
            )
        best_trial = self.study.best_trial
        best = self._best_model(best_trial, data_for)
        return SearchOutcome(
            best=best,
            best_trial=best_trial.number,
            trials=[trial_record(self.job_id, t, self.metric) for t in self.study.get_trials()],
            seconds=time.monotonic() - started,
        )

    def _objective(
        self,
        trial: optuna.Trial,
        data_for: DataFor,
        fixed: TrialParams | None,
        deadline: float,
    ) -> float:
        params = fixed or suggest_params(trial, self.config.search)
        trial.set_user_attr("params", params.model_dump())
        data = data_for(params.features)

        def report(epoch: int, value: float) -> None:
            trial.report(value, epoch)
            if fixed is None and trial.should_prune():
                raise optuna.TrialPruned(f"dev {self.metric} {value:.4f} at epoch {epoch}")

        try:
            result = self._fit(params, data, trial.number, deadline=deadline, on_epoch=report)
        except NonFiniteLoss as exc:
            trial.set_user_attr("error", str(exc))
            raise
        if not math.isfinite(result.dev_metric):
            trial.set_user_attr("error", f"dev {self.metric} is {result.dev_metric}")
            raise NonFiniteLoss(f"dev {self.metric} is {result.dev_metric}")
        trial.set_user_attr("dev", {self.metric: result.dev_metric})
        trial.set_user_attr("epochs", result.epochs_run)
        trial.set_user_attr("best_epoch", result.best_epoch)
        trial.set_user_attr("history", result.history)
        if self._best is None or result.dev_metric > self._best.dev_metric:
            self._best = result
            self.weights_dir.mkdir(parents=True, exist_ok=True)
            result.model.save_weights(str(self._weights_file(trial.number)))
        return result.dev_metric

    def _callback(
        self, on_trial: TrialHook | None, stop: threading.Event | None
    ) -> Callable[[optuna.Study, FrozenTrial], None]:
        def callback(study: optuna.Study, trial: FrozenTrial) -> None:
            if on_trial is not None:
                on_trial(trial_record(self.job_id, trial, self.metric))
            if stop is not None and stop.is_set():
                study.stop()  # the trial just finished is the checkpoint

        return callback

    def _weights_file(self, number: int) -> Path:
        return self.weights_dir / f"trial-{number:04d}.weights.h5"

    def _best_model(self, trial: FrozenTrial, data_for: DataFor) -> FitResult:
        """The winner: from memory, else from its saved weights, else trained again."""
        if self._best is not None and self._best.dev_metric >= (trial.value or -math.inf):
            return self._best
        params = TrialParams(**trial.user_attrs["params"])
        data = data_for(params.features)
        weights = self._weights_file(trial.number)
        if weights.is_file():
            model = build_model(params, data.dim, data.n_classes)
            model.load_weights(str(weights))
            probs = predict_probabilities(model, data.dev)
            return FitResult(
                model=model,
                params=params,
                dev_probabilities=probs,
                dev_metric=float(trial.value or 0.0),
                best_epoch=int(trial.user_attrs.get("best_epoch") or 0),
                epochs_run=int(trial.user_attrs.get("epochs") or 0),
                stopped="restored",
                seconds=0.0,
                history=dict(trial.user_attrs.get("history") or {}),
            )
        return self._fit(params, data, trial.number)

    def _fit(self, params: TrialParams, data: TrainingData, number: int, **extra: Any) -> FitResult:
        """Train trial ``number`` the job's way (labels, class weights, patience, seed)."""
        return fit(
            params,
            data,
            metric=self.metric,
            soft_labels=self.config.soft_labels,
            class_weight=self.config.class_weight,
            source_weights=self.config.source_weights,
            patience=self.config.patience,
            seed=self.config.seed + number,
            **extra,
        )

    def best_value(self) -> float | None:
        """The best dev metric so far, or None before the first complete trial."""
        complete = self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        return max((t.value for t in complete if t.value is not None), default=None)
