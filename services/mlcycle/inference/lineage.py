"""A prediction's lineage: one comment's chain from its votes to its score.

``GET /v1/lineage/{id}`` and ``mlcycle explain`` answer, for one stored comment:

- ``comment``: the stored comment (text, source, created_at, metadata);
- ``votes``: its votes for the label task, counted per label;
- ``label``: its label and how it was derived (strategy, posterior, the voters and
  labeling functions that contributed, the label run), taken from the label run the
  model was trained on, else the latest finished run, else the live label;
- ``transform``: the featurizer transform version the model was trained with, and
  its configuration;
- ``model``: the model version that made the score: registry state, dev/test
  metrics, hyper-parameters, label run, git revision and blessing from its
  ``metadata.json``;
- ``score``: the score the stream stored on the comment (``source: "stream"``), or,
  when there is none, a score made now through the service's predictor (cache,
  pinned transform, model server: ``source: "scored_now"``).

A part that cannot be given (not labeled yet, not scorable now, a file gone) is
``null`` and ``missing`` says why; only an unknown id is an error (404).
Everything is read with the readers the owning services use: the store, the
labeler's run records, the model registry and the versions' ``metadata.json``.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field, TypeAdapter, ValidationError

from mlcycle.common.errors import MlcycleError, NotFound, ValidationFailed
from mlcycle.common.settings import Settings
from mlcycle.common.store import COMMENTS, LABELS, VOTES, Store, open_store
from mlcycle.contracts.comments import RecordId, voter_kind
from mlcycle.contracts.labels import live_run
from mlcycle.featurization.store import TransformStore
from mlcycle.featurization.transform import Transform
from mlcycle.labeler.runs import get_run, latest_run
from mlcycle.trainer.registry import ModelRegistry

if TYPE_CHECKING:
    from mlcycle.inference.predictor import Predictor

# Votes listed in an answer (all of them are counted).
MAX_VOTES = 100
# The label run record's figures worth repeating next to one label.
RUN_STATS = ("items", "labeled", "accuracy_on_gold", "converged", "iterations")

Part = tuple[dict[str, Any] | None, str | None]
TransformSource = Callable[[str], Transform]
_COMMENT_ID: TypeAdapter[str] = TypeAdapter(RecordId)


class ScoreLineage(BaseModel):
    """The score at the end of the chain, and where it comes from."""

    score: float
    label: str
    threshold: float | None = None
    model_version: int
    transform_version: str
    probabilities: dict[str, float] | None = None
    source: str = Field(description="'stream': stored by the streaming scorer; 'scored_now'")
    scored_at: str | None = Field(None, description="stream only: when it was scored")
    cached: bool | None = Field(None, description="scored_now only: answered by the score cache")
    serving_model_version: int | None = Field(
        None, description="the version this service serves now (null when none is servable)"
    )


class Lineage(BaseModel):
    """One comment's prediction chain; null parts are explained in ``missing``."""

    id: str
    comment: dict[str, Any]
    votes: dict[str, Any]
    label: dict[str, Any] | None
    transform: dict[str, Any] | None
    model: dict[str, Any] | None
    score: ScoreLineage | None
    missing: dict[str, str] = Field(description="part name -> why it is null")


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
    """Assembles :class:`Lineage` answers; thread-safe. The store opens on first use."""

    def __init__(
        self,
        settings: Settings,
        predictor: Predictor,
        *,
        store: Store | None = None,
        transforms: TransformSource | None = None,
    ) -> None:
        # The serving parts import TensorFlow's protos: imported here, not by the module, so
        # that `mlcycle explain` (which only fetches and renders) starts in a moment.
        from mlcycle.inference.stream import PREDICTION_FIELD

        self.prediction_field = PREDICTION_FIELD
        self.settings = settings
        self.task = settings.labeler.task
        self.predictor = predictor
        self._store = store
        self._owns_store = store is None
        self._transforms = transforms or TransformStore(settings.featurizer.artifacts_dir).transform
        self._lock = threading.Lock()

    @property
    def store(self) -> Store:
        """The store of ``settings`` (opened once, on the first lineage asked for)."""
        with self._lock:
            if self._store is None:
                self._store = open_store(self.settings)
            return self._store

    def close(self) -> None:
        """Close the store if this reader opened it."""
        with self._lock:
            if self._owns_store and self._store is not None:
                self._store.close()
                self._store = None

    def explain(self, comment_id: str) -> dict[str, Any]:
        """The lineage of ``comment_id``; 404 when no such comment is stored, 422 when malformed."""
        check_comment_id(comment_id)
        store = self.store
        comment = store.get(COMMENTS, comment_id)
        if comment is None:
            raise NotFound(f"no comment with id {comment_id!r}", details={"id": comment_id})
        missing: dict[str, str] = {}

        def part(name: str, found: Part) -> dict[str, Any] | None:
            value, why = found
            if why is not None:
                missing[name] = why
            return value

        score = part("score", self._score(comment))
        model = part("model", self._model(score, missing))
        return {
            "id": comment_id,
            "comment": {k: v for k, v in comment.items() if k != self.prediction_field},
            "votes": self._votes(comment_id),
            "label": part("label", self._label(comment_id, model)),
            "transform": part("transform", self._transform(model, score)),
            "model": model,
            "score": score,
            "missing": missing,
        }

    # -- the parts -----------------------------------------------------------------------------

    def _votes(self, comment_id: str) -> dict[str, Any]:
        filters = {"item_id": comment_id, "task": self.task}
        total = self.store.count(VOTES, filters)
        listed = self.store.search(VOTES, filters=filters, limit=MAX_VOTES).items if total else []
        return {"task": self.task, "total": total, **vote_summary(listed), "listed": len(listed)}

    def _label(self, comment_id: str, model: Mapping[str, Any] | None) -> Part:
        candidates: dict[str, str] = {}
        if model and model.get("label_run"):
            candidates[model["label_run"]] = "the label run the model was trained on"
        latest = latest_run(self.store, self.task)
        if latest is not None:
            candidates.setdefault(latest["id"], "the latest finished label run")
        candidates.setdefault(live_run(self.task), "the live label (the votes so far)")
        for run_id, why in candidates.items():
            doc = self.store.get(LABELS, f"{run_id}:{comment_id}")
            if doc is not None:
                trained_on = model is not None and run_id == model.get("label_run")
                return label_part(doc, self._run(run_id), why, trained_on), None
        runs = ", ".join(candidates)
        return None, f"not labeled in {runs}: no votes yet, or no label run since it arrived"

    def _run(self, run_id: str) -> dict[str, Any] | None:
        try:
            run = get_run(self.store, run_id)
        except NotFound:
            return None  # the live label has no run record
        stats = run.get("stats") or {}
        return {
            "id": run["id"],
            "status": run.get("status"),
            "params": run.get("params"),
            "previous_run": run.get("previous_run"),
            "created_at": run.get("created_at"),
            "finished_at": run.get("finished_at"),
            "stats": {k: stats[k] for k in RUN_STATS if k in stats},
        }

    def _transform(self, model: Mapping[str, Any] | None, score: Mapping[str, Any] | None) -> Part:
        version = (model or {}).get("transform") or (score or {}).get("transform_version")
        if not version:
            return None, "no model version names a transform"
        try:
            transform = self._load_transform(version)
        except MlcycleError as exc:
            return None, f"transform {version} cannot be read: {exc.message}"
        return {**transform.describe(), "summary": describe_config(transform)}, None

    def _load_transform(self, version: str) -> Transform:
        try:
            serving = self.predictor.tracker.current().transform
        except MlcycleError:
            serving = None
        if serving is not None and serving.version == version:
            return serving  # already loaded by the service
        return self._transforms(version)

    def _model(self, score: Mapping[str, Any] | None, missing: dict[str, str]) -> Part:
        from mlcycle.inference.versions import read_version_metadata

        name = self.settings.trainer.model_name
        registry = ModelRegistry(self.settings, self.store)
        version = score["model_version"] if score else self._serving_version()
        if version is None:
            production = registry.production(name)
            if production is None:
                return None, f"model {name} has no serving nor production version yet"
            version = int(production["version"])
        doc: dict[str, Any] | None = None
        try:
            doc = registry.get(name, version)
        except NotFound as exc:
            missing["model.registry"] = exc.message
        metadata: dict[str, Any] | None = None
        try:
            metadata = read_version_metadata(self.settings, name, version)
        except MlcycleError as exc:
            missing["model.metadata"] = exc.message
        if doc is None and metadata is None:
            return None, f"model {name} version {version} is neither registered nor on disk"
        return model_part(name, version, doc or {}, metadata or {}), None

    def _score(self, comment: Mapping[str, Any]) -> Part:
        serving = self._serving_version()
        stored = comment.get(self.prediction_field)
        if isinstance(stored, dict) and _is_version(stored.get("model_version")):
            return {**stored, "source": "stream", "serving_model_version": serving}, None
        metadata = comment.get("metadata") or None
        try:
            scored = self.predictor.score(
                [str(comment.get("text") or "")], [metadata], unknown_fields="ignore"
            )
        except MlcycleError as exc:
            return None, f"not scored by the stream, and it cannot be scored now: {exc.message}"
        from mlcycle.inference.predictor import format_predictions

        (prediction,) = format_predictions(scored.model, scored.probabilities)
        return {
            **prediction,
            "source": "scored_now",
            "cached": scored.cache_hits > 0,
            "serving_model_version": scored.model.version,
        }, None

    def _serving_version(self) -> int | None:
        try:
            return self.predictor.tracker.current().version
        except MlcycleError:
            return None


