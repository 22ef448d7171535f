"""Which model version predictions use, and what each version needs to be served.

The serving (stable) version is the routing table's production version, or without
one the highest AVAILABLE version of the model in the model server's
``GetModelStatus``, re-read in the background; a rollout's canary and shadow are
served beside it once loaded (:mod:`mlcycle.inference.routing`). Every Predict call pins
it, so the cache key, the transform that featurized the text and the
``model_version`` answered always agree. Per version, ``metadata.json`` (on the
shared models volume) names the transform, the classes and the decision
threshold; the transform comes from the artifact store.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from mlcycle.common.errors import InvalidInput, MlcycleError, NotFound, Unavailable
from mlcycle.common.settings import InferenceSettings
from mlcycle.contracts.rollouts import RoutingState
from mlcycle.featurization.tokens import TokenEncoder
from mlcycle.featurization.transform import Transform
from mlcycle.inference.client import ModelClient
from mlcycle.inference.live_rate import LiveScores, expose
from mlcycle.inference.metadata import (
    METADATA,
    ServedModel,
    VersionMetadata,
    read_version_metadata,
)
from mlcycle.inference.metrics import SERVING_VERSION
from mlcycle.inference.routing import RoutingWatcher, Serving
from mlcycle.inference.tokens import version_tokens

log = logging.getLogger(__name__)

DEFAULT_THRESHOLD = 0.5
# Versions whose metadata and transform stay loaded (the served ones and a few before them).
KEEP_LOADED = 4
# A canary or shadow version that could not be loaded is tried again after this long.
RETRY_UNLOADABLE_S = 10.0

TransformSource = Callable[[str], Transform]


@dataclass(frozen=True, eq=False)
class ModelVersion:
    """One servable model version: its transform, class names and decision threshold.

    ``threshold`` is None for multi-class models, whose label is the most probable class.
    """

    name: str
    version: int
    transform: Transform = field(repr=False)
    classes: tuple[str, ...]
    threshold: float | None
    # Binary versions: the window of recent served scores the live positive rate comes from.
    live: LiveScores | None = field(default=None, repr=False)
    # The version's own tokenizer when it reads tokens (the encoder), else None: n-grams.
    tokens: TokenEncoder | None = field(default=None, repr=False)

    @property
    def transform_version(self) -> str:
        """The featurizer transform the model was trained on."""
        return self.transform.version

    def live_window(self) -> LiveScores:
        """The window of recent served scores; InvalidInput for a multi-class version."""
        if self.live is None:
            raise InvalidInput(
                f"model {self.name} version {self.version} has {len(self.classes)} classes: "
                "a positive rate is defined for binary models only",
                details={"classes": list(self.classes)},
            )
        return self.live

    @property
    def binary(self) -> bool:
        """True for two-class models (score = probability of the second class)."""
        return len(self.classes) == 2


def build_version(
    model: ServedModel,
    version: int,
    metadata: VersionMetadata,
    transforms: TransformSource,
    *,
    threshold_override: float | None = None,
) -> ModelVersion:
    """A servable :class:`ModelVersion` from its metadata; Unavailable saying what is missing.

    ``threshold_override`` (``MLCYCLE_PREDICT_THRESHOLD``) replaces the threshold the
    trainer picked, for two-class models.
    """
    name = model.name
    wanted = metadata.transform
    if not wanted:
        raise Unavailable(
            f"model {name} version {version} does not name its transform in {METADATA}",
            details={"model": name, "version": version},
        )
    try:
        transform = transforms(wanted)
    except NotFound as exc:
        raise Unavailable(
            f"model {name} version {version} needs transform {wanted}, which is not in the "
            f"artifact store at {model.artifacts_dir}",
            details={"model": name, "version": version, "transform": wanted, "cause": exc.details},
        ) from None
    what = f"model {name} version {version}"
    tokens = version_tokens(model.version_dir(version), metadata.input, what)
    if tokens is not None:
        tokens.encode([""])  # load it now, not on the first request
    else:
        # Featurize once now: the first request then finds the compiled vectorizer loaded
        # (or, on a machine that never ran it, compiled), not a quarter second to seconds away.
        transform.apply([""])
    classes = tuple(str(c) for c in metadata.classes or ("0", "1"))
    threshold = None
    if len(classes) == 2:
        threshold = threshold_override
        if threshold is None:
            threshold = DEFAULT_THRESHOLD if metadata.threshold is None else metadata.threshold
    live = None
    if len(classes) == 2:
        live = LiveScores(score_prior(metadata))
        expose(live, version)
    return ModelVersion(name, version, transform, classes, threshold, live, tokens)


def score_prior(metadata: VersionMetadata) -> float | None:
    """The positive rate a binary version's scores are probabilities under, if it says."""
    policy = metadata.threshold_policy or {}
    prior = policy.get("score_prior") if policy.get("applied") else None
    if isinstance(prior, int | float) and not isinstance(prior, bool) and 0.0 < prior < 1.0:
        return float(prior)
    return None


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
        """Have the background thread refresh at once (a routed version failed a call)."""
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
