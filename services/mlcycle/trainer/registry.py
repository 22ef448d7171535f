"""The model registry: every exported SavedModel version, its judgement, and what is served.

The records (:mod:`mlcycle.contracts.models`) live in the store's ``models``
collection: one :class:`~mlcycle.contracts.models.ModelVersion` per version and
one :class:`~mlcycle.contracts.models.ServingPointer` per name. A version's
states:

``candidate`` (registered, not yet judged) → ``blessed`` (passed) or
``unblessed`` (kept with the reason, never served unless forced);
``blessed``/``retired`` → ``production`` (the one serving version of a name);
the production version it replaces becomes ``retired``.

What TF Serving loads follows from the pointers: every promotion or rollback
rewrites the model server's config file (:mod:`mlcycle.trainer.serving_config`).
The store is the system of record, so the order of every change is: store
write (durable when it returns), then the serving config, then the event. A
crash between the store write and the config leaves a config that
:meth:`ModelRegistry.write_serving_config` (called at service start) repairs.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
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
from mlcycle.trainer import serving_config
from mlcycle.trainer.registry_checks import check_name, check_reason, check_version

log = logging.getLogger(__name__)

# Publishes one event (the service wires a producer of the ``models`` topic).
Emit = Callable[[ModelEvent], None]

# What TF Serving needs in a version directory to load it.
SAVED_MODEL_FILES = ("saved_model.pb", "saved_model.pbtxt")
_PROMOTABLE = ("blessed", "retired")
_FORCIBLE = ("candidate", "unblessed")


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _json_safe(value: Any) -> Any:
    """Round-trip through orjson so numpy scalars and NaN cannot reach the store."""
    return orjson.loads(orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY))


class ModelRegistry:
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
        """Model versions (of ``name``, in ``state``), by name, newest version first."""
        if state is not None and state not in MODEL_STATES:
            raise InvalidInput(
                f"unknown model state {state!r}: use one of {', '.join(MODEL_STATES)}",
                details={"state": state, "allowed": list(MODEL_STATES)},
            )
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
            self._emit("registered", model, reason, now)
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
            self._emit(target, model, reason, now)
            return model

    # -- serving -------------------------------------------------------------------------------

    def promote(
        self,
        name: str,
        version: int,
        reason: str,
        *,
        force: bool = False,
        actor: str | None = None,
    ) -> ModelVersion:
        """Make ``version`` the serving version of ``name``; the one it replaces is retired.

        A ``blessed`` or ``retired`` version can be promoted; a ``candidate`` or
        ``unblessed`` one only with ``force``. Promoting the serving version is a
        no-op. The replaced version goes on the rollback stack. ``actor`` (who asked:
        an API key's name) is kept in both versions' history and in the events.
        """
        reason = check_reason(reason)
        with self._lock:
            model = self.get(name, version)
            pointer = self.pointers.of(name)
            if model.state == "production" and pointer.version == version:
                return model
            if model.state in _FORCIBLE and not force:
                raise ValidationFailed(
                    f"model {name!r} version {version} is {model.state}, not blessed: "
                    "promote it with force=true to serve it anyway",
                    details={"state": model.state, "promotable": list(_PROMOTABLE)},
                )
            self._check_saved_model(name, version)
            now = _now()
            old = self._serving(pointer, exclude=version)
            changed = [model]
            if old is not None:
                why = f"replaced by version {version}: {reason}"
                old.transition("retired", "retired", why, now, actor=actor)
                changed.insert(0, old)
            forced = model.state in _FORCIBLE
            model.transition(
                "promoted", "production", reason, now, forced=forced or None, actor=actor
            )
            replaced = pointer.version if pointer.version != version else None
            stack = [v for v in pointer.previous if v not in (version, replaced)]
            if replaced is not None:
                stack.insert(0, replaced)
            pointer.version, pointer.previous, pointer.updated_at = version, stack, now
            self.versions.save_with_pointer(changed, pointer)
            self.write_serving_config()
            if old is not None:
                self._emit("retired", old, old.history[-1].reason, now, actor=actor)
            self._emit("promoted", model, reason, now, previous_version=replaced, actor=actor)
            return model

    def rollback(self, name: str, reason: str, *, actor: str | None = None) -> ModelVersion:
        """Serve the previous production version again; returns it (see :meth:`rollback_pair`)."""
        return self.rollback_pair(name, reason, actor=actor)[0]

    def rollback_pair(
        self, name: str, reason: str, *, actor: str | None = None
    ) -> tuple[ModelVersion, ModelVersion]:
        """Retire the serving version and serve the newest one on the rollback stack again.

        Returns ``(now serving, just retired)``. The stack is popped, so rolling
        back twice goes two versions back; the retired version is not pushed.
        """
        reason = check_reason(reason)
        with self._lock:
            pointer = self.pointers.of(name)
            current = self._serving(pointer)
            if current is None:
                raise NotFound(
                    f"model {name!r} has no production version: nothing to roll back",
                    details={"name": name},
                )
            if not pointer.previous:
                raise ValidationFailed(
                    f"model {name!r} version {current.version} is the only version served "
                    "so far: there is nothing to roll back to (promote another version instead)",
                    details={"name": name, "production": current.version, "previous": []},
                )
            target_version, *rest = pointer.previous
            target = self.get(name, target_version)
            self._check_saved_model(name, target_version)
            now = _now()
            current.transition("retired", "retired", f"rolled back: {reason}", now, actor=actor)
            target.transition("rolled_back", "production", reason, now, actor=actor)
            pointer.version, pointer.previous, pointer.updated_at = target_version, rest, now
            self.versions.save_with_pointer([current, target], pointer)
            self.write_serving_config()
            self._emit("retired", current, f"rolled back: {reason}", now, actor=actor)
            self._emit(
                "rolled_back", target, reason, now, previous_version=current.version, actor=actor
            )
            return target, current

    def write_serving_config(self) -> Path:
        """Write the model server's config: every name pinned to its production version."""
        with self._lock:
            return serving_config.write_serving_config(self.settings, self.serving_versions())

    # -- helpers -------------------------------------------------------------------------------

    def _serving(self, pointer: ServingPointer, exclude: int | None = None) -> ModelVersion | None:
        if pointer.version is None or pointer.version == exclude:
            return None
        return self.versions.version(pointer.name, pointer.version)

    def _check_saved_model(self, name: str, version: int) -> None:
        folder = self.settings.models_dir / name / str(version)
        if not any((folder / f).is_file() for f in SAVED_MODEL_FILES):
            raise NotFound(
                f"model {name!r} version {version} has no SavedModel at {folder}: "
                "the model server could not load it",
                details={"name": name, "version": version, "path": str(folder)},
            )

    def _emit(
        self, event: Action, model: ModelVersion, reason: str, time: str, **extra: int | str | None
    ) -> None:
        if self.emit is None:
            return
        if extra.get("actor") is None:
            extra.pop("actor", None)  # no one named: the event leaves the field out
        message = ModelEvent(
            event=event,
            id=model.id,
            name=model.name,
            version=model.version,
            state=model.state,
            reason=reason,
            time=time,
            **extra,
        )
        try:
            self.emit(message)
        except Exception:
            # The change is durable in the store (the system of record) and in the
            # serving config; failing the call now would only invite a retry that is a no-op.
            log.exception(
                "could not publish model event", extra={"event": message.model_dump(mode="json")}
            )
