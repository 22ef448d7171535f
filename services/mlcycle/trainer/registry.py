"""The model registry: every exported SavedModel version, its judgement, and what is served.

A model version is a SavedModel the trainer exported to
``<models_path>/<name>/<version>/`` (TF Serving's layout). Its document in the
``models`` collection (id ``<name>:<version>``) records its lineage, metrics,
blessing, state and a history of every state change:

``candidate`` (registered, not yet judged) → ``blessed`` (passed) or
``unblessed`` (kept with the reason, never served unless forced);
``blessed``/``retired`` → ``production`` (the one serving version of a name);
the production version it replaces becomes ``retired``.

A pointer document per name (id ``serving:<name>``) holds the serving version
and the rollback stack (earlier production versions, newest first). What TF
Serving loads follows from it: every promotion or rollback rewrites
``<models_path>/models.config`` (a ``ModelServerConfig`` in text format) and the
model server, run with ``--model_config_file`` and
``--model_config_file_poll_wait_seconds``, picks the change up by itself.

The store is the system of record, so the order of every change is: store
write (durable when it returns), then the serving config, then the event. A
crash between the store write and the config leaves a config that
:meth:`ModelRegistry.write_serving_config` (called at service start) repairs.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2

from mlcycle.common.errors import InvalidInput, NotFound, ValidationFailed
from mlcycle.common.files import write_atomically
from mlcycle.common.settings import Settings
from mlcycle.common.store import MODELS, Store

log = logging.getLogger(__name__)

MODEL_STATES = ("candidate", "unblessed", "blessed", "production", "retired")
# Publishes one event (the service wires a producer of the ``models`` topic).
Emit = Callable[[dict[str, Any]], None]

MODEL_KIND = "model"
SERVING_KIND = "serving"
SERVING_CONFIG_FILE = "models.config"
# What TF Serving needs in a version directory to load it.
SAVED_MODEL_FILES = ("saved_model.pb", "saved_model.pbtxt")
# The same names settings.model_name accepts: safe as a folder and in a doc id.
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
# "serving:<name>" is the pointer id; a model named "serving" could collide with it.
_RESERVED_NAMES = frozenset({SERVING_KIND})
_PROMOTABLE = ("blessed", "retired")
_FORCIBLE = ("candidate", "unblessed")


def serving_config_path(settings: Settings) -> Path:
    """Where the model server's config file lives: ``<models_path>/models.config``."""
    return settings.models_path / SERVING_CONFIG_FILE


def ensure_serving_config(settings: Settings) -> Path:
    """Write an empty serving config unless one exists, so a model server can start first.

    TF Serving refuses to start without its ``--model_config_file``; the trainer
    rewrites the file with the production versions when it starts and on every change.
    """
    path = serving_config_path(settings)
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(path, render_serving_config({}, "").encode())
    return path


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _json_safe(value: Any) -> Any:
    """Round-trip through orjson so numpy scalars and NaN cannot reach the store."""
    return orjson.loads(orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY))


def check_name(name: str) -> str:
    """A model name usable as a folder, a doc id part and a served name, or InvalidInput."""
    if not isinstance(name, str) or not _NAME.match(name) or name in _RESERVED_NAMES:
        raise InvalidInput(
            f"invalid model name {name!r}: letters, digits, '_', '.', '-' (up to 64), "
            f"starting with a letter or digit, not {sorted(_RESERVED_NAMES)}",
            details={"name": name},
        )
    return name


# TF Serving's versions are int64.
MAX_VERSION = 2**63 - 1


def check_version(version: int) -> int:
    """A positive int64 version (TF Serving's numeric version folders), or InvalidInput."""
    if isinstance(version, bool) or not isinstance(version, int) or not 1 <= version <= MAX_VERSION:
        raise InvalidInput(
            f"version must be an integer from 1 to {MAX_VERSION}", details={"version": str(version)}
        )
    return version


def _check_reason(reason: str) -> str:
    if not isinstance(reason, str) or not reason.strip():
        raise InvalidInput("a reason is required: say why, it is kept in the model's history")
    return reason.strip()


def model_id(name: str, version: int) -> str:
    """The registry document id of a model version."""
    return f"{name}:{version}"


def pointer_id(name: str) -> str:
    """The id of the document that records ``name``'s serving version and rollback stack."""
    return f"{SERVING_KIND}:{name}"


