"""Which model version predictions use, and what each version needs to be served.

The serving (stable) version is the routing table's production version, or without
one the highest AVAILABLE version of the model in the model server's
``GetModelStatus``, re-read in the background; a rollout's canary and shadow are
served beside it once loaded (:mod:`mlcycle.inference.routing`). Every Predict call
pins its version, so the cache key, the transform that featurized the text and the
``model_version`` answered always agree. What a version needs to be served is built
by :mod:`mlcycle.inference.servable`.
"""

from __future__ import annotations

import logging
import threading
import time

from mlcycle.common.errors import MlcycleError, Unavailable
from mlcycle.common.settings import InferenceSettings
from mlcycle.contracts.rollouts import RoutingState
from mlcycle.inference.client import ModelClient
from mlcycle.inference.metadata import ServedModel, read_version_metadata
from mlcycle.inference.metrics import SERVING_VERSION
from mlcycle.inference.routing import RoutingWatcher, Serving
from mlcycle.inference.servable import (
    DEFAULT_THRESHOLD,
    ModelVersion,
    TransformSource,
    build_version,
    score_prior,
)

log = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_THRESHOLD",
    "ModelVersion",
    "Serving",
    "TransformSource",
    "VersionTracker",
    "build_version",
    "score_prior",
]
# Versions whose metadata and transform stay loaded (the served ones and a few before them).
KEEP_LOADED = 4
# A canary or shadow version that could not be loaded is tried again after this long.
RETRY_UNLOADABLE_S = 10.0
# A failing canary asks for a refresh at most this often.
WAKE_MIN_S = 0.2


