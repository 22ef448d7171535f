"""The report of a training job, for people: one self-contained HTML page and a terminal table.

The page shows what the search tried (every trial, its parameters, state and
dev metric), how the selected model did on dev and test (metrics, curves,
calibration, confusion, per class, per slice) and, optionally, how it compares
with the model in production. It carries its CSS and plots (PNG, base64)
inline and links to nothing, so it can be archived next to the model or
mailed as one file. Every string is escaped: trial errors, parameters and
slice values are user data.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape
from pathlib import Path
from typing import Any

import numpy as np
from rich.table import Table
from rich.text import Text

from mlcycle.common.files import write_atomically
from mlcycle.evaluation.classification import LOWER_IS_BETTER, Evaluation
from mlcycle.evaluation.curves import curves
from mlcycle.trainer import report_plots as plots
from mlcycle.trainer.report_plots import NONE, SplitResult, num, trial_metric

__all__ = ["SplitResult", "summary_table", "write_report"]

# Rows of the dev/test metrics table: label, Evaluation field, number format.
_METRIC_ROWS = (
    ("rows", "n", "int"),
    ("accuracy", "accuracy", "num"),
    ("ROC-AUC", "roc_auc", "num"),
    ("PR-AUC (average precision)", "pr_auc", "num"),
    ("macro F1", "macro_f1", "num"),
    ("weighted F1", "weighted_f1", "num"),
    ("decision threshold", "threshold", "num"),
    ("best threshold (positive F1)", "best_threshold", "num"),
    ("F1 at best threshold", "best_f1", "num"),
    ("calibration error (ECE)", "ece", "num"),
    ("log loss", "log_loss", "num"),
)


# --------------------------------------------------------------------------- terminal


def summary_table(
    trials: Sequence[Mapping[str, Any]], metric: str, dev: Evaluation, test: Evaluation | None
) -> Table:
    """One row per trial (the best one bold), and the selected model's figures as the caption."""
    best = _best_trial(trials, metric)
    table = Table(title=f"Trials (selected on dev {metric})", title_justify="left")
    table.add_column("#", justify="right")
    table.add_column("state")
    table.add_column("params", overflow="fold")
    table.add_column(f"dev {metric}", justify="right")
    table.add_column("seconds", justify="right")
    for trial in trials:
        # Text cells, not str: a str is parsed as rich markup, and params are user data.
        table.add_row(
            Text(_int(trial.get("number"))),
            Text(str(trial.get("state") or "")),
            Text(_params_text(trial.get("params"))),
            Text(num(trial_metric(trial, metric))),
            Text(num(trial.get("seconds"), 1)),
            style="bold" if best is not None and trial is best else None,
        )
    caption = f"selected model — dev: {_selected_text(dev)}"
    if test is not None:
        caption += f"; test: {_selected_text(test)}"
    table.caption = Text(caption)
    table.caption_justify = "left"
    return table


def _selected_text(evaluation: Evaluation) -> str:
    return (
        f"accuracy {num(evaluation.accuracy)}, ROC-AUC {num(evaluation.roc_auc)}, "
        f"weighted F1 {num(evaluation.weighted_f1)}"
    )


# --------------------------------------------------------------------------- HTML