class ModelRegistry:
    """Model versions, their states and the serving pointer, in the store's ``models`` collection.

    Promotion, rollback and blessing change several documents at once; an
    instance lock serializes them. The deployment runs one trainer process per
    store, so that is enough; several trainer replicas would need an
    optimistic-concurrency check on the pointer document (Elasticsearch's
    ``if_seq_no``/``if_primary_term``) instead.
    """

    def __init__(self, settings: Settings, store: Store, emit: Emit | None = None) -> None:
        self.settings = settings
        self.store = store
        self.emit = emit
        self._lock = threading.RLock()

    # -- reading -------------------------------------------------------------------------------

    def get(self, name: str, version: int) -> dict[str, Any]:
        """A model version's document, or NotFound listing the versions there are."""
        doc = self.store.get(MODELS, model_id(name, version))
        if doc is None or doc.get("kind") != MODEL_KIND:
            available = [d["version"] for d in self.list_versions(name)]
            raise NotFound(
                f"no model {name!r} version {version}",
                details={"name": name, "version": version, "available": available},
            )
        return doc

    def list_versions(self, name: str | None = None, state: str | None = None) -> list[dict]:
        """Model versions (of ``name``, in ``state``), by name, newest version first."""
        filters: dict[str, Any] = {"kind": MODEL_KIND}
        if name is not None:
            filters["name"] = name
        if state is not None:
            if state not in MODEL_STATES:
                raise InvalidInput(
                    f"unknown model state {state!r}: use one of {', '.join(MODEL_STATES)}",
                    details={"state": state, "allowed": list(MODEL_STATES)},
                )
            filters["state"] = state
        self.store.refresh()  # a near-real-time backend must see the latest registrations
        docs = list(self.store.scan(MODELS, filters=filters))
        return sorted(docs, key=lambda d: (d["name"], -int(d["version"])))

    def production(self, name: str) -> dict[str, Any] | None:
        """The version of ``name`` being served, or None."""
        pointer = self.store.get(MODELS, pointer_id(name))
        if pointer is None or pointer.get("version") is None:
            return None
        return self.store.get(MODELS, model_id(name, pointer["version"]))

    def serving_versions(self) -> dict[str, int]:
        """Every name with a production version, and that version."""
        return {p["name"]: int(p["version"]) for p in self._pointers()}

    def next_version(self, name: str) -> int:
        """The version a new export of ``name`` gets: one past every registered or exported one."""
        check_name(name)
        registered = [int(d["version"]) for d in self.list_versions(name)]
        return max([0, *registered, *self._version_dirs(name)]) + 1

    def _version_dirs(self, name: str) -> list[int]:
        folder = self.settings.models_path / name
        if not folder.is_dir():
            return []
        return [int(p.name) for p in folder.iterdir() if p.is_dir() and p.name.isdigit()]

    def _pointers(self) -> Iterator[dict[str, Any]]:
        self.store.refresh()
        for pointer in self.store.scan(MODELS, filters={"kind": SERVING_KIND}):
            if pointer.get("version") is not None:
                yield pointer

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
    ) -> dict[str, Any]:
        """Record an exported version as a ``candidate``; the same (name, version) again is a no-op.

        Re-registering returns the existing document unchanged, so a resumed
        training job can register its export again safely.
        """
        check_name(name)
        check_version(version)
        with self._lock:
            existing = self.store.get(MODELS, model_id(name, version))
            if existing is not None:
                return existing
            now = _now()
            reason = f"exported by job {job}" if job else "registered"
            doc: dict[str, Any] = {
                "id": model_id(name, version),
                "kind": MODEL_KIND,
                "name": name,
                "version": version,
                "state": None,  # set by the "registered" history entry below
                "created_at": now,
                "updated_at": now,
                "job": job,
                "transform": transform,
                "label_run": label_run,
                "metrics": _json_safe(dict(metrics)),
                "params": _json_safe(dict(params)),
                "data": _json_safe(dict(data or {})),
                "blessing": {"blessed": False, "reason": "not judged yet", "compared_to": None},
                "path": str(path),
                "history": [],
            }
            _record(doc, "registered", "candidate", reason, now)
            self.store.upsert(MODELS, [doc])
            self._emit("registered", doc, reason, now)
            return doc

    def bless(
        self,
        name: str,
        version: int,
        reason: str,
        compared_to: int | None = None,
        **facts: Any,
    ) -> dict[str, Any]:
        """``candidate`` → ``blessed``; ``facts`` (metric, values, margin) go into ``blessing``.

        Blessing a version that is already blessed returns it unchanged.
        """
        return self._judge(name, version, True, reason, compared_to, facts)

    def unbless(self, name: str, version: int, reason: str, **facts: Any) -> dict[str, Any]:
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
        facts: dict[str, Any],
    ) -> dict[str, Any]:
        reason = _check_reason(reason)
        target, action = ("blessed", "blessed") if blessed else ("unblessed", "unblessed")
        with self._lock:
            doc = self.get(name, version)
            if doc["state"] == target:
                return doc
            if doc["state"] != "candidate":
                raise ValidationFailed(
                    f"model {name!r} version {version} is {doc['state']}: only a candidate "
                    f"can be {target}",
                    details={"state": doc["state"], "allowed_from": ["candidate"]},
                )
            now = _now()
            doc["blessing"] = _json_safe(
                {
                    **facts,
                    "blessed": blessed,
                    "reason": reason,
                    "compared_to": compared_to,
                    "judged_at": now,
                }
            )
            _record(doc, action, target, reason, now)
            self.store.upsert(MODELS, [doc])
            self._emit(action, doc, reason, now)
            return doc

    # -- serving -------------------------------------------------------------------------------

    def promote(self, name: str, version: int, reason: str, *, force: bool = False) -> dict:
        """Make ``version`` the serving version of ``name``; the one it replaces is retired.

        A ``blessed`` or ``retired`` version can be promoted; a ``candidate`` or
        ``unblessed`` one only with ``force``. Promoting the serving version is a
        no-op. The replaced version goes on the rollback stack.
        """
        reason = _check_reason(reason)
        with self._lock:
            doc = self.get(name, version)
            pointer = self._pointer(name)
            if doc["state"] == "production" and pointer["version"] == version:
                return doc
            if doc["state"] in _FORCIBLE and not force:
                raise ValidationFailed(
                    f"model {name!r} version {version} is {doc['state']}, not blessed: "
                    "promote it with force=true to serve it anyway",
                    details={"state": doc["state"], "promotable": list(_PROMOTABLE)},
                )
            self._check_saved_model(name, version)
            now = _now()
            old = self._serving_doc(pointer, exclude=version)
            changed = [doc]
            if old is not None:
                _record(old, "retired", "retired", f"replaced by version {version}: {reason}", now)
                changed.insert(0, old)
            forced = doc["state"] in _FORCIBLE
            _record(doc, "promoted", "production", reason, now, forced=forced or None)
            replaced = pointer["version"] if pointer["version"] != version else None
            stack = [v for v in pointer["previous"] if v not in (version, replaced)]
            if replaced is not None:
                stack.insert(0, replaced)
            pointer.update(version=version, previous=stack, updated_at=now)
            self.store.upsert(MODELS, [*changed, pointer])
            self.write_serving_config()
            if old is not None:
                self._emit("retired", old, old["history"][-1]["reason"], now)
            self._emit("promoted", doc, reason, now, previous_version=replaced)
            return doc

    def rollback(self, name: str, reason: str) -> dict[str, Any]:
        """Serve the previous production version again; returns it (see :meth:`rollback_pair`)."""
        return self.rollback_pair(name, reason)[0]

    def rollback_pair(self, name: str, reason: str) -> tuple[dict[str, Any], dict[str, Any]]:
        """Retire the serving version and serve the newest one on the rollback stack again.

        Returns ``(now serving, just retired)``. The stack is popped, so rolling
        back twice goes two versions back; the retired version is not pushed.
        """
        reason = _check_reason(reason)
        with self._lock:
            pointer = self._pointer(name)
            current = self._serving_doc(pointer)
            if current is None:
                raise NotFound(
                    f"model {name!r} has no production version: nothing to roll back",
                    details={"name": name},
                )
            if not pointer["previous"]:
                raise ValidationFailed(
                    f"model {name!r} version {current['version']} is the only version served "
                    "so far: there is nothing to roll back to (promote another version instead)",
                    details={"name": name, "production": current["version"], "previous": []},
                )
            target_version, *rest = pointer["previous"]
            target = self.get(name, target_version)
            self._check_saved_model(name, target_version)
            now = _now()
            _record(current, "retired", "retired", f"rolled back: {reason}", now)
            _record(target, "rolled_back", "production", reason, now)
            pointer.update(version=target_version, previous=rest, updated_at=now)
            self.store.upsert(MODELS, [current, target, pointer])
            self.write_serving_config()
            self._emit("retired", current, f"rolled back: {reason}", now)
            self._emit("rolled_back", target, reason, now, previous_version=current["version"])
            return target, current

    def write_serving_config(self) -> Path:
        """Write the model server's config: every name pinned to its production version."""
        with self._lock:
            base = self.settings.model_server_base_path or str(self.settings.models_path.resolve())
            served = self.serving_versions()
            path = serving_config_path(self.settings)
            write_atomically(path, render_serving_config(served, base).encode())
            log.info("serving config written", extra={"path": str(path), "models": served})
            return path

    # -- helpers -------------------------------------------------------------------------------

    def _pointer(self, name: str) -> dict[str, Any]:
        pointer = self.store.get(MODELS, pointer_id(name))
        if pointer is None:
            return {
                "id": pointer_id(name),
                "kind": SERVING_KIND,
                "name": name,
                "version": None,
                "previous": [],
                "updated_at": None,
            }
        pointer["previous"] = [int(v) for v in pointer.get("previous") or []]
        return pointer

    def _serving_doc(self, pointer: dict[str, Any], exclude: int | None = None) -> dict | None:
        version = pointer.get("version")
        if version is None or version == exclude:
            return None
        return self.store.get(MODELS, model_id(pointer["name"], version))

    def _check_saved_model(self, name: str, version: int) -> None:
        folder = self.settings.models_path / name / str(version)
        if not any((folder / f).is_file() for f in SAVED_MODEL_FILES):
            raise NotFound(
                f"model {name!r} version {version} has no SavedModel at {folder}: "
                "the model server could not load it",
                details={"name": name, "version": version, "path": str(folder)},
            )

    def _emit(self, event: str, doc: dict[str, Any], reason: str, time: str, **extra: Any) -> None:
        if self.emit is None:
            return
        message = {
            "event": event,
            "id": doc["id"],
            "name": doc["name"],
            "version": doc["version"],
            "state": doc["state"],
            "reason": reason,
            "time": time,
            **extra,
        }
        try:
            self.emit(message)
        except Exception:
            # The change is durable in the store (the system of record) and in the
            # serving config; failing the call now would only invite a retry that is a no-op.
            log.exception("could not publish model event", extra={"event": message})


