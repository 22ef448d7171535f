"""The model registry: every exported SavedModel version, its stage, and what is served.

The records (:mod:`mlcycle.contracts.models`) live in the store's ``models``
collection: one :class:`~mlcycle.contracts.models.ModelVersion` per version and
one :class:`~mlcycle.contracts.models.ServingPointer` per name. A version moves
through the contracts' state machine (:data:`~mlcycle.contracts.models.TRANSITIONS`):
``candidate`` → ``blessed`` (or ``unblessed``) → ``shadow`` → ``canary`` →
``production`` → ``archived``, or ``rolled_back``. Registering and judging are
here; the moves that change what is served are in
:mod:`~mlcycle.trainer.registry_stages`.

What the model server loads follows from the pointers: every pointer change
rewrites its config file (:mod:`mlcycle.trainer.serving_config`) and the
inference replicas' routing table. The store is the system of record, so the
order of every change is: store write (durable when it returns), then the
serving config, then the routing table, then the event. A crash in between
leaves files that :meth:`ModelRegistry.write_serving_config` (called at service
start) repairs.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import orjson

from mlcycle.common.errors import InvalidInput, NotFound, ValidationFailed
from mlcycle.common.settings import TrainerSettings
from mlcycle.common.store import Store
from mlcycle.contracts.models import (
    MODEL_STATES,
    Action,
    Blessing,
    ModelEvent,
    ModelVersion,
    RegistryTransition,
    ServingPointer,
    model_id,
)
from mlcycle.contracts.monitoring import ProfileReference
from mlcycle.contracts.repositories.model_versions import ModelVersions
from mlcycle.contracts.repositories.serving_pointers import ServingPointers
from mlcycle.contracts.rollouts import RoutingTable
from mlcycle.contracts.serving import write_routing_table
from mlcycle.trainer import serving_config
from mlcycle.trainer.model_dirs import serving_dir, staging_dir
from mlcycle.trainer.registry_checks import check_name, check_reason, check_version
from mlcycle.trainer.registry_stages import StageMoves
from mlcycle.trainer.registry_stages import now as _now

log = logging.getLogger(__name__)
_LEGACY_STATES = {"retired": "archived"}

# Publishes one event (the service wires a producer of the ``models`` topic).
Emit = Callable[[ModelEvent], None]

# What TF Serving needs in a version directory to load it.
SAVED_MODEL_FILES = ("saved_model.pb", "saved_model.pbtxt")


def _json_safe(value: Any) -> Any:
    """Round-trip through orjson so numpy scalars and NaN cannot reach the store."""
    return orjson.loads(orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY))


class ModelRegistry(StageMoves):
    """Model versions, their states and the serving pointers, through their repositories.

    Promotion, rollback and blessing change several records at once; an
    instance lock serializes them. The deployment runs one trainer process per
    store, so that is enough; several trainer replicas would need an
    optimistic-concurrency check on the pointer record (Elasticsearch's
    ``if_seq_no``/``if_primary_term``) instead.
    """

    def __init__(self, settings: TrainerSettings, store: Store, emit: Emit | None = None) -> None:
        self.settings = settings
        self.store = store
        self.versions = ModelVersions(store)
        self.pointers = ServingPointers(store)
        self.emit = emit
        self._lock = threading.RLock()

    # -- reading -------------------------------------------------------------------------------

    def get(self, name: str, version: int) -> ModelVersion:
        """A model version, or NotFound listing the versions there are."""
        model = self.versions.version(name, version)
        if model is None:
            available = [m.version for m in self.list_versions(name)]
            raise NotFound(
                f"no model {name!r} version {version}",
                details={"name": name, "version": version, "available": available},
            )
        return model

    def list_versions(
        self, name: str | None = None, state: str | None = None
    ) -> list[ModelVersion]:
        """Model versions (of ``name``, in ``state``), by name, newest version first.

        ``retired``, the old name of ``archived``, is read as ``archived``.
        """
        state = _LEGACY_STATES.get(state, state) if state is not None else None
        if state is not None and state not in MODEL_STATES:
            raise InvalidInput(
                f"unknown model state {state!r}: use one of {', '.join(MODEL_STATES)}",
                details={"state": state, "allowed": list(MODEL_STATES)},
            )
        if state == "archived":
            # Records written before the rename still hold "retired"; they read as archived.
            return [m for m in self.versions.listing(name) if m.state == state]
        return self.versions.listing(name, state)

    def production(self, name: str) -> ModelVersion | None:
        """The version of ``name`` being served, or None."""
        pointer = self.pointers.of(name)
        if pointer.version is None:
            return None
        return self.versions.version(name, pointer.version)

    def serving_versions(self) -> dict[str, int]:
        """Every name with a production version, and that version."""
        return self.pointers.serving()

    def next_version(self, name: str) -> int:
        """The version a new export of ``name`` gets: one past every registered or exported one."""
        check_name(name)
        registered = [m.version for m in self.list_versions(name)]
        return max([0, *registered, *self._version_dirs(name)]) + 1

    def _version_dirs(self, name: str) -> list[int]:
        folder = self.settings.models_dir / name
        if not folder.is_dir():
            return []
        return [int(p.name) for p in folder.iterdir() if p.is_dir() and p.name.isdigit()]

    # -- registering and judging ---------------------------------------------------------------

    def register(
        self,
        name: str,
        version: int,
        *,
        job: str | None,
        transform: str,
        label_run: str,
        metrics: Mapping[str, Any],
        params: Mapping[str, Any],
        path: str,
        data: Mapping[str, Any] | None = None,
        profile: ProfileReference | None = None,
    ) -> ModelVersion:
        """Record an exported version as a ``candidate``; the same (name, version) again is a no-op.

        Re-registering returns the existing record unchanged, so a resumed
        training job can register its export again safely.
        """
        check_name(name)
        check_version(version)
        with self._lock:
            existing = self.versions.version(name, version)
            if existing is not None:
                return existing
            now = _now()
            reason = f"exported by job {job}" if job else "registered"
            registered = RegistryTransition(
                time=now, action="registered", from_state=None, to_state="candidate", reason=reason
            )
            model = ModelVersion(
                id=model_id(name, version),
                name=name,
                version=version,
                state="candidate",
                created_at=now,
                updated_at=now,
                job=job,
                transform=transform,
                label_run=label_run,
                metrics=_json_safe(dict(metrics)),
                params=_json_safe(dict(params)),
                data=_json_safe(dict(data or {})),
                blessing=Blessing(blessed=False, reason="not judged yet", compared_to=None),
                path=str(path),
                history=[registered],
                profile=profile,
            )
            self.versions.save(model)
            self._emit_step(model, "registered")
            return model

    def bless(
        self,
        name: str,
        version: int,
        reason: str,
        compared_to: int | None = None,
        **facts: Any,
    ) -> ModelVersion:
        """``candidate`` → ``blessed``; ``facts`` (metric, values, margin) go into ``blessing``.

        Blessing a version that is already blessed returns it unchanged.
        """
        return self._judge(name, version, True, reason, compared_to, facts)

    def unbless(self, name: str, version: int, reason: str, **facts: Any) -> ModelVersion:
        """``candidate`` → ``unblessed``: kept with the reason, never served unless forced."""
        compared_to = facts.pop("compared_to", None)
        return self._judge(name, version, False, reason, compared_to, facts)

    def _judge(
        self,
        name: str,
        version: int,
        blessed: bool,
        reason: str,
        compared_to: int | None,
        facts: Mapping[str, Any],
    ) -> ModelVersion:
        reason = check_reason(reason)
        target: Action = "blessed" if blessed else "unblessed"
        with self._lock:
            model = self.get(name, version)
            if model.state == target:
                return model
            if model.state != "candidate":
                raise ValidationFailed(
                    f"model {name!r} version {version} is {model.state}: only a candidate "
                    f"can be {target}",
                    details={"state": model.state, "allowed_from": ["candidate"]},
                )
            now = _now()
            judged = {
                **facts,
                "blessed": blessed,
                "reason": reason,
                "compared_to": compared_to,
                "judged_at": now,
            }
            model.blessing = Blessing.model_validate(_json_safe(judged))
            model.transition(target, target, reason, now)
            self.versions.save(model)
            self._emit_step(model, target)
            return model

    # -- serving -------------------------------------------------------------------------------

    def pointer(self, name: str) -> ServingPointer:
        """``name``'s serving pointer: production, canary, shadow, shares, rollback stack."""
        check_name(name)
        return self.pointers.of(name)

    def serving_pointers(self) -> list[ServingPointer]:
        """Every stored serving pointer, by name."""
        self.store.refresh()
        return sorted(self.pointers.scan(), key=lambda p: p.name)

    def routing_table(self) -> RoutingTable:
        """What the inference replicas route by: every pointer's routing state."""
        return RoutingTable(models={p.name: p.routing_state() for p in self.serving_pointers()})

    def write_serving_config(self) -> Path:
        """Write ``models.config`` (loaded versions and labels), then ``routing.json``."""
        with self._lock:
            pointers = self.serving_pointers()
            path = serving_config.write_serving_config(self.settings, pointers)
            table = RoutingTable(models={p.name: p.routing_state() for p in pointers})
            write_routing_table(self.settings.models_dir, table)
            return path

    # -- helpers -------------------------------------------------------------------------------

    def _serving(self, pointer: ServingPointer, exclude: int | None = None) -> ModelVersion | None:
        if pointer.version is None or pointer.version == exclude:
            return None
        return self.versions.version(pointer.name, pointer.version)

    def _check_saved_model(self, name: str, version: int) -> None:
        """NotFound unless the model server can load the version; an unblessed version forced
        onto live traffic is first moved from its staging folder to where the server looks."""
        models = self.settings.models_dir
        folder = serving_dir(models, name, version)
        staged = staging_dir(models, name, version)
        if not folder.exists() and any((staged / f).is_file() for f in SAVED_MODEL_FILES):
            staged.rename(folder)  # atomic: the model server sees the whole version or none
        if not any((folder / f).is_file() for f in SAVED_MODEL_FILES):
            raise NotFound(
                f"model {name!r} version {version} has no SavedModel at {folder}: "
                "the model server could not load it",
                details={"name": name, "version": version, "path": str(folder)},
            )

    def _emit_step(self, model: ModelVersion, event: Action, **extra: Any) -> None:
        """Publish ``model``'s last step (who, why, evidence, rollout) as a ``models`` event."""
        if self.emit is None:
            return
        step = model.history[-1]
        fields = {
            "from_state": step.from_state,
            "actor": step.actor,
            "evidence": step.evidence,
            "rollout": step.rollout,
        }
        # Fields no one set stay out of the event, as they stay out of the history; ``extra``
        # (previous_version on promoted and restored) is published as given, even null.
        fields = {key: value for key, value in fields.items() if value is not None} | extra
        message = ModelEvent(
            event=event,
            id=model.id,
            name=model.name,
            version=model.version,
            state=model.state,
            reason=step.reason,
            time=step.time,
            **fields,
        )
        try:
            self.emit(message)
        except Exception:
            # The change is durable in the store (the system of record) and in the
            # serving config; failing the call now would only invite a retry that is a no-op.
            log.exception(
                "could not publish model event", extra={"event": message.model_dump(mode="json")}
            )
