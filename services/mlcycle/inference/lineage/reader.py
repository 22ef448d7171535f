"""Reading one comment's lineage: each part from where its owner keeps it.

The comment, its votes, its labels, their label runs and the model version's
registry record come through their repositories; the rest of the model version
from its ``metadata.json``;
the transform from the artifact store (or the one this service already
serves); the score from the stored comment, else from the service's predictor.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from pydantic import TypeAdapter, ValidationError

from mlcycle.common.errors import MlcycleError, ValidationFailed
from mlcycle.common.settings import StoreSettings
from mlcycle.common.store import Store, open_store
from mlcycle.contracts.comments import RecordId, StoredComment
from mlcycle.contracts.explanations import Span
from mlcycle.contracts.labels import live_run
from mlcycle.contracts.repositories.comments import Comments
from mlcycle.contracts.repositories.label_runs import LabelRuns
from mlcycle.contracts.repositories.labels import Labels
from mlcycle.contracts.repositories.model_versions import ModelVersions
from mlcycle.contracts.repositories.serving_pointers import ServingPointers
from mlcycle.contracts.repositories.votes import Votes
from mlcycle.contracts.scores import PREDICTION_FIELD, CommentScore
from mlcycle.featurization.store import TransformStore
from mlcycle.featurization.transform import Transform
from mlcycle.inference.lineage.parts import label_part, model_part, transform_part, votes_part
from mlcycle.inference.lineage.schema import (
    LabelPart,
    Lineage,
    ModelPart,
    ScoreLineage,
    TransformPart,
    VotesPart,
)
from mlcycle.inference.metadata import ServedModel, VersionMetadata, read_version_metadata

if TYPE_CHECKING:
    from mlcycle.inference.explain import Explainer
    from mlcycle.inference.predictor import Predictor

# Votes listed in an answer (all of them are counted).
MAX_VOTES = 100

TransformSource = Callable[[str], Transform]
_COMMENT_ID: TypeAdapter[str] = TypeAdapter(RecordId)


def check_comment_id(comment_id: str) -> str:
    """``comment_id`` if it could be a stored comment's id; else 422 saying why."""
    try:
        return _COMMENT_ID.validate_python(comment_id)
    except ValidationError as exc:
        reason = exc.errors(include_url=False)[0]["msg"]
        raise ValidationFailed(
            f"malformed comment id: {reason}", details={"id": comment_id[:600]}
        ) from None


