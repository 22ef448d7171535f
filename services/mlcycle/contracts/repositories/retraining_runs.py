"""Retraining runs in the ``models`` collection (kind ``retraining-run``, ids sort by time)."""

from __future__ import annotations

from mlcycle.common.store import MODELS
from mlcycle.contracts.repository import Repository
from mlcycle.contracts.retraining import RETRAINING_RUN_KIND, RetrainingRun


class RetrainingRuns(Repository[RetrainingRun]):
    """Reads and writes of retraining run records."""

    collection = MODELS
    record_type = RetrainingRun
    kind = RETRAINING_RUN_KIND
    noun = "retraining run"

    def listing(self, name: str | None = None) -> list[RetrainingRun]:
        """Runs (of ``name``), skipped ones included, newest first; reads what was written last."""
        self.store.refresh()
        found = self.scan({"name": name} if name is not None else None)
        return sorted(found, key=lambda r: (r.started_at, r.id), reverse=True)