def _record(
    doc: dict[str, Any], action: str, to_state: str, reason: str, time: str, **extra: Any
) -> None:
    """Move ``doc`` to ``to_state`` and append the change to its history."""
    entry = {
        "time": time,
        "action": action,
        "from_state": doc.get("state"),
        "to_state": to_state,
        "reason": reason,
    }
    entry.update({k: v for k, v in extra.items() if v is not None})
    doc["history"] = [*doc.get("history", []), entry]
    doc["state"] = to_state
    doc["updated_at"] = time


# -- TF Serving's ModelServerConfig, text format -------------------------------------------------


def render_serving_config(served: Mapping[str, int], base_path: str) -> str:
    """A ``ModelServerConfig`` text proto serving each name at exactly its given version."""
    config = model_server_config_pb2.ModelServerConfig()
    for name in sorted(served):
        model = config.model_config_list.config.add()
        model.name = name
        model.base_path = base_path.rstrip("/") + "/" + name
        model.model_platform = "tensorflow"
        model.model_version_policy.specific.versions.append(int(served[name]))
    if not served:
        # An empty list still names the list, so the model server reads "serve nothing".
        config.model_config_list.SetInParent()
    return text_format.MessageToString(config)


def parse_serving_config(text: str) -> dict[str, int | None]:
    """Name → pinned version of every model in a ``ModelServerConfig`` text proto.

    None when the version policy is ``latest``, ``all`` or absent (TF Serving's
    default is the latest version). With several ``specific`` versions, the highest.
    """
    config = model_server_config_pb2.ModelServerConfig()
    try:
        text_format.Parse(text, config)
    except text_format.ParseError as exc:
        raise InvalidInput(f"not a text-format serving config: {exc}") from None
    served: dict[str, int | None] = {}
    for model in config.model_config_list.config:
        versions = list(model.model_version_policy.specific.versions)
        served[model.name] = max(versions) if versions else None
    return served
