"""A running job's record: every change saved at once, so the API and a restart see it."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from mlcycle.contracts.repositories.training_jobs import TrainingJobs
from mlcycle.contracts.training import (
    JobResult,
    JobStatus,
    TrainingJob,
    Trial,
    TrialOutcome,
)


class JobInterrupted(Exception):  # noqa: N818 (an outcome, like StopIteration)
    """The trainer is shutting down and the job stopped at a checkpoint; it resumes later."""


# Called with the job after each saved change (``mlcycle train`` draws its progress bar).
ProgressHook = Callable[[TrainingJob], None]


def now_iso() -> str:
    """The time now, ISO 8601 in UTC, as job records keep it."""
    return datetime.now(UTC).isoformat()


class JobRecorder:
    """Saves one job's stage, progress and outcome to the store as they change."""

    def __init__(
        self, jobs: TrainingJobs, job: TrainingJob, on_progress: ProgressHook | None = None
    ) -> None:
        self.jobs = jobs
        self.job = job
        self.on_progress = on_progress

    def save(self) -> TrainingJob:
        """Stamp ``updated_at``, write the record, tell the hook."""
        self.job.updated_at = now_iso()
        self.jobs.save(self.job)
        if self.on_progress is not None:
            self.on_progress(self.job)
        return self.job

    def stage(self, stage: str, detail: str | None = None) -> None:
        """Enter ``stage`` (or report what a long step in it does now, as ``detail``)."""
        update = {"stage": stage, "detail": detail}
        self.job.progress = self.job.progress.model_copy(update=update)
        self.save()

    def started(self) -> None:
        """The job runs (again, when resumed: its first start time is kept)."""
        self.job.status = "running"
        self.job.started_at = self.job.started_at or now_iso()
        self.save()

    def trial_finished(
        self, trial: Trial, *, trials_done: int, best_value: float | None, spent_s: float
    ) -> None:
        """A search trial ended: the counts, the best dev figure so far and the search's time."""
        last = TrialOutcome(
            number=trial.number, state=trial.state, value=trial.value, error=trial.error
        )
        self.job.progress = self.job.progress.model_copy(
            update={
                "stage": "search",
                "trials_done": trials_done,
                "best_value": best_value,
                "last_trial": last,
            }
        )
        self.job.spent_s = spent_s
        self.save()

    def remember(
        self, *, transforms: dict[str, str] | None = None, version: int | None = None
    ) -> None:
        """Keep what a resumed job must reuse: fitted transforms, the claimed model version."""
        if transforms is not None:
            self.job.transforms = dict(transforms)
        if version is not None:
            self.job.version = version
        self.save()

    def interrupted(self) -> TrainingJob:
        """The job stopped at a checkpoint for a shutdown: the next process resumes it."""
        self.job.status = "interrupted"
        detail = "stopped at a checkpoint by a shutdown; the trainer resumes it when it restarts"
        self.job.progress = self.job.progress.model_copy(update={"detail": detail})
        return self.save()

    def finished(
        self, status: JobStatus, *, result: JobResult | None = None, error: str = ""
    ) -> TrainingJob:
        """Record the outcome: a result, or the reason it failed."""
        self.job.status = status
        if result is not None:
            self.job.result = result
            self.job.finished_at = now_iso()
        if error:
            self.job.error = error
        return self.save()
