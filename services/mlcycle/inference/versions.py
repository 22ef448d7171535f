"""Which model version predictions use, and what each version needs to be served.

The serving version is the highest AVAILABLE version of the model in the model
server's ``GetModelStatus``, re-read in the background. Every Predict call pins
it, so the cache key, the transform that featurized the text and the
``model_version`` answered always agree. Per version, ``metadata.json`` (on the
shared models volume) names the transform, the classes and the decision
threshold; the transform comes from the artifact store.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from mlcycle.common.errors import InvalidInput, MlcycleError, NotFound, Unavailable
from mlcycle.common.settings import InferenceSettings
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
from mlcycle.inference.tokens import version_tokens

log = logging.getLogger(__name__)

DEFAULT_THRESHOLD = 0.5
# Versions whose metadata and transform stay loaded (the serving one and a few before it).
KEEP_LOADED = 4

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
    """Keeps the serving :class:`ModelVersion` of the served model up to date.

    :meth:`current` is lock-free (one attribute read); :meth:`refresh` asks the
    model server and loads a new version's metadata and transform before
    switching to it.
    """

    def __init__(
        self,
        model: ServedModel,
        config: InferenceSettings,
        client: ModelClient,
        transforms: TransformSource,
    ) -> None:
        self.model = model
        self.config = config
        self.name = model.name
        self._client = client
        self._transforms = transforms
        self._loaded: dict[int, ModelVersion] = {}
        unknown = Unavailable(f"model {self.name}: the serving version is not known yet")
        # (serving version or None, why there is none); replaced as one tuple, read without a lock.
        self._state: tuple[ModelVersion | None, MlcycleError] = (None, unknown)
        self.server_up = False
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def current(self) -> ModelVersion:
        """The serving version, or the error that explains why there is none."""
        model, error = self._state
        if model is None:
            raise error
        return model

    def loaded(self, version: int) -> ModelVersion | None:
        """Version ``version`` if it is kept loaded (the serving one and a few before it)."""
        return self._loaded.get(version)

    def loaded_versions(self) -> list[ModelVersion]:
        """Every version kept loaded, oldest first."""
        loaded = self._loaded.copy()  # refreshes change it on their thread
        return [loaded[v] for v in sorted(loaded)]

    def refresh(self) -> ModelVersion | None:
        """Ask the model server now; switch to its highest AVAILABLE version once it is loaded."""
        with self._lock:
            return self._refresh_locked()

    def refresh_after_gone(self, gone: int) -> ModelVersion:
        """The serving version after version ``gone`` answered NOT_FOUND (refreshed once)."""
        with self._lock:
            model = self._state[0]
            if model is None or model.version == gone:
                model = self._refresh_locked()
        if model is None:
            raise self._state[1]
        if model.version == gone:
            raise Unavailable(
                f"the model server at {self._client.address} no longer serves model "
                f"{self.name} version {gone}",
                details={"model": self.name, "version": gone},
            )
        return model

    def _refresh_locked(self) -> ModelVersion | None:
        try:
            versions = self._client.versions(self.name)
        except Unavailable as exc:
            self.server_up = False
            model = self._state[0]
            # Keep the pinned version: when the server is back it answers at once.
            self._state = (model, exc)
            return model
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
        newest = versions[-1]
        model = self._state[0]
        if model is not None and model.version == newest:
            return model
        try:
            model = self._load(newest)
        except MlcycleError as exc:
            log.error("model version not servable: %s", exc.message)
            self._set(None, exc)
            return None
        log.info("serving model version", extra={"model": self.name, "version": newest})
        self._set(model, self._state[1])
        return model

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
            for old in sorted(self._loaded)[:-KEEP_LOADED]:
                del self._loaded[old]
        return loaded

    def _set(self, model: ModelVersion | None, error: MlcycleError) -> None:
        self._state = (model, error)
        SERVING_VERSION.labels(self.name).set(model.version if model is not None else 0)

    # -- background refresh --------------------------------------------------------------------

    def start(self) -> VersionTracker:
        """Refresh now, then every ``version_refresh_s`` on a daemon thread."""
        self.refresh()
        self._thread = threading.Thread(target=self._run, name="model-versions", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.config.version_refresh_s):
            try:
                self.refresh()
            except Exception:  # the loop must outlive any surprise; the next round retries
                log.exception("model version refresh failed")

    def stop(self) -> None:
        """Stop the background refresh."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
