"""What the stages of one job share: the services it uses, its record and its config."""

from __future__ import annotations

from dataclasses import dataclass

from mlcycle.common.settings import Settings
from mlcycle.common.store import Store
from mlcycle.contracts.training import JobConfig, TrainingJob
from mlcycle.featurization.store import TransformStore
from mlcycle.trainer.progress import JobRecorder
from mlcycle.trainer.registry import ModelRegistry


@dataclass(frozen=True)
class JobContext:
    """One running job: its settings, store, registry, transform store and record."""

    settings: Settings
    store: Store
    registry: ModelRegistry
    transforms: TransformStore
    recorder: JobRecorder

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
        return self.config.metric or self.settings.trainer.bless_metric
