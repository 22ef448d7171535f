"""Model versions in the ``models`` collection (kind ``model``, id ``<name>:<version>``)."""

from __future__ import annotations

from collections.abc import Sequence

from mlcycle.common.store import MODELS
from mlcycle.contracts.models import MODEL_KIND, ModelState, ModelVersion, ServingPointer, model_id
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

    def save_with_pointer(self, versions: Sequence[ModelVersion], pointer: ServingPointer) -> None:
        """Write ``versions`` and their name's serving pointer in one store write.

        A promotion or a rollback changes both; one write lands them together.
        """
        self.store.upsert(self.collection, [*map(self._dump, versions), pointer.to_document()])
