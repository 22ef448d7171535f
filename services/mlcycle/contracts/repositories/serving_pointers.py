"""Serving pointers in the ``models`` collection (kind ``serving``, id ``serving:<name>``)."""

from __future__ import annotations

from mlcycle.common.store import MODELS
from mlcycle.contracts.models import SERVING_KIND, ServingPointer, pointer_id
from mlcycle.contracts.repository import Repository


class ServingPointers(Repository[ServingPointer]):
    """Reads and writes of the per-name pointer to the production version."""

    collection = MODELS
    record_type = ServingPointer
    kind = SERVING_KIND
    noun = "serving pointer"

    def of(self, name: str) -> ServingPointer:
        """``name``'s pointer; an empty one (nothing served, no stack) when none is stored."""
        return self.get(pointer_id(name)) or ServingPointer(id=pointer_id(name), name=name)

    def serving(self) -> dict[str, int]:
        """Every name with a production version, and that version."""
        self.store.refresh()
        return {p.name: p.version for p in self.scan() if p.version is not None}
