"""Training jobs in the ``runs`` collection (kind ``train-job``)."""

from __future__ import annotations

from mlcycle.common.errors import NotFound
from mlcycle.common.store import RUNS
from mlcycle.common.store.base import SortBy
from mlcycle.contracts.repository import RecordPage, Repository
from mlcycle.contracts.training import TRAIN_JOB_KIND, TrainingJob

# Newest first by creation time. Ids sort by creation time too, but only to the
# second (``tj-<YYYYmmddTHHMMSS>-<random>``): two jobs created in the same second
# would list in random order; ``created_at`` has microseconds.
NEWEST_FIRST = SortBy("created_at", descending=True)


class TrainingJobs(Repository[TrainingJob]):
    """Reads and writes of training job records."""

    collection = RUNS
    record_type = TrainingJob
    kind = TRAIN_JOB_KIND
    noun = "training job"

    def require(self, record_id: str) -> TrainingJob:
        """The job with ``record_id``, or NotFound naming it (``details.job``)."""
        job = self.get(record_id)
        if job is None:
            raise NotFound(f"no training job {record_id!r}", details={"job": record_id})
        return job

    def newest(self, limit: int, cursor: str | None = None) -> RecordPage[TrainingJob]:
        """One page of jobs, newest first, sorted and paged by the store."""
        return self.page(limit=limit, cursor=cursor, sort=NEWEST_FIRST)

    def unfinished(self) -> list[TrainingJob]:
        """Jobs a previous process left queued, running or interrupted, oldest first (by id)."""
        return [job for job in self.scan() if not job.finished]
