"""What the stages of one job share: the services it uses, its record and its config."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from mlcycle.common.settings import Settings, TrainerSettings
from mlcycle.common.store import Store
from mlcycle.contracts.training import JobConfig, TrainingJob
from mlcycle.featurization.store import TransformStore
from mlcycle.trainer.progress import JobInterrupted, JobRecorder
from mlcycle.trainer.registry import ModelRegistry


@dataclass(frozen=True)
class JobEnvironment:
    """What a training job takes from outside the trainer's own section."""

    # The featurizer's artifact store: transforms and feature shards, and the trials' weights.
    artifacts_dir: Path
    # Rows per feature shard, as the featurizer writes them.
    shard_rows: int
    # The labeler's task, for a job that names none, and its classes per task.
    default_task: str
    classes_of: Callable[[str], int]
    # Where each job's HTML report is written.
    reports_dir: Path
    # The behavioural suite's folder (the featurizer's setting: its cases never reach a
    # feature set); None when there is none, and then no job scores or gates on it.
    behaviour_suite: Path | None = None

    @classmethod
    def of(cls, settings: Settings) -> JobEnvironment:
        """The environment a trainer process gives its jobs, from the other sections."""
        return cls(
            artifacts_dir=settings.featurizer.artifacts_dir,
            shard_rows=settings.featurizer.shard_rows,
            default_task=settings.labeler.task,
            classes_of=settings.labeler.classes_of,
            reports_dir=settings.data_dir / "reports",
            behaviour_suite=settings.featurizer.behaviour_suite,
        )


@dataclass(frozen=True)
class JobContext:
    """One running job: its settings and environment, store, registry, transforms and record."""

    settings: TrainerSettings
    environment: JobEnvironment
    store: Store
    registry: ModelRegistry
    transforms: TransformStore
    recorder: JobRecorder
    # Set when the trainer shuts down: the job stops at its next checkpoint.
    stopping: threading.Event = field(default_factory=threading.Event)

    def checkpoint(self) -> None:
        """Stop here (JobInterrupted) if the trainer is shutting down; what is done is kept."""
        if self.stopping.is_set():
            raise JobInterrupted(f"job {self.job.id} stopped for a shutdown")

    @property
    def job(self) -> TrainingJob:
        """The job's record, as saved so far."""
        return self.recorder.job

    @property
    def config(self) -> JobConfig:
        """What the job was asked to do."""
        return self.job.config

    @property
    def metric(self) -> str:
        """The dev metric that selects the winner and judges it."""
        return self.config.metric or self.settings.bless_metric
