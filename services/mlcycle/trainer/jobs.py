"""Training jobs: search → evaluate → export → bless → report, recorded in the store, resumable.

A job record (collection ``runs``, kind ``train-job``) holds the config, the
stage, the progress of the search and, at the end, the model version and
its blessing. Each finished trial is a record of its own (kind ``trial``).
Executing a job again after a crash picks it up where it stopped: the Optuna
study keeps the finished trials, the winner's weights are on disk, and an
export that was allocated a version reuses it.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from mlcycle import __version__
from mlcycle.common.errors import InvalidInput, NotFound
from mlcycle.common.settings import Settings
from mlcycle.common.store import COMMENTS, Store
from mlcycle.contracts.models import ModelVersion
from mlcycle.contracts.repositories.training_jobs import TrainingJobs
from mlcycle.contracts.repositories.trials import Trials
from mlcycle.contracts.training import (
    JobConfig,
    JobProgress,
    JobResult,
    ModelSummary,
    TrainingJob,
    Trial,
    TrialOutcome,
    new_job_id,
)
from mlcycle.featurizer.service import FeaturizerCore
from mlcycle.labeler.runs import get_run, latest_run
from mlcycle.trainer import export as exporting
from mlcycle.trainer.config import SEED
from mlcycle.trainer.data import SplitData, TrainingData
from mlcycle.trainer.evaluation import Evaluation, evaluate
from mlcycle.trainer.features import VariantFeatures
from mlcycle.trainer.fit import FitResult, predict_probabilities
from mlcycle.trainer.infra_validation import infra_validate
from mlcycle.trainer.linear import blend_with_linear, describe_blend
from mlcycle.trainer.registry import ModelRegistry
from mlcycle.trainer.report import SplitResult, write_report
from mlcycle.trainer.search import Search, SearchOutcome

log = logging.getLogger(__name__)

INFRA_SAMPLE_ROWS = 64
STORE_READ_BATCH = 1000  # ids per get_many
LENGTH_BUCKETS = ((0, 40, "<40 chars"), (40, 120, "40-119 chars"), (120, 10**9, "120+ chars"))
ProgressHook = Callable[[TrainingJob], None]


def _now() -> datetime:
    return datetime.now(UTC)


def git_revision() -> str:
    """The source revision models are trained from (``MLCYCLE_GIT_REVISION`` in images)."""
    if revision := os.environ.get("MLCYCLE_GIT_REVISION"):
        return revision
    try:
        done = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            cwd=Path(__file__).resolve().parent,
        )
    except (OSError, subprocess.TimeoutExpired):
        return f"unknown (mlcycle {__version__})"
    return done.stdout.strip() if done.returncode == 0 else f"unknown (mlcycle {__version__})"


class JobRunner:
    """Creates and executes training jobs against one store, artifact store and registry."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        registry: ModelRegistry,
        *,
        core: FeaturizerCore | None = None,
        on_progress: ProgressHook | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.jobs = TrainingJobs(store)
        self.trials = Trials(store)
        self.registry = registry
        self.core = core or FeaturizerCore(settings, store)
        self.on_progress = on_progress

    # -- creating ------------------------------------------------------------------------------

    def create(self, config: JobConfig) -> TrainingJob:
        """Check what the job needs exists, then record it as queued."""
        task = config.task or self.settings.label_task
        if config.label_run is not None:
            run = get_run(self.store, config.label_run)
            if run.get("status") != "succeeded":
                raise InvalidInput(
                    f"label run {config.label_run} has not finished ({run.get('status')})"
                )
        else:
            run = latest_run(self.store, task)
            if run is None:
                raise NotFound(f"no finished label run for task {task!r}: run `mlcycle label`")
        now = _now()
        job = TrainingJob(
            id=new_job_id(now),
            status="queued",
            name=config.name or self.settings.model_name,
            task=run.get("task") or task,
            label_run=run["id"],
            config=config,
            created_at=now.isoformat(),
            updated_at=now.isoformat(),
            progress=JobProgress(stage="queued", trials_done=0, trials_total=config.trials),
            spent_s=0.0,
            transforms={},
        )
        return self.jobs.save(job)

    def _save(self, job: TrainingJob, **changes: Any) -> TrainingJob:
        for field, value in changes.items():
            setattr(job, field, value)
        job.updated_at = _now().isoformat()
        self.jobs.save(job)
        if self.on_progress is not None:
            self.on_progress(job)
        return job

    def _stage(self, job: TrainingJob, stage: str, **progress: Any) -> None:
        changes = {"stage": stage, "detail": None, **progress}
        self._save(job, progress=job.progress.model_copy(update=changes))

    # -- executing -----------------------------------------------------------------------------

    def execute(self, job_id: str) -> TrainingJob:
        """Run (or resume) the job to its end; a failure is recorded with its reason."""
        job = self.jobs.require(job_id)
        if job.finished:
            return job
        config = job.config
        self._save(job, status="running", started_at=job.started_at or _now().isoformat())
        try:
            result = self._run(job, config)
        except Exception as exc:
            log.exception("training job %s failed", job_id)
            return self._save(job, status="failed", error=_reason(exc))
        return self._save(job, status="succeeded", result=result, finished_at=_now().isoformat())

    def _run(self, job: TrainingJob, config: JobConfig) -> JobResult:
        metric = config.metric or self.settings.bless_metric
        features = VariantFeatures(
            self.core,
            self.store,
            job.label_run,
            known=job.transforms,
            announce=lambda what: self._stage(job, "features", detail=what),
        )
        outcome = self._search(job, config, metric, features)
        data = features.data(outcome.best.params.features)
        self._save(job, transforms=dict(features.transforms))
        if config.preset == "search" and config.blend_linear:
            self._stage(job, "blend")
            blended = blend_with_linear(
                outcome.best,
                data,
                metric=metric,
                soft_labels=config.soft_labels,
                class_weight=config.class_weight,
            )
            outcome = dataclasses.replace(outcome, best=blended)
        best = outcome.best
        self._stage(job, "evaluate")
        # The stored comments of dev and test, read once: slices and production's re-scoring.
        comments = {"dev": self._comments(data.dev), "test": self._comments(data.test)}
        dev_eval, test_eval, test_probs = self._evaluate(best, data, config, comments)
        exported: ModelSummary | None = None
        if config.bless:
            exported = self._export_and_bless(
                job, config, metric, best, data, dev_eval, test_eval, comments["dev"]
            )
        self._stage(job, "report")
        report = self._report(job, metric, outcome, data, dev_eval, test_eval, test_probs, exported)
        return JobResult(
            metric=metric,
            best_trial=outcome.best_trial,
            params=best.params,
            blend=best.blend,
            transform=data.transform,
            dev=dev_eval.to_dict(),
            test=test_eval.to_dict() if test_eval else None,
            model=exported,
            report=str(report),
            search_seconds=outcome.seconds,
        )

    # -- search --------------------------------------------------------------------------------

    def _search(
        self, job: TrainingJob, config: JobConfig, metric: str, features: VariantFeatures
    ) -> SearchOutcome:
        self._stage(job, "search")
        search = Search(
            job.id,
            config,
            metric,
            self.settings.study_storage_url,
            weights_dir=self.settings.artifacts_path / "trainer" / job.id,
        )
        started = time.monotonic()
        spent = job.spent_s

        def on_trial(record: Trial) -> None:
            self.trials.save(record)
            last = TrialOutcome(
                number=record.number, state=record.state, value=record.value, error=record.error
            )
            progress = job.progress.model_copy(
                update={
                    "stage": "search",
                    "trials_done": len(search.finished()),
                    "best_value": search.best_value(),
                    "last_trial": last,
                }
            )
            self._save(job, spent_s=spent + time.monotonic() - started, progress=progress)

        outcome = search.run(
            features.data,
            budget_s=max(0.0, config.time_budget_s - spent),
            fixed=SEED if config.preset == "seed" else None,
            on_trial=on_trial,
        )
        self.trials.save_all(outcome.trials)
        return outcome

    # -- evaluation ----------------------------------------------------------------------------

    def _comments(self, split: SplitData) -> list[dict[str, Any]]:
        """The stored comment of every row of ``split``, in row order ({} where missing)."""
        ids = [str(i) for i in split.item_ids]
        found: dict[str, dict[str, Any]] = {}
        for start in range(0, len(ids), STORE_READ_BATCH):
            found.update(self.store.get_many(COMMENTS, ids[start : start + STORE_READ_BATCH]))
        return [found.get(i) or {} for i in ids]

    @staticmethod
    def _slices(comments: list[dict[str, Any]], fields: list[str]) -> dict[str, list[Any]]:
        slices: dict[str, list[Any]] = {"source": [], "length": []}
        for name in fields:
            slices[f"metadata.{name}"] = []
        for comment in comments:
            slices["source"].append(comment.get("source"))
            slices["length"].append(_length_bucket(len(str(comment.get("text") or ""))))
            metadata = comment.get("metadata") or {}
            for name in fields:
                slices[f"metadata.{name}"].append(metadata.get(name))
        return slices

    def _evaluate(
        self,
        best: FitResult,
        data: TrainingData,
        config: JobConfig,
        comments: dict[str, list[dict[str, Any]]],
    ) -> tuple[Evaluation, Evaluation | None, np.ndarray | None]:
        names = _class_names(data.n_classes)
        dev_eval = evaluate(
            best.dev_probabilities,
            data.dev.labels,
            names,
            slices=self._slices(comments["dev"], config.slice_fields),
        )
        if len(data.test) == 0:
            return dev_eval, None, None
        # The test split is scored here, once, for the selected model only.
        test_probs = predict_probabilities(best.model, data.test)
        test_eval = evaluate(
            test_probs,
            data.test.labels,
            names,
            slices=self._slices(comments["test"], config.slice_fields),
        )
        return dev_eval, test_eval, test_probs

    # -- export and blessing -------------------------------------------------------------------

    def _export_and_bless(
        self,
        job: TrainingJob,
        config: JobConfig,
        metric: str,
        best: FitResult,
        data: TrainingData,
        dev_eval: Evaluation,
        test_eval: Evaluation | None,
        dev_comments: list[dict[str, Any]],
    ) -> ModelSummary:
        name = job.name
        models = self.settings.models_path
        version = job.version
        if version is not None:
            try:
                doc = self.registry.get(name, version)
            except NotFound:
                doc = None
            if doc is not None and doc.state != "candidate":
                return _model_summary(doc)  # exported and judged before a restart
        self._stage(job, "export")
        if version is None:
            version = exporting.allocate_version(models, name, self.registry.next_version(name))
            self._save(job, version=version)
        staging = exporting.staging_dir(models, name, version)
        shutil.rmtree(staging, ignore_errors=True)
        exporting.export_saved_model(best.model, staging)
        exporting.write_warmup_requests(staging, name, *self._dev_sample(data)[1:])
        metadata = self._metadata(job, config, metric, version, best, data, dev_eval, test_eval)
        exporting.write_metadata(staging, metadata)

        self._stage(job, "bless")
        blessed, reason, facts = self._judge(
            name, int(version), metric, best, data, dev_eval, staging, dev_comments
        )
        metadata["blessing"] = {"blessed": blessed, "reason": reason, **facts}
        exporting.write_metadata(staging, metadata)
        target = exporting.serving_dir(models, name, version) if blessed else staging
        if blessed:
            staging.rename(target)  # atomic: a model server sees the whole version or none
        common = {
            "job": job.id,
            "transform": data.transform,
            "label_run": data.label_run,
            "metrics": metadata["metrics"],
            "params": metadata["hyperparameters"],
            "path": str(target),
            "data": metadata["data"],
        }
        self.registry.register(name, version, **common)
        if blessed:
            doc = self.registry.bless(name, version, reason, **facts)
            if self.settings.auto_promote:
                doc = self.registry.promote(name, version, f"blessed by job {job.id}: {reason}")
        else:
            doc = self.registry.unbless(name, version, reason, **facts)
        return _model_summary(doc)

    @staticmethod
    def _dev_sample(data: TrainingData) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The first dev rows as (row numbers, padded indices, padded values)."""
        rows = np.arange(min(INFRA_SAMPLE_ROWS, len(data.dev)))
        return (rows, *data.dev.flat_rows(rows).padded())

    def _judge(
        self,
        name: str,
        version: int,
        metric: str,
        best: FitResult,
        data: TrainingData,
        dev_eval: Evaluation,
        staging: Path,
        dev_comments: list[dict[str, Any]],
    ) -> tuple[bool, str, dict[str, Any]]:
        """Infra-validate the export, then compare with production on this dev split."""
        rows, indices, values = self._dev_sample(data)
        ok, message = infra_validate(
            staging,
            name,
            int(version),
            indices,
            values,
            best.dev_probabilities[rows],
            self.settings.infra_validation_timeout_s,
        )
        candidate = dev_eval.metric(metric)
        facts: dict[str, Any] = {
            "metric": metric,
            "candidate": candidate,
            "margin": self.settings.bless_margin,
            "infra_validation": message,
        }
        if not ok:
            return False, f"infra-validation failed: {message}", facts
        production = self.registry.production(name)
        if production is None:
            return True, f"no production model to beat; dev {metric} {candidate:.4f}", facts
        value, how = self._production_metric(production, metric, data, dev_comments)
        facts.update(compared_to=production.version, production=value, measured=how)
        margin = self.settings.bless_margin
        if candidate > value + margin:
            return (
                True,
                f"dev {metric} {candidate:.4f} beats production v{production.version}'s "
                f"{value:.4f} by more than {margin:g} ({how})",
                facts,
            )
        return (
            False,
            f"dev {metric} {candidate:.4f} does not beat production v{production.version}'s "
            f"{value:.4f} by more than {margin:g} ({how})",
            facts,
        )

    def _production_metric(
        self,
        production: ModelVersion,
        metric: str,
        data: TrainingData,
        dev_comments: list[dict[str, Any]],
    ) -> tuple[float, str]:
        """Production's ``metric`` on the candidate's dev items, with production's own transform.

        Falls back to the metric production recorded on its own dev split when
        its SavedModel or transform is no longer available.
        """
        recorded = float((production.metrics.get("dev") or {}).get(metric) or 0.0)
        path = Path(production.path or "")
        try:
            served = exporting.ServingModel(path)
            transform = self.core.transform(production.transform)
        except NotFound as exc:
            return recorded, f"recorded on its own dev split: {exc}"
        texts = [str(c.get("text") or "") for c in dev_comments]
        metadata = [dict(c.get("metadata") or {}) for c in dev_comments]
        batch = transform.apply(texts, metadata, unknown_fields="ignore")
        split = SplitData.from_batch(batch, data.dev.labels, n_classes=data.n_classes)
        parts = []
        for _, flat in split.batches(512):
            parts.append(served.probabilities(*flat.padded()))
        probs = np.concatenate(parts)
        return evaluate(probs, data.dev.labels).metric(metric), "re-scored on this dev split"

    def _metadata(
        self,
        job: TrainingJob,
        config: JobConfig,
        metric: str,
        version: int,
        best: FitResult,
        data: TrainingData,
        dev_eval: Evaluation,
        test_eval: Evaluation | None,
    ) -> dict[str, Any]:
        import keras
        import tensorflow as tf

        return {
            "name": job.name,
            "version": version,
            "created_at": _now().isoformat(),
            "job": job.id,
            "task": data.task,
            "label_run": data.label_run,
            "transform": data.transform,
            "feature_variant": best.params.features,
            "input_dim": data.dim,
            "classes": _class_names(data.n_classes),
            "threshold": dev_eval.best_threshold if dev_eval.best_threshold is not None else 0.5,
            "data": data.counts(),
            "hyperparameters": best.params.model_dump(),
            "blend": best.blend,
            "training": {
                "soft_labels": config.soft_labels,
                "class_weight": config.class_weight,
                "epochs_run": best.epochs_run,
                "best_epoch": best.best_epoch,
                "seed": config.seed,
            },
            "selection_metric": metric,
            "metrics": {
                "dev": _headline(dev_eval),
                "test": _headline(test_eval) if test_eval else None,
            },
            "signature": {
                "name": exporting.SIGNATURE,
                "inputs": {"indices": "int64 [batch, width]", "values": "float32 [batch, width]"},
                "outputs": {
                    "probabilities": "float32 [batch, classes]",
                    "scores": "float32 [batch]",
                    "classes": "int64 [batch]",
                },
            },
            "git_revision": git_revision(),
            "versions": {
                "mlcycle": __version__,
                "tensorflow": tf.__version__,
                "keras": keras.__version__,
            },
        }

    # -- report --------------------------------------------------------------------------------

    def _report(
        self,
        job: TrainingJob,
        metric: str,
        outcome: SearchOutcome,
        data: TrainingData,
        dev_eval: Evaluation,
        test_eval: Evaluation | None,
        test_probs: np.ndarray | None,
        exported: ModelSummary | None,
    ) -> Path:
        path = self.settings.data_dir / "reports" / f"{job.id}.html"
        summary: dict[str, Any] = {
            "job": job.id,
            "label run": data.label_run,
            "transform": f"{data.transform} ({outcome.best.params.features})",
            "train / dev / test rows": (
                f"{len(data.train):,} / {len(data.dev):,} / {len(data.test):,}"
            ),
            "selected trial": outcome.best_trial,
            "search time": f"{outcome.seconds:.1f} s",
        }
        if outcome.best.blend is not None:
            summary["linear blend"] = describe_blend(outcome.best.blend)
        if exported:
            summary["model version"] = f"{exported.name} v{exported.version}"
            summary["state"] = exported.state
            summary["blessing"] = exported.reason
        dev = SplitResult("dev", outcome.best.dev_probabilities, data.dev.labels, dev_eval)
        test = (
            SplitResult("test", test_probs, data.test.labels, test_eval)
            if test_eval is not None and test_probs is not None
            else None
        )
        return write_report(
            path,
            title=f"Training job {job.id}",
            summary=summary,
            trials=[trial.to_document() for trial in outcome.trials],
            metric=metric,
            dev=dev,
            test=test,
            learning_curves=outcome.best.history,
        )


def _class_names(n_classes: int) -> list[str]:
    return [str(i) for i in range(n_classes)]


def _length_bucket(chars: int) -> str:
    return next(label for low, high, label in LENGTH_BUCKETS if low <= chars < high)


def _headline(evaluation: Evaluation) -> dict[str, Any]:
    d = evaluation.to_dict()
    keep = (
        "n",
        "accuracy",
        "roc_auc",
        "pr_auc",
        "macro_f1",
        "weighted_f1",
        "best_threshold",
        "best_f1",
        "ece",
        "log_loss",
        "recall",
    )
    return {k: d[k] for k in keep if k in d}


def _model_summary(model: ModelVersion) -> ModelSummary:
    return ModelSummary(
        name=model.name,
        version=model.version,
        state=model.state,
        reason=model.blessing.reason,
        path=model.path,
    )


def _reason(exc: Exception) -> str:
    return str(exc) or type(exc).__name__
