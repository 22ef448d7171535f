"""A servable model version: its transform, classes and threshold, built from its metadata.

Per version, ``metadata.json`` (on the shared models volume) names the transform,
the classes and the decision threshold; the transform comes from the artifact store.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from mlcycle.common.errors import InvalidInput, NotFound, Unavailable
from mlcycle.featurization.tokens import TokenEncoder
from mlcycle.featurization.transform import Transform
from mlcycle.inference.live_rate import LiveScores, expose
from mlcycle.inference.metadata import METADATA, ServedModel, VersionMetadata
from mlcycle.inference.tokens import version_tokens

DEFAULT_THRESHOLD = 0.5

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