class VersionTracker:
    """Keeps the :class:`Serving` snapshot of the served model up to date.

    :meth:`current` and :meth:`serving` are lock-free (one attribute read);
    :meth:`refresh` asks the model server (and re-reads the routing table) and loads
    a new version's metadata and transform before switching to it. The stable version
    is the routing table's when it has one for the name, else the highest AVAILABLE;
    a rollout's canary and shadow join the snapshot once AVAILABLE and loaded.
    """

    def __init__(
        self,
        model: ServedModel,
        config: InferenceSettings,
        client: ModelClient,
        transforms: TransformSource,
        *,
        routing: RoutingWatcher | None = None,
    ) -> None:
        self.model = model
        self.config = config
        self.name = model.name
        self.routing = routing
        self._client = client
        self._transforms = transforms
        self._loaded: dict[int, ModelVersion] = {}
        unknown = Unavailable(f"model {self.name}: the serving version is not known yet")
        # (what is served or None, why nothing is); replaced as one tuple, read without a lock.
        self._state: tuple[Serving | None, MlcycleError] = (None, unknown)
        # Routed versions that failed to load -> when to try again (not at every refresh).
        self._unloadable: dict[int, float] = {}
        self.server_up = False
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._refreshed_at = 0.0
        self._thread: threading.Thread | None = None

    def current(self) -> ModelVersion:
        """The stable (answering) version, or the error that explains why there is none."""
        serving, error = self._state
        if serving is None:
            raise error
        return serving.stable

    def serving(self) -> Serving:
        """What requests are routed between now, or the error that explains why nothing is."""
        serving, error = self._state
        if serving is None:
            raise error
        return serving

    def loaded(self, version: int) -> ModelVersion | None:
        """Version ``version`` if it is kept loaded (the served ones and a few before them)."""
        return self._loaded.get(version)

    def loaded_versions(self) -> list[ModelVersion]:
        """Every version kept loaded, oldest first."""
        loaded = self._loaded.copy()  # refreshes change it on their thread
        return [loaded[v] for v in sorted(loaded)]

    def refresh(self) -> ModelVersion | None:
        """Ask the model server now; switch to the stable version once it is loaded."""
        with self._lock:
            serving = self._refresh_locked()
        return None if serving is None else serving.stable

    def refresh_soon(self) -> None:
        """Have the background thread refresh soon (a routed version failed a call).

        Every failure wakes the thread, even one just after a refresh: that refresh may
        have read the versions before the failing one left the model server. The thread
        itself keeps refreshes WAKE_MIN_S apart, however many calls fail."""
        self._wake.set()

    def refresh_after_gone(self, gone: int) -> ModelVersion:
        """The stable version after version ``gone`` answered NOT_FOUND (refreshed once)."""
        with self._lock:
            serving = self._state[0]
            if serving is None or serving.stable.version == gone:
                serving = self._refresh_locked()
        if serving is None:
            raise self._state[1]
        if serving.stable.version == gone:
            raise Unavailable(
                f"the model server at {self._client.address} no longer serves model "
                f"{self.name} version {gone}",
                details={"model": self.name, "version": gone},
            )
        return serving.stable

    def _refresh_locked(self) -> Serving | None:
        self._refreshed_at = time.monotonic()
        if self.routing is not None:
            self.routing.poll()
        try:
            versions = self._client.versions(self.name)
        except Unavailable as exc:
            self.server_up = False
            serving = self._state[0]
            # Keep the pinned versions: when the server is back they answer at once.
            self._state = (serving, exc)
            return serving
        self.server_up = True
        if not versions:
            self._set(
                None,
                Unavailable(
                    f"the model server at {self._client.address} has no available version "
                    f"of model {self.name}",
                    details={"model": self.name},
                ),
            )
            return None
        state = self.routing.state() if self.routing is not None else None
        if state is not None and state.stable is None:
            state = None  # nothing in production: serve as before the registry routed
        try:
            stable = self._load(self._stable_version(state, versions))
        except MlcycleError as exc:
            log.error("model version not servable: %s", exc.message)
            self._set(None, exc)
            return None
        serving = self._routed(stable, state, set(versions))
        previous = self._state[0]
        if previous is None or previous.stable is not stable:
            log.info("serving model version", extra={"model": self.name, "version": stable.version})
        self._set(serving, self._state[1])
        self._prune(serving)
        return serving

    def _stable_version(self, state: RoutingState | None, versions: list[int]) -> int:
        """The version that answers: the routing table's production version when AVAILABLE
        (else the one answering now, while it is), without a table the highest AVAILABLE."""
        if state is None or state.stable is None:
            return versions[-1]
        if state.stable in versions:
            return state.stable
        serving = self._state[0]
        if serving is not None and serving.stable.version in versions:
            return serving.stable.version  # the new production version is still loading
        raise Unavailable(
            f"model {self.name} version {state.stable} (production) is not available on the "
            f"model server at {self._client.address} yet",
            details={"model": self.name, "version": state.stable, "available": versions},
        )

    def _routed(
        self, stable: ModelVersion, state: RoutingState | None, available: set[int]
    ) -> Serving:
        """The snapshot: the rollout's canary and shadow where AVAILABLE and loadable."""
        if state is None:
            return Serving(stable)
        canary = self._optional(state.canary, stable, available)
        shadow = self._optional(state.shadow, stable, available)
        effective = state.model_copy(
            update={
                "stable": stable.version,
                "canary": None if canary is None else canary.version,
                "shadow": None if shadow is None else shadow.version,
            }
        )
        return Serving(stable, effective, canary, shadow)

    def _optional(
        self, version: int | None, stable: ModelVersion, available: set[int]
    ) -> ModelVersion | None:
        if version is None or version == stable.version or version not in available:
            return None
        if self._unloadable.get(version, 0.0) > time.monotonic():
            return None
        try:
            return self._load(version)
        except MlcycleError as exc:
            self._unloadable[version] = time.monotonic() + RETRY_UNLOADABLE_S
            log.error("routed model version not servable: %s", exc.message)
            return None

    def _load(self, version: int) -> ModelVersion:
        loaded = self._loaded.get(version)
        if loaded is None:
            metadata = read_version_metadata(self.model, version)
            loaded = build_version(
                self.model,
                version,
                metadata,
                self._transforms,
                threshold_override=self.config.predict_threshold,
            )
            self._loaded[version] = loaded
            self._unloadable.pop(version, None)
        return loaded

    def _prune(self, serving: Serving) -> None:
        """Keep the served versions and the KEEP_LOADED newest of the others."""
        served = {m.version for m in (serving.stable, serving.canary, serving.shadow) if m}
        others = [v for v in sorted(self._loaded) if v not in served]
        for old in others[: max(0, len(others) + len(served) - KEEP_LOADED)]:
            del self._loaded[old]

    def _set(self, serving: Serving | None, error: MlcycleError) -> None:
        self._state = (serving, error)
        SERVING_VERSION.labels(self.name).set(serving.stable.version if serving else 0)

    # -- background refresh --------------------------------------------------------------------

    def start(self) -> VersionTracker:
        """Refresh now, then every ``version_refresh_s`` (and as soon as the routing table
        changes) on a daemon thread."""
        self.refresh()
        self._thread = threading.Thread(target=self._run, name="model-versions", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        period = self.config.version_refresh_s
        tick = period if self.routing is None else min(period, self.routing.refresh_s)
        due = time.monotonic() + period
        while not self._stop.is_set():
            woken = self._wake.wait(tick)
            if woken and self._stop.wait(self._refreshed_at + WAKE_MIN_S - time.monotonic()):
                return  # (a failure woke it: the hold keeps refreshes WAKE_MIN_S apart)
            if self._stop.is_set():
                return
            self._wake.clear()
            try:
                changed = self.routing is not None and self.routing.poll()
                if woken or changed or time.monotonic() >= due:
                    due = time.monotonic() + period
                    self.refresh()
            except Exception:  # the loop must outlive any surprise; the next round retries
                log.exception("model version refresh failed")

    def stop(self) -> None:
        """Stop the background refresh."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
