"""The CLI's view of a lineage answer: a tree from the comment to the score."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rich.markup import escape
from rich.tree import Tree

from mlcycle.inference.lineage.schema import LabelPart, Lineage, ModelPart

# Characters of the comment's text shown.
TEXT_SHOWN = 300
# Words of the score's explanation listed, the largest shares first.
WORDS_SHOWN = 5


def render_lineage(chain: Lineage | Mapping[str, Any]) -> Tree:
    """A rich Tree of a lineage answer (as read, or as ``GET /v1/lineage/{id}`` sent it)."""
    if not isinstance(chain, Lineage):
        chain = Lineage.model_validate(chain)

    def absent(title: str, name: str) -> None:
        why = chain.missing.get(name, "unknown")
        tree.add(f"[bold]{title}[/]: [yellow]none[/] — {escape(why)}")

    comment = chain.comment
    tree = Tree(f"[bold]comment[/] {escape(chain.id)}")
    text = comment.text
    tree.add(f"text: {escape(text[:TEXT_SHOWN])}{'…' if len(text) > TEXT_SHOWN else ''}")
    created = f", created {comment.created_at}" if comment.created_at else ""
    tree.add(f"source: {escape(str(comment.source))}{created}")
    if comment.metadata:
        tree.add(f"metadata: {escape(_pairs(comment.metadata))}")
    votes = chain.votes
    tree.add(
        f"[bold]votes[/] ({escape(votes.task)}): {votes.total}"
        + (f" — by label {_pairs(votes.by_label)}" if votes.total else "")
        + (f", mean {votes.mean_label:.3f}" if votes.mean_label is not None else "")
    )
    if chain.label is None:
        absent("label", "label")
    else:
        _add_label(tree, chain.label)
    if chain.transform is None:
        absent("transform", "transform")
    else:
        transform = chain.transform
        tree.add(
            f"[bold]transform[/] {transform.version} ({transform.dim} dims): "
            f"{escape(transform.summary)}"
        )
    if chain.model is None:
        absent("model", "model")
    else:
        _add_model(tree, chain.model)
    score = chain.score
    if score is None:
        absent("score", "score")
    else:
        where = "stored by the stream" if score.source == "stream" else "scored now"
        node = tree.add(
            f"[bold green]score[/] {score.score:.4f} → label {escape(score.label)} "
            f"(threshold {score.threshold}), model v{score.model_version}, {where}"
        )
        if score.spans:
            top = sorted(score.spans, key=lambda span: -abs(span.score))[:WORDS_SHOWN]
            shown = ", ".join(
                f"{escape(repr(span.text))} {span.score:+.3f} [{span.begin}:{span.end}]"
                for span in top
            )
            node.add(f"words that moved it most: {shown}")
        elif "score.spans" in chain.missing:
            absent("words", "score.spans")
    return tree


def _add_label(tree: Tree, label: LabelPart) -> None:
    branch = tree.add(
        f"[bold]label[/] {label.value} (p={label.probability}) by "
        f"{escape(str(label.strategy))}, run {escape(str(label.run))}, "
        f"split {label.split} — {escape(label.chosen_from)}"
    )
    how = label.derivation
    branch.add(
        f"{how.n_votes} votes, crowd {len(how.crowd)}, humans {len(how.humans)}; "
        f"posterior [{', '.join(f'{p:.3f}' for p in how.posterior or [])}]"
        + (f"; threshold {how.threshold}" if how.threshold is not None else "")
    )
    if how.labeling_functions:
        branch.add(f"labeling functions: {escape(', '.join(how.labeling_functions))}")


def _add_model(tree: Tree, model: ModelPart) -> None:
    branch = tree.add(
        f"[bold]model[/] {escape(model.name)} v{model.version} "
        f"({model.state or 'not in the registry'}), label run {model.label_run}, "
        f"git {model.git_revision}"
    )
    for split, figures in (("dev", model.metrics.dev), ("test", model.metrics.test)):
        if figures:
            branch.add(f"{split}: {escape(_pairs(figures))}")
    if model.hyperparameters:
        branch.add(f"hyper-parameters: {escape(_pairs(model.hyperparameters))}")
    blessing = model.blessing or {}
    if blessing:
        verdict = "blessed" if blessing.get("blessed") else "not blessed"
        branch.add(f"{verdict}: {escape(str(blessing.get('reason')))}")


def _pairs(values: Mapping[str, Any]) -> str:
    def show(value: Any) -> str:
        return f"{value:.4f}" if isinstance(value, float) else str(value)

    return ", ".join(f"{k}={show(v)}" for k, v in values.items())