class LineageReader:
    """Assembles :class:`Lineage` answers; thread-safe.

    Given a store's settings rather than a store, it opens the store on the first
    lineage asked for (and closes it in :meth:`close`).
    """

    def __init__(
        self,
        model: ServedModel,
        task: str,
        predictor: Predictor,
        *,
        store: Store | StoreSettings,
        transforms: TransformSource | None = None,
        explainer: Explainer | None = None,
    ) -> None:
        self.model = model
        # Gives the stored score's words (spans); None: lineage answers without them.
        self.explainer = explainer
        self.task = task
        self.predictor = predictor
        self._store_settings = store if isinstance(store, StoreSettings) else None
        self._store = None if isinstance(store, StoreSettings) else store
        self._transforms = transforms or TransformStore(model.artifacts_dir).transform
        self._lock = threading.Lock()

    @property
    def store(self) -> Store:
        """The store lineage reads (opened once, on the first lineage asked for)."""
        with self._lock:
            if self._store is None:
                assert self._store_settings is not None
                self._store = open_store(self._store_settings)
            return self._store

    def close(self) -> None:
        """Close the store if this reader opened it."""
        with self._lock:
            if self._store_settings is not None and self._store is not None:
                self._store.close()
                self._store = None

    def explain(self, comment_id: str) -> Lineage:
        """The lineage of ``comment_id``; 404 when no such comment is stored, 422 when malformed."""
        check_comment_id(comment_id)
        comment = Comments(self.store).require(comment_id)
        missing: dict[str, str] = {}
        score = self._score(comment, missing)
        model = self._model(score, missing)
        return Lineage(
            id=comment_id,
            comment=StoredComment.model_validate(comment.model_dump(exclude={PREDICTION_FIELD})),
            votes=self._votes(comment_id),
            label=self._label(comment_id, model, missing),
            transform=self._transform(model, score, missing),
            model=model,
            score=score,
            missing=missing,
        )

    # -- the parts -----------------------------------------------------------------------------

    def _votes(self, comment_id: str) -> VotesPart:
        votes = Votes(self.store)
        total = votes.count_of_item(comment_id, self.task)
        listed = votes.of_item(comment_id, self.task, limit=MAX_VOTES) if total else []
        return votes_part(self.task, total, listed)

    def _label(
        self, comment_id: str, model: ModelPart | None, missing: dict[str, str]
    ) -> LabelPart | None:
        trained_on = model.label_run if model is not None else None
        runs = LabelRuns(self.store)
        candidates: dict[str, str] = {}
        if trained_on:
            candidates[trained_on] = "the label run the model was trained on"
        latest = runs.latest(self.task)
        if latest is not None:
            candidates.setdefault(latest.id, "the latest finished label run")
        candidates.setdefault(live_run(self.task), "the live label (the votes so far)")
        label = Labels(self.store).first_of_item(list(candidates), comment_id)
        if label is None:
            runs_asked = ", ".join(candidates)
            missing["label"] = (
                f"not labeled in {runs_asked}: no votes yet, or no label run since it arrived"
            )
            return None
        # The live label has no run record.
        return label_part(
            label, runs.get(label.run), candidates[label.run], label.run == trained_on
        )

    def _transform(
        self, model: ModelPart | None, score: ScoreLineage | None, missing: dict[str, str]
    ) -> TransformPart | None:
        version = (model.transform if model is not None else None) or (
            score.transform_version if score is not None else None
        )
        if not version:
            missing["transform"] = "no model version names a transform"
            return None
        try:
            return transform_part(self._load_transform(version))
        except MlcycleError as exc:
            missing["transform"] = f"transform {version} cannot be read: {exc.message}"
            return None

    def _load_transform(self, version: str) -> Transform:
        try:
            serving = self.predictor.tracker.current().transform
        except MlcycleError:
            serving = None
        if serving is not None and serving.version == version:
            return serving  # already loaded by the service
        return self._transforms(version)

    def _model(self, score: ScoreLineage | None, missing: dict[str, str]) -> ModelPart | None:
        name = self.model.name
        versions = ModelVersions(self.store)
        version = score.model_version if score is not None else self._serving_version()
        if version is None:
            production = ServingPointers(self.store).of(name).version
            if production is None or versions.version(name, production) is None:
                missing["model"] = f"model {name} has no serving nor production version yet"
                return None
            version = production
        registered = versions.version(name, version)
        if registered is None:
            missing["model.registry"] = f"no model {name!r} version {version}"
        metadata: VersionMetadata | None = None
        try:
            metadata = read_version_metadata(self.model, version)
        except MlcycleError as exc:
            missing["model.metadata"] = exc.message
        if registered is None and metadata is None:
            missing["model"] = f"model {name} version {version} is neither registered nor on disk"
            return None
        return model_part(name, version, registered, metadata or VersionMetadata())

    def _score(self, comment: StoredComment, missing: dict[str, str]) -> ScoreLineage | None:
        serving = self._serving_version()
        stored = CommentScore.on_comment(comment.model_extra or {})
        if stored is not None:
            return ScoreLineage(
                **stored.to_document(),
                source="stream",
                serving_model_version=serving,
                spans=self._spans(comment, stored.model_version, missing),
            )
        try:
            scored = self.predictor.score(
                [comment.text], [comment.metadata or None], unknown_fields="ignore"
            )
        except MlcycleError as exc:
            missing["score"] = (
                f"not scored by the stream, and it cannot be scored now: {exc.message}"
            )
            return None
        (prediction,) = scored.predictions()
        return ScoreLineage(
            **prediction,
            source="scored_now",
            cached=scored.cache_hits > 0,
            serving_model_version=scored.model.version,
            spans=self._spans(comment, scored.model.version, missing),
        )

    def _spans(
        self, comment: StoredComment, version: int, missing: dict[str, str]
    ) -> list[Span] | None:
        """The words behind the score of ``version``, or None with the reason in ``missing``."""
        if self.explainer is None:
            missing["score.spans"] = "this service does not explain scores"
            return None
        model = self.predictor.tracker.loaded(version)
        if model is None:
            missing["score.spans"] = (
                f"model version {version} is no longer loaded by this service: its score "
                "stands, but only a version it serves can explain"
            )
            return None
        try:
            (explanation,) = self.explainer.explain(
                model, [comment.text], [comment.metadata or None]
            )
        except MlcycleError as exc:
            missing["score.spans"] = exc.message
            return None
        return explanation.spans

    def _serving_version(self) -> int | None:
        try:
            return self.predictor.tracker.current().version
        except MlcycleError:
            return None
