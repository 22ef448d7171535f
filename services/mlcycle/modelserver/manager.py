"""Model versions through their life: START → LOADING → AVAILABLE → UNLOADING → END.

:meth:`ModelManager.sync` looks at each configured model's base path, asks its
version policy which versions should be served, loads those that are not yet
(warm-up included) and only then unloads the ones no longer wanted. A new
version is therefore AVAILABLE before the one it replaces goes, so there is
never a moment without a served version; and a version that fails to load
ends in END with its error (reported by GetModelStatus) while the version
already served stays. A failed version is retried only when its folder
changes. A version whose folder vanished is unloaded once another is
available, or at once when none can be.

Version labels follow TF Serving's rule: a config's labels are applied, all at
once, only when every label points at an AVAILABLE version once the config's
versions have been loaded; otherwise the update is refused (FAILED_PRECONDITION,
TF Serving's message) and the labels in force stay. With
``allow_unavailable_labels`` (``--allow_version_labels_for_unavailable_models``)
a label that does not exist yet, or keeps its version, may point at a version
not available yet; moving an existing label still needs an AVAILABLE version.

Requests never take a lock: they read an immutable snapshot of what is
served (:class:`Served`), replaced as a whole on every change.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from mlcycle.common.errors import InvalidInput, MlcycleError, NotFound
from mlcycle.modelserver import metrics
from mlcycle.modelserver.config import ModelSettings
from mlcycle.modelserver.errors import FailedPrecondition
from mlcycle.modelserver.servable import Servable
from mlcycle.modelserver.versions import fingerprint, list_versions
from mlcycle.modelserver.warmup import warm_up

log = logging.getLogger(__name__)

START, LOADING, AVAILABLE, UNLOADING, END = "START", "LOADING", "AVAILABLE", "UNLOADING", "END"
STATES = (START, LOADING, AVAILABLE, UNLOADING, END)
OK = "OK"


@dataclass
class VersionStatus:
    """What the server knows of one version: its state and, after a failure, why."""

    version: int
    state: str
    error_code: str = OK
    error_message: str = ""
    fingerprint: tuple[int, ...] = ()
    servable: Servable | None = field(default=None, repr=False)


@dataclass(frozen=True)
class Served:
    """The versions of one model requests can use right now (never mutated)."""

    versions: Mapping[int, Servable]
    labels: Mapping[str, int]

    @property
    def latest(self) -> Servable | None:
        """The highest available version."""
        return self.versions[max(self.versions)] if self.versions else None


class ModelManager:
    """Loads, serves and unloads the versions of the configured models."""

    def __init__(
        self,
        models: Sequence[ModelSettings],
        *,
        tags: Sequence[str] = ("serve",),
        warmup: bool = True,
        allow_unavailable_labels: bool = False,
    ) -> None:
        self.tags = tuple(tags)
        self.warmup = warmup
        self.allow_unavailable_labels = allow_unavailable_labels
        # The labels in force (model -> label -> version); a config's are applied after a sync.
        self._labels: dict[str, dict[str, int]] = {}
        self._labels_pending = True
        self._label_error: FailedPrecondition | None = None
        self._models = {model.name: model for model in models}
        self._states: dict[str, dict[int, VersionStatus]] = {}
        self._served: dict[str, Served] = {}
        self._state_lock = threading.Lock()  # short: guards _states reads and writes
        self._sync_lock = threading.RLock()  # long: one sync or reconfigure at a time
        self._unload_listeners: list[Callable[[Servable], None]] = []
        self._sync_listeners: list[Callable[[], None]] = []
        self._missing_base: set[str] = set()
        self.synced = threading.Event()  # set once every model has been looked at

    # -- configuration ---------------------------------------------------------------------------

    @property
    def models(self) -> list[ModelSettings]:
        """The configured models."""
        return list(self._models.values())

    def is_configured(self, name: str) -> bool:
        """True when ``name`` is a configured model."""
        return name in self._models

    def add_unload_listener(self, listener: Callable[[Servable], None]) -> None:
        """Call ``listener`` with each version as it is unloaded (to drop its batch queues)."""
        self._unload_listeners.append(listener)

    def add_sync_listener(self, listener: Callable[[], None]) -> None:
        """Call ``listener`` after every sync pass (to report readiness)."""
        self._sync_listeners.append(listener)

    def reconfigure(self, models: Sequence[ModelSettings]) -> None:
        """Serve ``models`` from now on: removed models are unloaded, the rest synced now.

        Raises FailedPrecondition when the config's labels were refused (a label on a
        version that is not AVAILABLE after the sync): the versions are served, and
        the labels in force before stay.
        """
        with self._sync_lock:
            new = {model.name: model for model in models}
            removed = [name for name in self._models if name not in new]
            self._models = new
            for name in removed:
                log.info("model %s is no longer configured; unloading it", name)
                for status in self._snapshot(name):
                    if status.state == AVAILABLE:
                        self._unload(name, status.version)
                self._served = {k: v for k, v in self._served.items() if k != name}
            self._labels_pending = True
            self.sync()
            refused = self._label_error
        if refused is not None:
            raise refused

    # -- the sync pass ---------------------------------------------------------------------------

    def sync(self) -> None:
        """Bring every model's loaded versions in line with its base path and policy."""
        with self._sync_lock:
            for model in list(self._models.values()):
                try:
                    self._sync_model(model)
                except Exception:  # one model's trouble must not stop the others
                    log.exception("syncing model %s failed", model.name)
            if self._labels_pending:
                self._labels_pending = False
                self._label_error = self._update_labels()
            self.synced.set()
        for listener in self._sync_listeners:
            listener()

    def _sync_model(self, model: ModelSettings) -> None:
        found = list_versions(model.base_path)
        self._note_base_path(model, found)
        aspired = model.policy.aspired(found)
        for version in sorted(aspired, reverse=True):
            current = self._status(model.name, version)
            if current is not None and current.state == AVAILABLE:
                continue
            stamp = fingerprint(found[version])
            if current is not None and current.error_code != OK and current.fingerprint == stamp:
                continue  # failed before and unchanged since: do not retry every poll
            self._load(model, version, found[version], stamp)
        self._unload_unwanted(model, found, aspired)
        self._publish(model.name)

    def _note_base_path(self, model: ModelSettings, found: Mapping[int, Path]) -> None:
        if found:
            self._missing_base.discard(model.name)
        elif model.name not in self._missing_base:
            self._missing_base.add(model.name)
            log.warning(
                "no versions of model %s under %s yet (numeric folders <version>/)",
                model.name,
                model.base_path,
            )

    def _load(self, model: ModelSettings, version: int, path: Path, stamp: tuple[int, ...]) -> None:
        name = model.name
        self._set(name, VersionStatus(version, START, fingerprint=stamp))
        self._set(name, VersionStatus(version, LOADING, fingerprint=stamp))
        started = time.perf_counter()
        try:
            servable = Servable.load(name, version, path, self.tags)
            if self.warmup:
                warm_up(servable)
        except MlcycleError as exc:
            self._failed(name, version, stamp, exc.grpc_code.name, exc.message, started)
            return
        except Exception as exc:  # TensorFlow raises many kinds; none may crash the server
            log.exception("loading %s version %d failed", name, version)
            self._failed(name, version, stamp, "UNKNOWN", f"{type(exc).__name__}: {exc}", started)
            return
        metrics.observe_load(name, time.perf_counter() - started, ok=True)
        self._set(name, VersionStatus(version, AVAILABLE, fingerprint=stamp, servable=servable))
        self._publish(name)
        log.info("model %s version %d is AVAILABLE", name, version)

    def _failed(
        self,
        name: str,
        version: int,
        stamp: tuple[int, ...],
        code: str,
        message: str,
        started: float,
    ) -> None:
        metrics.observe_load(name, time.perf_counter() - started, ok=False)
        log.error("model %s version %d failed to load: %s", name, version, message)
        self._set(name, VersionStatus(version, END, code, message, fingerprint=stamp))

    def _unload_unwanted(
        self, model: ModelSettings, found: Mapping[int, Path], aspired: Iterable[int]
    ) -> None:
        wanted = set(aspired)
        loaded = [s for s in self._snapshot(model.name) if s.state == AVAILABLE]
        replacement = any(s.version in wanted for s in loaded)
        for status in loaded:
            if status.version in wanted:
                continue
            # Keep an unwanted version until a wanted one serves, unless its files are gone.
            if replacement or status.version not in found:
                self._unload(model.name, status.version)

    def _unload(self, name: str, version: int) -> None:
        status = self._status(name, version)
        if status is None or status.servable is None:
            return
        servable = status.servable
        self._set(name, dataclasses.replace(status, state=UNLOADING))
        self._publish(name)  # no new request gets it from here on
        for listener in self._unload_listeners:
            try:
                listener(servable)
            except Exception:
                log.exception("an unload listener failed for %s version %d", name, version)
        self._set(name, VersionStatus(version, END, fingerprint=status.fingerprint))
        self._publish(name)
        log.info("model %s version %d unloaded", name, version)

    # -- state bookkeeping -----------------------------------------------------------------------

    def _set(self, name: str, status: VersionStatus) -> None:
        with self._state_lock:
            states = self._states.setdefault(name, {})
            states[status.version] = status
            counts = {state: 0 for state in STATES}
            for known in states.values():
                counts[known.state] += 1
        metrics.set_version_states(name, counts)

    def _status(self, name: str, version: int) -> VersionStatus | None:
        with self._state_lock:
            return self._states.get(name, {}).get(version)

    def _snapshot(self, name: str) -> list[VersionStatus]:
        with self._state_lock:
            return [dataclasses.replace(s) for s in self._states.get(name, {}).values()]

    def _publish(self, name: str) -> None:
        model = self._models.get(name)
        if model is None:
            return
        with self._state_lock:
            versions = {
                v: s.servable
                for v, s in self._states.get(name, {}).items()
                if s.state == AVAILABLE and s.servable is not None
            }
        served = Served(versions=versions, labels=dict(self._labels.get(name, {})))
        self._served = {**self._served, name: served}

    # -- what requests see -----------------------------------------------------------------------

    def resolve(self, name: str, version: int | None = None, label: str = "") -> Servable:
        """The servable a ModelSpec asks for: a version, a label, or the latest."""
        served = self._served.get(name)
        if label:
            version = self.version_for_label(name, label)
        if version is None:
            latest = served.latest if served is not None else None
            if latest is None:
                raise NotFound(f"Servable not found for request: Latest({name})")
            return latest
        servable = served.versions.get(version) if served is not None else None
        if servable is None:
            raise NotFound(f"Servable not found for request: Specific({name}, {version})")
        return servable

    def served_versions(self) -> frozenset[tuple[str, int, Servable]]:
        """(model, version, servable) for every version requests can use right now."""
        return frozenset(
            (name, version, servable)
            for name, served in self._served.items()
            for version, servable in served.versions.items()
        )

    def version_for_label(self, name: str, label: str) -> int:
        """The version a label of ``name`` points at (among the labels in force)."""
        labels = self._labels.get(name, {}) if name in self._models else {}
        if label not in labels:
            raise InvalidInput(f"Unrecognized servable version label: {label}")
        return int(labels[label])

    def labels(self, name: str) -> dict[str, int]:
        """The labels of ``name`` in force (a refused config's labels are not)."""
        return dict(self._labels.get(name, {}))

    def _update_labels(self) -> FailedPrecondition | None:
        """Apply every configured model's labels, or none of them (TF Serving's rule)."""
        new: dict[str, dict[str, int]] = {}
        for model in self._models.values():
            current = self._labels.get(model.name, {})
            for label, version in sorted(model.labels.items()):
                status = self._status(model.name, version)
                available = status is not None and status.state == AVAILABLE
                # The flag lets a new label (or one keeping its version) wait for its version.
                waits = self.allow_unavailable_labels and current.get(label, version) == version
                if not available and not waits:
                    refused = FailedPrecondition(
                        f"Request to assign label to version {version} of model {model.name}, "
                        "which is not currently available for inference"
                    )
                    log.error(
                        "version labels not updated: %s",
                        refused.message,
                        extra={"model": model.name, "label": label, "in_force": current},
                    )
                    return refused
                new.setdefault(model.name, {})[label] = int(version)
        self._labels = new
        for name in self._models:
            self._publish(name)
        return None

    def status(self, name: str, version: int | None = None, label: str = "") -> list[VersionStatus]:
        """The known versions of ``name`` (newest first), or the one asked for."""
        if label:
            version = self.version_for_label(name, label)
        states = self._snapshot(name)
        if version is not None:
            for status in states:
                if status.version == version:
                    return [status]
            raise NotFound(f"Could not find version {version} of model {name}")
        if not states:
            raise NotFound(f"Could not find any versions of model {name}")
        return sorted(states, key=lambda s: s.version, reverse=True)

    def readiness(self) -> dict[str, bool]:
        """Per configured model: does it have an AVAILABLE version?"""
        served = self._served
        return {name: bool(served.get(name) and served[name].versions) for name in self._models}

    def close(self) -> None:
        """Unload every version (the server is stopping)."""
        with self._sync_lock:
            for name in list(self._states):
                for status in self._snapshot(name):
                    if status.state == AVAILABLE:
                        self._unload(name, status.version)
