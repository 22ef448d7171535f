"""The parts of a lineage answer, each built from the records it is read from."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from mlcycle.featurization.transform import Transform
from mlcycle.inference.lineage.schema import (
    Derivation,
    LabelPart,
    LabelRunPart,
    ModelPart,
    SplitMetrics,
    TransformPart,
    VoteItem,
    VotesPart,
)
from mlcycle.inference.metadata import VersionMetadata
from mlcycle.labeler.votes import voter_kind

# The label run record's figures worth repeating next to one label.
RUN_STATS = ("items", "labeled", "accuracy_on_gold", "converged", "iterations")


def votes_part(task: str, total: int, votes: Sequence[Mapping[str, Any]]) -> VotesPart:
    """Counts per label and per voter kind, the mean label, and the votes themselves."""
    labels = [v.get("label") for v in votes]
    numeric = [float(x) for x in labels if isinstance(x, int | float) and not isinstance(x, bool)]
    return VotesPart(
        task=task,
        total=total,
        by_label=dict(sorted(Counter(str(x) for x in labels).items())),
        by_voter=dict(Counter(voter_kind(str(v.get("annotator_id", ""))) for v in votes)),
        mean_label=round(sum(numeric) / len(numeric), 6) if numeric else None,
        items=[
            VoteItem.model_validate({k: x for k, x in v.items() if k not in ("id", "item_id")})
            for v in votes
        ],
        listed=len(votes),
    )


def run_part(run: Mapping[str, Any]) -> LabelRunPart:
    """A label run's record, reduced to what explains one of its labels."""
    stats = run.get("stats") or {}
    return LabelRunPart(
        id=run["id"],
        status=run.get("status"),
        params=run.get("params"),
        previous_run=run.get("previous_run"),
        created_at=run.get("created_at"),
        finished_at=run.get("finished_at"),
        stats={k: stats[k] for k in RUN_STATS if k in stats},
    )


def label_part(
    label: Mapping[str, Any], run: LabelRunPart | None, why: str, trained_on: bool
) -> LabelPart:
    """A stored label and how it was derived, with its run's record (None for the live label)."""
    provenance = label.get("provenance") or {}
    params = (run.params if run is not None else None) or {}
    return LabelPart(
        value=label.get("label"),
        task=label.get("task"),
        strategy=label.get("method"),
        probability=label.get("probability"),
        split=label.get("split"),
        run=label.get("run"),
        chosen_from=why,
        trained_on=trained_on,
        created_at=label.get("created_at"),
        derivation=Derivation(
            method=label.get("method"),
            n_votes=label.get("n_votes"),
            posterior=label.get("probabilities"),
            threshold=params.get("threshold"),
            crowd=list(provenance.get("crowd") or []),
            humans=list(provenance.get("humans") or []),
            labeling_functions=list(provenance.get("labeling_functions") or []),
        ),
        label_run=run,
    )


def model_part(
    name: str, version: int, registered: Mapping[str, Any], metadata: VersionMetadata
) -> ModelPart:
    """A model version from its registry record and ``metadata.json`` (the latter first)."""

    def pick(key: str, registry_key: str | None = None) -> Any:
        value = getattr(metadata, key)
        return value if value is not None else registered.get(registry_key or key)

    metrics = pick("metrics") or {}
    return ModelPart(
        name=name,
        version=version,
        state=registered.get("state"),
        created_at=pick("created_at"),
        job=pick("job"),
        label_run=pick("label_run"),
        transform=pick("transform"),
        classes=metadata.classes,
        threshold=metadata.threshold,
        selection_metric=metadata.selection_metric,
        metrics=SplitMetrics(dev=metrics.get("dev"), test=metrics.get("test")),
        hyperparameters=pick("hyperparameters", "params"),
        training=metadata.training,
        data=pick("data"),
        git_revision=metadata.git_revision,
        blessing=pick("blessing"),
    )


def transform_part(transform: Transform) -> TransformPart:
    """A transform's description and a line saying what it does."""
    description = transform.description()
    return TransformPart(**dict(description), summary=describe_config(transform))


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