def _is_version(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


# -- shaping the stored records -------------------------------------------------------------------


def vote_summary(votes: list[Mapping[str, Any]]) -> dict[str, Any]:
    """Counts per label and per voter kind, the mean label, and the votes themselves."""
    labels = [v.get("label") for v in votes]
    numeric = [float(x) for x in labels if isinstance(x, int | float) and not isinstance(x, bool)]
    return {
        "by_label": dict(sorted(Counter(str(x) for x in labels).items())),
        "by_voter": dict(Counter(voter_kind(str(v.get("annotator_id", ""))) for v in votes)),
        "mean_label": round(sum(numeric) / len(numeric), 6) if numeric else None,
        "items": [{k: x for k, x in v.items() if k not in ("id", "item_id")} for v in votes],
    }


def label_part(
    doc: Mapping[str, Any], run: Mapping[str, Any] | None, why: str, trained_on: bool
) -> dict[str, Any]:
    """A stored label and how it was derived, with its run's record (None for the live label)."""
    provenance = doc.get("provenance") or {}
    params = (run or {}).get("params") or {}
    return {
        "value": doc.get("label"),
        "task": doc.get("task"),
        "strategy": doc.get("method"),
        "probability": doc.get("probability"),
        "split": doc.get("split"),
        "run": doc.get("run"),
        "chosen_from": why,
        "trained_on": trained_on,
        "created_at": doc.get("created_at"),
        "derivation": {
            "method": doc.get("method"),
            "n_votes": doc.get("n_votes"),
            "posterior": doc.get("probabilities"),
            "threshold": params.get("threshold"),
            "crowd": list(provenance.get("crowd") or []),
            "humans": list(provenance.get("humans") or []),
            "labeling_functions": list(provenance.get("labeling_functions") or []),
        },
        "label_run": dict(run) if run is not None else None,
    }


def model_part(
    name: str, version: int, doc: Mapping[str, Any], metadata: Mapping[str, Any]
) -> dict[str, Any]:
    """A model version from its registry document and ``metadata.json`` (the latter first)."""

    def pick(key: str, registry_key: str | None = None) -> Any:
        value = metadata.get(key)
        return value if value is not None else doc.get(registry_key or key)

    metrics = pick("metrics") or {}
    return {
        "name": name,
        "version": version,
        "state": doc.get("state"),
        "created_at": pick("created_at"),
        "job": pick("job"),
        "label_run": pick("label_run"),
        "transform": pick("transform"),
        "classes": metadata.get("classes"),
        "threshold": metadata.get("threshold"),
        "selection_metric": metadata.get("selection_metric"),
        "metrics": {"dev": metrics.get("dev"), "test": metrics.get("test")},
        "hyperparameters": pick("hyperparameters", "params"),
        "training": metadata.get("training"),
        "data": pick("data"),
        "git_revision": metadata.get("git_revision"),
        "blessing": pick("blessing"),
    }


def describe_config(transform: Transform) -> str:
    """One line saying what a transform does."""
    config = transform.config
    parts = []
    if config.word.enabled:
        grams = "unigrams" if config.word.ngram_max == 1 else "uni+bigrams"
        parts.append(f"word {grams} ({config.word.mode}, {transform.word_dim} dims)")
    if config.char.enabled:
        parts.append(
            f"char {config.char.ngram_min}-{config.char.ngram_max}-grams "
            f"({transform.char_dim} buckets)"
        )
    fields = sorted(transform.metadata.fields)
    if fields:
        parts.append(f"metadata {', '.join(fields)} ({transform.metadata.dim} dims)")
    parts.append(f"{config.weighting} weights, {config.normalize} norm")
    return "; ".join(parts)


# -- the CLI's side: fetch and show -------------------------------------------------------------


def render_lineage(chain: Mapping[str, Any]) -> Any:
    """A rich Tree of a :class:`Lineage` answer, from the comment to the score."""
    from rich.markup import escape
    from rich.tree import Tree

    missing = chain.get("missing") or {}

    def absent(tree: Tree, title: str, name: str) -> None:
        tree.add(f"[bold]{title}[/]: [yellow]none[/] — {escape(missing.get(name, 'unknown'))}")

    comment = chain.get("comment") or {}
    tree = Tree(f"[bold]comment[/] {escape(str(chain.get('id')))}")
    text = str(comment.get("text") or "")
    tree.add(f"text: {escape(text[:300])}{'…' if len(text) > 300 else ''}")
    created = f", created {comment['created_at']}" if comment.get("created_at") else ""
    tree.add(f"source: {escape(str(comment.get('source')))}{created}")
    if comment.get("metadata"):
        tree.add(f"metadata: {escape(_pairs(comment['metadata']))}")
    votes = chain.get("votes") or {}
    tree.add(
        f"[bold]votes[/] ({escape(str(votes.get('task')))}): {votes.get('total', 0)}"
        + (f" — by label {_pairs(votes['by_label'])}" if votes.get("total") else "")
        + (f", mean {votes['mean_label']:.3f}" if votes.get("mean_label") is not None else "")
    )
    label = chain.get("label")
    if label is None:
        absent(tree, "label", "label")
    else:
        branch = tree.add(
            f"[bold]label[/] {label['value']} (p={label['probability']}) by "
            f"{escape(str(label['strategy']))}, run {escape(str(label['run']))}, "
            f"split {label['split']} — {escape(label['chosen_from'])}"
        )
        how = label["derivation"]
        branch.add(
            f"{how['n_votes']} votes, crowd {len(how['crowd'])}, humans {len(how['humans'])}; "
            f"posterior [{', '.join(f'{p:.3f}' for p in how['posterior'] or [])}]"
            + (f"; threshold {how['threshold']}" if how.get("threshold") is not None else "")
        )
        if how["labeling_functions"]:
            branch.add(f"labeling functions: {escape(', '.join(how['labeling_functions']))}")
    transform = chain.get("transform")
    if transform is None:
        absent(tree, "transform", "transform")
    else:
        tree.add(
            f"[bold]transform[/] {transform['version']} ({transform['dim']} dims): "
            f"{escape(transform['summary'])}"
        )
    model = chain.get("model")
    if model is None:
        absent(tree, "model", "model")
    else:
        _add_model(tree, model)
    score = chain.get("score")
    if score is None:
        absent(tree, "score", "score")
    else:
        where = "stored by the stream" if score["source"] == "stream" else "scored now"
        tree.add(
            f"[bold green]score[/] {score['score']:.4f} → label {escape(str(score['label']))} "
            f"(threshold {score.get('threshold')}), model v{score['model_version']}, {where}"
        )
    return tree


def _add_model(tree: Any, model: Mapping[str, Any]) -> None:
    from rich.markup import escape

    branch = tree.add(
        f"[bold]model[/] {escape(model['name'])} v{model['version']} "
        f"({model.get('state') or 'not in the registry'}), label run {model.get('label_run')}, "
        f"git {model.get('git_revision')}"
    )
    for split in ("dev", "test"):
        figures = (model.get("metrics") or {}).get(split)
        if figures:
            branch.add(f"{split}: {escape(_pairs(figures))}")
    if model.get("hyperparameters"):
        branch.add(f"hyper-parameters: {escape(_pairs(model['hyperparameters']))}")
    blessing = model.get("blessing") or {}
    if blessing:
        verdict = "blessed" if blessing.get("blessed") else "not blessed"
        branch.add(f"{verdict}: {escape(str(blessing.get('reason')))}")


def _pairs(values: Mapping[str, Any]) -> str:
    def show(value: Any) -> str:
        return f"{value:.4f}" if isinstance(value, float) else str(value)

    return ", ".join(f"{k}={show(v)}" for k, v in values.items())