def write_report(
    path: Path,
    *,
    title: str,
    summary: Mapping[str, Any],
    trials: Sequence[Mapping[str, Any]],
    metric: str,
    dev: SplitResult,
    test: SplitResult | None,
    learning_curves: Mapping[str, Sequence[float]],
    comparison: Mapping[str, Mapping[str, Any]] | None = None,
    behaviour: Mapping[str, Any] | None = None,
) -> Path:
    """Write the job's report as one self-contained HTML page at ``path`` and return the path.

    ``behaviour`` is the behavioural suite's summary
    (:meth:`~mlcycle.evaluation.behaviour.SuiteResult.summary`), when it was run.

    The file is replaced atomically, so a reader (or a crash) never sees half a page.
    """
    splits = [dev] if test is None else [dev, test]
    plotted = [(split, curves(split.probabilities, split.labels)) for split in splits]
    direction = "lower" if metric in LOWER_IS_BETTER else "higher"
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>{escape(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{escape(title)}</h1>",
        _key_value_table(summary),
        "<h2>Selected model</h2>",
        _metrics_table(splits),
        "<div class='plots'>",
        plots.figure(plots.roc_plot, plotted, alt="ROC curve", plot="roc"),
        plots.figure(plots.pr_plot, plotted, alt="precision-recall curve", plot="pr"),
        plots.figure(
            plots.calibration_plot, plotted, alt="reliability diagram", plot="calibration"
        ),
        "</div>",
        "<h3>Per class</h3>",
        _per_class_table(splits),
        "<h3>Confusion matrices</h3>",
        "<p class='note'>Rows are the true class, columns the predicted class.</p>",
        "<div class='row'>",
        *(_confusion_table(split) for split in splits),
        "</div>",
        "<h3>Slices</h3>",
        _slices_tables(splits),
        "<h2>Learning curves</h2>",
        plots.figure(plots.learning_plot, learning_curves, alt="learning curves", plot="learning")
        if any(len(series) for series in learning_curves.values())
        else "<p class='note'>No per-epoch figures were recorded.</p>",
        "<h2>Search</h2>",
        f"<p>{len(trials)} trial(s), selected on dev {escape(metric)} ({direction} is better).</p>",
        plots.figure(
            plots.trials_plot, (trials, metric), alt=f"dev {metric} per trial", plot="trials"
        )
        if trials
        else "",
        _trials_table(trials, metric),
    ]
    if behaviour:
        parts += ["<h2>Behavioural suite</h2>", _behaviour_table(behaviour)]
    if comparison:
        parts += ["<h2>Comparison</h2>", _comparison_table(comparison)]
    parts.append("</body></html>")
    path = Path(path)
    write_atomically(path, "\n".join(parts).encode("utf-8"))
    return path


_CSS = """
body{font-family:system-ui,sans-serif;margin:2rem auto;max-width:76rem;color:#222;padding:0 1rem}
h1{font-size:1.6rem}h2{font-size:1.25rem;margin-top:2rem;border-bottom:1px solid #ddd}
h3{font-size:1.05rem;margin-top:1.4rem}h4{font-size:.95rem;margin:.8rem 0 .2rem}
table{border-collapse:collapse;margin:.5rem 1.5rem .5rem 0;font-size:.9rem}
th,td{padding:.25rem .6rem;border-bottom:1px solid #eee;text-align:right;vertical-align:top}
th:first-child,td:first-child{text-align:left}th{background:#f5f5f5}
td.text{text-align:left;white-space:pre-wrap;max-width:36rem;font-family:monospace;font-size:.8rem}
tr.best td{font-weight:bold;background:#eef5ee}tr.failed td{color:#b33}
.plots,.row{display:flex;flex-wrap:wrap;gap:1rem;align-items:flex-start}
figure{margin:0}img{max-width:100%;height:auto}.note{color:#777}
"""


def _key_value_table(summary: Mapping[str, Any]) -> str:
    rows = "".join(
        f"<tr><td>{escape(str(key))}</td><td class='text'>{escape(_value_text(value))}</td></tr>"
        for key, value in summary.items()
    )
    return f"<table class='summary'>{rows}</table>"


def _metrics_table(splits: Sequence[SplitResult]) -> str:
    head = "<tr><th>metric</th>" + "".join(f"<th>{escape(s.name)}</th>" for s in splits) + "</tr>"
    rows = []
    for label, field, kind in _METRIC_ROWS:
        texts = [
            _int(value) if kind == "int" else num(value)
            for value in (getattr(split.evaluation, field) for split in splits)
        ]
        if field == "threshold" and splits[0].evaluation.n_classes > 2:
            texts = ["argmax"] * len(splits)
        cells = "".join(f"<td>{escape(text)}</td>" for text in texts)
        rows.append(f"<tr><td>{escape(label)}</td>{cells}</tr>")
    return f"<table>{head}{''.join(rows)}</table>"


def _per_class_table(splits: Sequence[SplitResult]) -> str:
    head = (
        "<tr><th>class</th>"
        + "".join(
            f"<th>{escape(s.name)} {what}</th>"
            for s in splits
            for what in ("support", "precision", "recall")
        )
        + "</tr>"
    )
    rows = []
    for index, name in enumerate(splits[0].evaluation.class_names):
        cells = []
        for split in splits:
            evaluation = split.evaluation
            cells += [
                _int(sum(evaluation.confusion[index])),
                num(evaluation.precision.get(name)),
                num(evaluation.recall.get(name)),
            ]
        rows.append(
            f"<tr><td>{escape(name)}</td>"
            + "".join(f"<td>{escape(c)}</td>" for c in cells)
            + "</tr>"
        )
    return f"<table>{head}{''.join(rows)}</table>"


def _confusion_table(split: SplitResult) -> str:
    names = split.evaluation.class_names
    head = (
        f"<tr><th>{escape(split.name)}: true \\ predicted</th>"
        + "".join(f"<th>{escape(name)}</th>" for name in names)
        + "</tr>"
    )
    rows = "".join(
        f"<tr><td>{escape(name)}</td>" + "".join(f"<td>{_int(c)}</td>" for c in row) + "</tr>"
        for name, row in zip(names, split.evaluation.confusion, strict=True)
    )
    return f"<table>{head}{rows}</table>"


def _slices_tables(splits: Sequence[SplitResult]) -> str:
    parts = []
    columns = ("n", "accuracy", "roc_auc", "weighted_f1", "positive_rate")
    for split in splits:
        for field, values in split.evaluation.slices.items():
            parts.append(f"<h4>{escape(split.name)} by {escape(field)}</h4>")
            if not values:
                parts.append("<p class='note'>No slice with enough rows.</p>")
                continue
            head = (
                f"<tr><th>{escape(field)}</th>"
                + "".join(f"<th>{c}</th>" for c in columns)
                + "</tr>"
            )
            rows = "".join(
                f"<tr><td>{escape(value)}</td>"
                + "".join(
                    f"<td>{escape(_int(m.get(c)) if c == 'n' else num(m.get(c)))}</td>"
                    for c in columns
                )
                + "</tr>"
                for value, m in values.items()
            )
            parts.append(f"<table>{head}{rows}</table>")
    if not parts:
        return "<p class='note'>No slice fields were given.</p>"
    return "".join(parts)


def _trials_table(trials: Sequence[Mapping[str, Any]], metric: str) -> str:
    if not trials:
        return "<p class='note'>No trial ran.</p>"
    best = _best_trial(trials, metric)
    param_names: dict[str, None] = {}  # union of the params, in order of first appearance
    for trial in trials:
        param_names.update(dict.fromkeys(str(k) for k in (trial.get("params") or {})))
    head = (
        f"<tr><th>#</th><th>state</th><th>dev {escape(metric)}</th>"
        + "".join(f"<th>{escape(name)}</th>" for name in param_names)
        + "<th>seconds</th><th>error</th></tr>"
    )
    rows = []
    for trial in trials:
        params = {str(k): v for k, v in (trial.get("params") or {}).items()}
        state = str(trial.get("state") or "")
        css = " class='best'" if best is not None and trial is best else ""
        css = " class='failed'" if state == "failed" else css
        cells = [_int(trial.get("number")), state, num(trial_metric(trial, metric))]
        cells += [_value_text(params[name]) if name in params else "" for name in param_names]
        cells.append(num(trial.get("seconds"), 1))
        rows.append(
            f"<tr{css}>"
            + "".join(f"<td>{escape(c)}</td>" for c in cells)
            + f"<td class='text'>{escape(str(trial.get('error') or ''))}</td></tr>"
        )
    return f"<table>{head}{''.join(rows)}</table>"


def _behaviour_table(behaviour: Mapping[str, Any]) -> str:
    """Pass rates per capability, worst first, under the overall rate and the suite's hash."""
    capabilities = behaviour.get("capabilities") or {}
    note = (
        f"<p>{num(behaviour.get('pass_rate'))} of {_int(behaviour.get('cases'))} cases passed; "
        f"worst capability {escape(str(behaviour.get('worst_capability')))} "
        f"({num(behaviour.get('worst_rate'))}). Suite sha256 "
        f"<code>{escape(str(behaviour.get('suite_digest', ''))[:12])}</code>. "
        "The suite is never trained on nor used to choose the threshold.</p>"
    )
    ordered = sorted(capabilities.items(), key=lambda item: (item[1].get("rate", 0), item[0]))
    rows = "".join(
        f"<tr><td>{escape(str(name))}</td><td>{_int(row.get('cases'))}</td>"
        f"<td>{_int(row.get('passed'))}</td><td>{num(row.get('rate'))}</td></tr>"
        for name, row in ordered
    )
    head = "<tr><th>capability</th><th>cases</th><th>passed</th><th>pass rate</th></tr>"
    return f"{note}<table>{head}{rows}</table>"


def _comparison_table(comparison: Mapping[str, Mapping[str, Any]]) -> str:
    columns: dict[str, None] = {}
    for row in comparison.values():
        columns.update(dict.fromkeys(str(k) for k in row))
    head = "<tr><th>model</th>" + "".join(f"<th>{escape(c)}</th>" for c in columns) + "</tr>"
    rows = "".join(
        f"<tr><td>{escape(str(name))}</td>"
        + "".join(
            f"<td>{escape(_value_text({str(k): v for k, v in row.items()}.get(c)))}</td>"
            for c in columns
        )
        + "</tr>"
        for name, row in comparison.items()
    )
    return f"<table>{head}{rows}</table>"


# --------------------------------------------------------------------------- helpers


def _best_trial(trials: Sequence[Mapping[str, Any]], metric: str) -> Mapping[str, Any] | None:
    """The complete trial with the best dev metric (the first one on ties), if any."""
    scored = [
        (value, trial)
        for trial in trials
        if trial.get("state") == "complete" and (value := trial_metric(trial, metric)) is not None
    ]
    if not scored:
        return None
    sign = 1.0 if metric in LOWER_IS_BETTER else -1.0
    return min(enumerate(scored), key=lambda item: (sign * item[1][0], item[0]))[1][1]


def _params_text(params: Mapping[str, Any] | None) -> str:
    return " ".join(f"{k}={_value_text(v)}" for k, v in (params or {}).items())


def _value_text(value: Any) -> str:
    """A value in a table cell: floats to 4 significant digits, None as a dash."""
    if value is None:
        return NONE
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float | np.floating):
        return f"{value:.4g}"
    return str(value)


def _int(value: Any) -> str:
    return NONE if value is None else f"{int(value):,}"
