"""The plots of a training job's report: ROC, precision-recall, reliability, trials, learning.

Each draws on a matplotlib figure it is given (:func:`figure` renders it to an
inline PNG); the report module lays the figures out in the page.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from mlcycle.common.figures import inline_figure
from mlcycle.evaluation.classification import LOWER_IS_BETTER, Evaluation

NONE = "–"
_COLORS = {"dev": "#4c78a8", "test": "#e45756"}
_STATE_STYLE = {  # marker, colour, label of a trial state in the trials plot
    "complete": ("o", "#4c78a8", "complete"),
    "pruned": ("v", "#aaaaaa", "pruned"),
    "failed": ("x", "#e45756", "failed (no metric)"),
}


@dataclass(frozen=True)
class SplitResult:
    """The selected model's probabilities on one split, with their evaluation."""

    name: str  # "dev" or "test"
    probabilities: np.ndarray  # (n, K)
    labels: np.ndarray  # (n,)
    evaluation: Evaluation


def figure(draw: Callable[[Any, Any], None], data: Any, *, alt: str, plot: str) -> str:
    return inline_figure(draw, data, alt=alt, plot=plot, size=(5.6, 4.2), dpi=100)


def roc_plot(fig: Any, plotted: Sequence[tuple[SplitResult, Any]]) -> None:
    ax = fig.subplots()
    ax.plot([0, 1], [0, 1], linestyle="--", color="#999999", label="chance")
    for split, points in plotted:
        if points.roc_fpr:
            label = f"{split.name} (AUC {num(split.evaluation.roc_auc)})"
            ax.plot(points.roc_fpr, points.roc_tpr, color=_color(split.name), label=label)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title("ROC" + _micro_note(plotted))
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.legend(loc="lower right")


def pr_plot(fig: Any, plotted: Sequence[tuple[SplitResult, Any]]) -> None:
    ax = fig.subplots()
    for split, points in plotted:
        if points.pr_recall:
            label = f"{split.name} (AP {num(split.evaluation.pr_auc)})"
            ax.step(
                points.pr_recall,
                points.pr_precision,
                where="post",
                color=_color(split.name),
                label=label,
            )
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_title("Precision-recall" + _micro_note(plotted))
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="lower left")


def calibration_plot(fig: Any, plotted: Sequence[tuple[SplitResult, Any]]) -> None:
    ax = fig.subplots()
    ax.plot([0, 1], [0, 1], linestyle="--", color="#999999", label="perfect calibration")
    for split, points in plotted:
        label = f"{split.name} (ECE {num(split.evaluation.ece)})"
        ax.plot(
            points.calibration_confidence,
            points.calibration_accuracy,
            marker="o",
            color=_color(split.name),
            label=label,
        )
    ax.set_xlabel("confidence (top probability)")
    ax.set_ylabel("accuracy")
    ax.set_title("Reliability")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.legend(loc="upper left")


def trials_plot(fig: Any, data: tuple[Sequence[Mapping[str, Any]], str]) -> None:
    from matplotlib.ticker import MaxNLocator

    trials, metric = data
    fig.set_size_inches(8.0, 4.2)
    ax = fig.subplots()
    scored = [
        (
            index if trial.get("number") is None else trial["number"],
            trial_metric(trial, metric),
            str(trial.get("state")),
        )
        for index, trial in enumerate(trials)
    ]
    values = [v for _, v, _ in scored if v is not None]
    floor = min(values) if values else 0.0
    for state, (marker, color, label) in _STATE_STYLE.items():
        # Failed trials have no metric: they sit on the lowest value, as crosses.
        points = [
            (n, floor if v is None else v)
            for n, v, s in scored
            if s == state and (v is not None or state == "failed")
        ]
        if points:
            xs, ys = zip(*points, strict=True)
            ax.scatter(xs, ys, marker=marker, color=color, label=label, zorder=3)
    complete = [(n, v) for n, v, s in scored if s == "complete" and v is not None]
    if complete:
        accumulate = np.minimum if metric in LOWER_IS_BETTER else np.maximum
        best_so_far = accumulate.accumulate(np.array([v for _, v in complete], dtype=float))
        numbers = [n for n, _ in complete]
        ax.step(numbers, best_so_far, where="post", color="#54a24b", label="best so far")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("trial")
    ax.set_ylabel(f"dev {metric}")
    ax.set_title(f"Search: dev {metric} per trial")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="best")


def learning_plot(fig: Any, learning_curves: Mapping[str, Sequence[float]]) -> None:
    from matplotlib.ticker import MaxNLocator

    # Losses and scores live on different scales: losses left, everything else right.
    series = {str(k): [float(x) for x in v] for k, v in learning_curves.items() if len(v)}
    losses = {k: v for k, v in series.items() if "loss" in k}
    others = {k: v for k, v in series.items() if "loss" not in k}
    fig.set_size_inches(10.0 if losses and others else 5.6, 4.0)
    groups = [(group, ylabel) for group, ylabel in ((losses, "loss"), (others, "score")) if group]
    axes = fig.subplots(1, len(groups), squeeze=False)[0]
    for ax, (group, ylabel) in zip(axes, groups, strict=True):
        for name, values in group.items():
            epochs = range(1, len(values) + 1)
            ax.plot(epochs, values, marker="o" if len(values) <= 30 else None, label=name)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        ax.legend(loc="best")


def _color(name: str) -> str:
    return _COLORS.get(name, "#72b7b2")


def _micro_note(plotted: Sequence[tuple[SplitResult, Any]]) -> str:
    multi = plotted and plotted[0][0].evaluation.n_classes > 2
    return " (micro-averaged one-vs-rest)" if multi else ""


def trial_metric(trial: Mapping[str, Any], metric: str) -> float | None:
    """A trial's dev ``metric`` as a number, or None (missing, not a number, NaN)."""
    value = (trial.get("dev") or {}).get(metric)
    if value is None:
        return None
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(value) else value


def num(value: Any, digits: int = 4) -> str:
    """A number in a table or legend: ``digits`` decimals, None as a dash."""
    return NONE if value is None else f"{float(value):.{digits}f}"
