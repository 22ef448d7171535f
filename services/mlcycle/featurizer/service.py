"""The featurizer's core, shared by its REST API, its gRPC API, the batch consumer and the CLI.

Transforms live in the artifact store under their content-hash version; one
of them is *current* (``transforms/CURRENT``), the one new feature shards
and requests without a version use. A fitted transform never changes, so a
model trained with version ``tf-…`` is served with exactly that version, or
refused when it is missing.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from mlcycle.common.errors import InvalidInput, NotFound, PayloadTooLarge
from mlcycle.common.files import write_atomically
from mlcycle.common.settings import Settings
from mlcycle.common.store import COMMENTS, LABELS, Store
from mlcycle.featurization.config import FeatureConfig
from mlcycle.featurization.transform import SparseBatch, Transform, fit, list_versions
from mlcycle.labeler.runs import get_run, latest_run

CURRENT = "CURRENT"


@dataclass(frozen=True)
class Featurized:
    """Vectors for a request, with the transform version that made them."""

    version: str
    batch: SparseBatch


class FeaturizerCore:
    """Fit, load and apply transforms; the one place the featurizer's rules live."""

    def __init__(self, settings: Settings, store: Store | None = None) -> None:
        self.settings = settings
        self.store = store
        self.root = settings.artifacts_path
        self._cache: dict[str, Transform] = {}
        self._lock = threading.Lock()

    # -- versions ------------------------------------------------------------------------------

    def versions(self) -> list[str]:
        """Every stored transform version."""
        return list_versions(self.root)

    def current_version(self) -> str | None:
        """The version used when none is named, or None before the first fit."""
        pointer = self.root / "transforms" / CURRENT
        return pointer.read_text(encoding="ascii").strip() if pointer.is_file() else None

    def set_current(self, version: str) -> None:
        """Make ``version`` (which must exist) the current transform."""
        self.transform(version)
        write_atomically(self.root / "transforms" / CURRENT, version.encode("ascii"))

    def transform(self, version: str | None = None) -> Transform:
        """The transform ``version`` (default: current); NotFound says what exists."""
        wanted = version or self.current_version()
        if wanted is None:
            raise NotFound("no transform has been fitted yet: run `mlcycle featurize --fit`")
        with self._lock:
            cached = self._cache.get(wanted)
        if cached is not None:
            return cached
        try:
            loaded = Transform.load(self.root, wanted)
        except NotFound:
            raise NotFound(
                f"transform {wanted!r} is not in the artifact store",
                details={"version": wanted, "available": self.versions()[-20:]},
            ) from None
        with self._lock:
            self._cache[wanted] = loaded
        return loaded

    # -- fit -----------------------------------------------------------------------------------

    def fit(
        self,
        label_run: str | None = None,
        config: FeatureConfig | None = None,
        *,
        task: str | None = None,
        make_current: bool = True,
    ) -> tuple[Transform, str]:
        """Fit on the train split of ``label_run`` (default: the task's latest run).

        Returns the transform and the label run it was fitted on.
        """
        store = self._require_store()
        run = self._label_run(label_run, task or self.settings.label_task)
        texts, metadata = self._train_split(store, run["id"])
        if not texts:
            raise InvalidInput(f"label run {run['id']} has no labeled train items to fit on")
        transform = fit(texts, metadata, config or FeatureConfig())
        transform.save(self.root)
        with self._lock:
            self._cache[transform.version] = transform
        if make_current:
            self.set_current(transform.version)
        return transform, run["id"]

    def _label_run(self, run_id: str | None, task: str) -> dict[str, Any]:
        store = self._require_store()
        if run_id is not None:
            run = get_run(store, run_id)
            if run.get("status") != "succeeded":
                raise InvalidInput(f"label run {run_id} has not finished ({run.get('status')})")
            return run
        run = latest_run(store, task)
        if run is None:
            raise NotFound(f"no finished label run for task {task!r}: run `mlcycle label` first")
        return run

    def _train_split(self, store: Store, run_id: str) -> tuple[list[str], list[dict[str, Any]]]:
        ids = [
            label["item_id"]
            for label in store.scan(LABELS, filters={"run": run_id, "split": "train"})
        ]
        texts: list[str] = []
        metadata: list[dict[str, Any]] = []
        for start in range(0, len(ids), 1000):
            found = store.get_many(COMMENTS, ids[start : start + 1000])
            for item in ids[start : start + 1000]:
                comment = found.get(item)
                if comment is not None:
                    texts.append(str(comment.get("text") or ""))
                    metadata.append(dict(comment.get("metadata") or {}))
        return texts, metadata

    def _require_store(self) -> Store:
        if self.store is None:
            raise InvalidInput("this featurizer has no store: fitting needs one")
        return self.store

    # -- apply ---------------------------------------------------------------------------------

    def featurize(
        self,
        texts: Sequence[str],
        metadata: Sequence[Mapping[str, Any]] | None = None,
        version: str | None = None,
    ) -> Featurized:
        """Vectors for request texts; unknown metadata fields are an error here."""
        if not texts:
            raise InvalidInput("no instances: send at least one text")
        limit = self.settings.featurize_max_instances
        if len(texts) > limit:
            raise PayloadTooLarge(
                f"{len(texts)} instances in one request; the limit is {limit}",
                details={"limit": limit},
            )
        if metadata is not None and len(metadata) != len(texts):
            raise InvalidInput(f"{len(texts)} texts but {len(metadata)} metadata objects")
        transform = self.transform(version)
        batch = transform.apply(texts, metadata, unknown_fields="error")
        return Featurized(version=transform.version, batch=batch)

    def describe(self, version: str | None = None) -> dict[str, Any]:
        """A transform's metadata and statistics, and whether it is current."""
        transform = self.transform(version)
        return {**transform.describe(), "current": transform.version == self.current_version()}
