"""The parts of a lineage answer, each built from the records it is read from."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from mlcycle.contracts.comments import StoredVote
from mlcycle.contracts.label_runs import LabelRun
from mlcycle.contracts.labels import Label
from mlcycle.contracts.models import ModelVersion
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

# The label run record's figures worth repeating next to one label.
RUN_STATS = frozenset({"items", "labeled", "accuracy_on_gold", "converged", "iterations"})
# What a registry record adds to a version's metadata.json, when that is silent.
_REGISTRY_FIELDS = frozenset(
    {"created_at", "job", "label_run", "transform", "metrics", "params", "data", "blessing"}
)
# A vote's ids, which the answer already names.
_VOTE_IDS = frozenset({"id", "item_id"})


def votes_part(task: str, total: int, votes: Sequence[StoredVote]) -> VotesPart:
    """Counts per label and per voter kind, the mean label, and the votes themselves."""
    labels = [vote.label for vote in votes]
    return VotesPart(
        task=task,
        total=total,
        by_label=dict(sorted(Counter(str(x) for x in labels).items())),
        by_voter=dict(Counter(vote.voter_kind for vote in votes)),
        mean_label=round(sum(labels) / len(labels), 6) if labels else None,
        items=[VoteItem.model_validate(vote.model_dump(exclude=_VOTE_IDS)) for vote in votes],
        listed=len(votes),
    )


def run_part(run: LabelRun) -> LabelRunPart:
    """A label run's record, reduced to what explains one of its labels."""
    stats = {} if run.stats is None else run.stats.model_dump(include=RUN_STATS, exclude_unset=True)
    return LabelRunPart(
        id=run.id,
        status=run.status,
        params=run.params,
        previous_run=run.previous_run,
        created_at=run.created_at,
        finished_at=run.finished_at,
        stats=stats,
    )


def label_part(label: Label, run: LabelRun | None, why: str, trained_on: bool) -> LabelPart:
    """A stored label and how it was derived, with its run's record (None for the live label)."""
    params = run.params if run is not None else None
    provenance = label.provenance
    return LabelPart(
        value=label.label,
        task=label.task,
        strategy=label.method,
        probability=label.probability,
        split=label.split,
        run=label.run,
        chosen_from=why,
        trained_on=trained_on,
        created_at=label.created_at,
        derivation=Derivation(
            method=label.method,
            n_votes=label.n_votes,
            posterior=label.probabilities,
            threshold=params.threshold if params is not None else None,
            crowd=list(provenance.crowd),
            humans=list(provenance.humans),
            labeling_functions=list(provenance.labeling_functions),
        ),
        label_run=run_part(run) if run is not None else None,
    )


def model_part(
    name: str, version: int, registered: ModelVersion | None, metadata: VersionMetadata
) -> ModelPart:
    """A model version from ``metadata.json`` and, where it is silent, its registry record."""
    record = _registry_fields(registered)

    def pick(key: str, registry_key: str | None = None) -> Any:
        value = getattr(metadata, key)
        return value if value is not None else record.get(registry_key or key)

    metrics = pick("metrics") or {}
    return ModelPart(
        name=name,
        version=version,
        state=registered.state if registered is not None else None,
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


def _registry_fields(registered: ModelVersion | None) -> dict[str, Any]:
    """The registry record's fields as JSON types (none when the version is not registered)."""
    if registered is None:
        return {}
    return registered.model_dump(mode="json", include=_REGISTRY_FIELDS)


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
    if transform.embeddings is not None:
        parts.append(
            f"static embeddings {transform.embeddings.ident} ({transform.embeddings_dim} dims)"
        )
    parts.append(f"{config.weighting} weights, {config.normalize} norm")
    return "; ".join(parts)
