"""The ``export`` stage: the winner as a staged SavedModel, its warm-up requests and lineage.

The version is claimed once and remembered in the job's record, so a job
resumed after a crash exports into the same version; a version it already
exported and judged is not exported again.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from mlcycle import __version__
from mlcycle.common.errors import NotFound
from mlcycle.contracts.models import ModelVersion
from mlcycle.contracts.thresholds import ThresholdSummary
from mlcycle.contracts.training import ModelSummary
from mlcycle.evaluation.behaviour import SuiteResult
from mlcycle.trainer import export as exporting
from mlcycle.trainer.data import TrainingData
from mlcycle.trainer.explain_export import STEPS as EXPLAIN_STEPS
from mlcycle.trainer.fit import FitResult
from mlcycle.trainer.models import keras, tf
from mlcycle.trainer.stages.context import JobContext
from mlcycle.trainer.stages.evaluate import Evaluated, class_names, headline
from mlcycle.trainer.stages.profile import write_reference_profile
from mlcycle.trainer.thresholds import served_threshold, with_test

# Dev rows the warm-up file and infra-validation send to the model server.
INFRA_SAMPLE_ROWS = 64


@dataclass(frozen=True)
class Candidate:
    """An exported version waiting for its verdict in its staging folder."""

    name: str
    version: int
    staging: Path
    # What metadata.json says: the model's lineage (free JSON, written as it is).
    metadata: dict[str, Any]


def model_summary(model: ModelVersion) -> ModelSummary:
    """What a job's result says of its model version."""
    return ModelSummary(
        name=model.name,
        version=model.version,
        state=model.state,
        reason=model.blessing.reason,
        path=model.path,
    )


def judged_before(ctx: JobContext) -> ModelSummary | None:
    """The job's model version if a previous run of the job exported and judged it already."""
    version = ctx.job.version
    if version is None:
        return None
    try:
        model = ctx.registry.get(ctx.job.name, version)
    except NotFound:
        return None
    return model_summary(model) if model.state != "candidate" else None


def dev_sample(data: TrainingData) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The first dev rows as (row numbers, padded indices, padded values)."""
    rows = np.arange(min(INFRA_SAMPLE_ROWS, len(data.dev)))
    return (rows, *data.dev.flat_rows(rows).padded())


def claim_staging(ctx: JobContext) -> tuple[str, int, Path]:
    """The job's model name, its version (claimed once, so a resumed job exports into the
    same one) and that version's emptied staging folder."""
    ctx.recorder.stage("export")
    name, models = ctx.job.name, ctx.settings.models_dir
    version = ctx.job.version
    if version is None:
        version = exporting.allocate_version(models, name, ctx.registry.next_version(name))
        ctx.recorder.remember(version=version)
    staging = exporting.staging_dir(models, name, version)
    shutil.rmtree(staging, ignore_errors=True)
    return name, version, staging


def export_candidate(
    ctx: JobContext,
    best: FitResult,
    data: TrainingData,
    evaluated: Evaluated,
    behaviour: SuiteResult | None = None,
) -> Candidate:
    """Write the winner to its staging folder with its warm-up requests and ``metadata.json``.

    ``behaviour`` (the suite's pass rates) goes into ``metadata.json``, so a later
    candidate compares with this version's rates without re-scoring it.
    """
    name, version, staging = claim_staging(ctx)
    exporting.export_saved_model(best.model, staging)
    exporting.write_warmup_requests(staging, name, *dev_sample(data)[1:])
    metadata = lineage(ctx, version, best, data, evaluated)
    transform = ctx.transforms.transform(data.transform)
    metadata["profile"] = write_reference_profile(
        staging, name, version, best, data, evaluated, transform
    )
    if behaviour is not None:
        metadata["behaviour"] = behaviour.summary().model_dump()
    exporting.write_metadata(staging, metadata)
    return Candidate(name, version, staging, metadata)


def lineage(
    ctx: JobContext, version: int, best: FitResult, data: TrainingData, evaluated: Evaluated
) -> dict[str, Any]:
    """The content of ``metadata.json``: where the model came from and how good it is."""
    config, dev = ctx.config, evaluated.dev
    return {
        "name": ctx.job.name,
        "version": version,
        "created_at": datetime.now(UTC).isoformat(),
        "job": ctx.job.id,
        "task": data.task,
        "label_run": data.label_run,
        "transform": data.transform,
        "feature_variant": best.params.features,
        "input_dim": data.dim,
        "classes": class_names(data.n_classes),
        # The served threshold; threshold_policy says how and why it was chosen.
        "threshold": served_threshold(best),
        "threshold_policy": threshold_record(best, data, evaluated),
        "data": data.counts(),
        "hyperparameters": best.params.model_dump(),
        "blend": best.blend,
        "training": {
            "soft_labels": config.soft_labels,
            "class_weight": config.class_weight,
            "source_weights": config.source_weights,
            "sources": data.source_counts(),
            "epochs_run": best.epochs_run,
            "best_epoch": best.best_epoch,
            "seed": config.seed,
        },
        "selection_metric": ctx.metric,
        "metrics": {
            "dev": headline(dev),
            "test": headline(evaluated.test) if evaluated.test else None,
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
        "explain_signature": {
            "name": exporting.EXPLAIN_SIGNATURE,
            "inputs": {"indices": "int64 [batch, width]", "values": "float32 [batch, width]"},
            "outputs": {
                "scores": "float32 [batch]",
                "attributions": "float32 [batch, width]",
                "baseline_scores": "float32 [batch]",
            },
            "method": f"integrated gradients, {EXPLAIN_STEPS} midpoint steps from the empty input",
        },
        "git_revision": git_revision(),
        "versions": {
            "mlcycle": __version__,
            "tensorflow": tf.__version__,
            "keras": keras.__version__,
        },
    }


def threshold_record(
    best: FitResult, data: TrainingData, evaluated: Evaluated
) -> ThresholdSummary | None:
    """How the served threshold was chosen, with what it implies on test (which chose nothing)."""
    if best.threshold is None:
        return None
    if evaluated.test_probabilities is None:
        return best.threshold
    return with_test(best.threshold, evaluated.test_probabilities, data.test.labels)


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
