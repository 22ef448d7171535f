"""Model versions in the ``models`` collection (kind ``model``, id ``<name>:<version>``)."""

from __future__ import annotations

from mlcycle.common.store import MODELS
from mlcycle.contracts.models import MODEL_KIND, ModelState, ModelVersion, model_id
from mlcycle.contracts.repository import Repository


class ModelVersions(Repository[ModelVersion]):
    """Reads and writes of model version records."""

    collection = MODELS
    record_type = ModelVersion
    kind = MODEL_KIND
    noun = "model version"

    def version(self, name: str, version: int) -> ModelVersion | None:
        """Version ``version`` of ``name``, or None."""
        return self.get(model_id(name, version))

    def listing(
        self, name: str | None = None, state: ModelState | None = None
    ) -> list[ModelVersion]:
        """Versions (of ``name``, in ``state``) by name, newest version first.

        Reads what was written last even on a near-real-time backend.
        """
        filters: dict[str, str] = {}
        if name is not None:
            filters["name"] = name
        if state is not None:
            filters["state"] = state
        self.store.refresh()
        return sorted(self.scan(filters), key=lambda m: (m.name, -m.version))
