"""Rollouts in the ``models`` collection (kind ``rollout``, id ``<name>:<candidate>:<started>``)."""

from __future__ import annotations

from mlcycle.common.store import MODELS
from mlcycle.contracts.repository import Repository
from mlcycle.contracts.rollouts import ROLLOUT_KIND, Rollout


class Rollouts(Repository[Rollout]):
    """Reads and writes of rollout records."""

    collection = MODELS
    record_type = Rollout
    kind = ROLLOUT_KIND
    noun = "rollout"

    def listing(self, name: str | None = None) -> list[Rollout]:
        """Rollouts (of ``name``), newest first; reads what was written last."""
        self.store.refresh()
        found = self.scan({"name": name} if name is not None else None)
        return sorted(found, key=lambda r: r.started_at, reverse=True)

    def active(self, name: str | None = None) -> list[Rollout]:
        """The running or paused rollouts (of ``name``), newest first."""
        return [r for r in self.listing(name) if r.active]
