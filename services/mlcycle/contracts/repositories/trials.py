"""Search trials in the ``runs`` collection (kind ``trial``), one record per finished trial."""

from __future__ import annotations

from mlcycle.common.store import RUNS
from mlcycle.contracts.repository import Repository
from mlcycle.contracts.training import TRIAL_KIND, Trial


class Trials(Repository[Trial]):
    """Reads and writes of trial records."""

    collection = RUNS
    record_type = Trial
    kind = TRIAL_KIND
    noun = "trial"

    def of_job(self, job_id: str) -> list[Trial]:
        """Every recorded trial of ``job_id``, by trial number."""
        return sorted(self.scan({"job": job_id}), key=lambda trial: trial.number)
