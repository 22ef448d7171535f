"""What ``mlcycle demo`` shows at the end: the summary table and one HTML report.

The same rows make the terminal table and the report's table. The report is a
single self-contained page (CSS and PNG plots inline, as the labeler's and the
trainer's reports are): the summary, a plot of the stage times, the load
test's latency distribution (cache hits and misses apart), how the two label
strategies agree, and links to the labeler's and the trainer's reports next
to it.
"""

from __future__ import annotations

import math
import os
from html import escape
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from mlcycle.clients.trainer import JobResult, ModelSummary, SplitFigures
from mlcycle.common.figures import inline_figure
from mlcycle.common.files import write_atomically
from mlcycle.common.settings import Settings
from mlcycle.contracts.label_runs import DEFAULT_STRATEGY
from mlcycle.local.demo_monitoring import MonitoringRun
from mlcycle.local.demo_records import DemoRun
from mlcycle.local.demo_rollouts_report import rollout_rows, rollout_section
from mlcycle.local.loadtest import HIT, MISS, Run
from mlcycle.local.monitor_report import monitoring_section

# The original talk's test accuracy (dense 88k bag-of-words MLP), for comparison.
TALK_ACCURACY = 0.708

_CSS = """
body{font-family:system-ui,sans-serif;margin:2rem auto;max-width:76rem;color:#222;padding:0 1rem}
h1{font-size:1.6rem}h2{font-size:1.25rem;margin-top:2rem;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.5rem 1.5rem .5rem 0;font-size:.9rem}
th,td{padding:.25rem .6rem;border-bottom:1px solid #eee;text-align:right;vertical-align:top}
th:first-child,td:first-child{text-align:left}th{background:#f5f5f5}
.plots{display:flex;flex-wrap:wrap;gap:1rem;align-items:flex-start}
figure{margin:0}img{max-width:100%;height:auto}.note{color:#777}
"""


def _fmt(value: float | None, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:.{digits}f}"


def judgement_rows(result: JobResult) -> list[tuple[str, str]]:
    """The served threshold and the behavioural suite's figures, when the job has them."""
    rows = []
    threshold = result.dev.threshold if result.dev is not None else None
    if threshold is not None:
        rows.append(("served threshold (for the job's stated traffic)", _fmt(threshold)))
    behaviour = result.behaviour
    if behaviour is not None:
        rows.append(
            (
                "behavioural suite (tests/behaviour)",
                f"{behaviour.pass_rate:.1%} of {behaviour.cases}; worst "
                f"{behaviour.worst_capability} {behaviour.worst_rate:.0%}",
            )
        )
    return rows


def summary_rows(
    settings: Settings, run: DemoRun, timings: dict[str, float], total_s: float
) -> list[tuple[str, str]]:
    """The summary as (what, figure) rows, in the order the stages ran.

    ``total_s`` is the whole demo, start to summary (stopping the stack included).
    """
    imported = run.imported
    rows = [
        ("comments sent to Kafka", f"{imported.comments:,}"),
        ("votes sent to Kafka", f"{imported.votes:,}"),
        ("rows skipped by the importer", f"{imported.skipped:,}"),
        ("comments stored", f"{run.counts.get('comments', 0):,}"),
        ("votes stored", f"{run.counts.get('votes', 0):,}"),
        ("dead-lettered", f"{sum(run.dead_lettered.values()):,}"),
        ("sample search 'you'", f"{run.search_hits} shown"),
    ]
    mean_threshold = run.labels["mean_threshold"].stats
    stats = run.labels[DEFAULT_STRATEGY].stats
    rows += [
        ("items labeled (mean_threshold, crowd only)", f"{mean_threshold.labeled:,}"),
        (f"items labeled ({DEFAULT_STRATEGY} + LFs)", f"{stats.labeled:,}"),
        ("label events published", f"{stats.events:,}"),
    ]
    agreement = run.agreement
    rows += [
        (
            f"label agreement (mean_threshold vs {DEFAULT_STRATEGY})",
            f"{_fmt(agreement.agreement)} on {agreement.items:,} items",
        ),
        ("label agreement, Cohen's kappa", _fmt(agreement.kappa)),
    ]
    # The gold items' labels are the majority of the same votes the strategies read, so
    # this is a consistency check, not an accuracy: a majority vote matches it by
    # construction. benchmarks/labels.py hides votes first for the fair comparison.
    rows.append(
        (
            f"{DEFAULT_STRATEGY} equal to the 5+-vote majority ({stats.gold_items:,} items)",
            _fmt(stats.accuracy_on_gold),
        )
    )
    for split, balance in stats.class_balance.items():
        rows.append((f"{split} split by class", " / ".join(f"{n:,}" for n in balance.values())))
    transform, feature_set = run.features.transform, run.features.feature_set
    rows += [
        ("transform (fitted on train)", f"{transform.version}, dim {transform.dim:,}"),
        (
            "feature rows (train / dev / test)",
            " / ".join(f"{feature_set.split(s).rows:,}" for s in ("train", "dev", "test")),
        ),
    ]
    result = run.trained.result
    test = result.test or SplitFigures()
    rows += [
        (
            f"trials searched (selected on dev {result.metric})",
            f"{run.trained.trials_done}, best trial {result.best_trial}",
        ),
        (f"test accuracy (the talk: {TALK_ACCURACY})", _fmt(test.accuracy)),
        ("test ROC-AUC / weighted F1", f"{_fmt(test.roc_auc)} / {_fmt(test.weighted_f1)}"),
        *judgement_rows(result),
        ("model version", _model_line(result.model)),
        ("served by the model server", f"{settings.trainer.model_name} v{run.served.version}"),
    ]
    for sample in run.served.samples:
        score, label = sample.prediction.score, sample.prediction.label
        rows.append((f"predict {sample.text[:32]!r}…", f"{score:.3f} → {label}"))
    stream = run.stream
    rows += [
        ("comments scored by the stream", f"{stream.scored_imported:,} of {imported.comments:,}"),
        ("new comments sent (POST /v1/comments)", f"{stream.sent:,}"),
        ("new comments scored back (scored.comments)", f"{stream.scored_back:,}"),
        (
            "new comments: all scored back after",
            f"{_fmt(stream.all_back_s, 2)} s (first {_fmt(stream.first_back_s, 2)} s)",
        ),
    ]
    load = run.load
    rows += [
        (
            f"load test: {run.load_seconds:g} s, single-comment POST /v1/predict",
            f"{len(load.latencies_ms):,} requests ({load.count(HIT):,} repeats, "
            f"{load.count(MISS):,} new)",
        ),
        ("load test throughput (requests/s)", f"{load.rps:,.1f}"),
        (
            "load test latency p50 / p99 (all)",
            f"{load.percentile(0.5):.1f} / {load.percentile(0.99):.1f} ms",
        ),
        (
            "load test latency p50 / p99 (repeats: cache hits)",
            f"{load.percentile(0.5, HIT):.1f} / {load.percentile(0.99, HIT):.1f} ms",
        ),
        (
            "load test latency p50 / p99 (new texts: misses)",
            f"{load.percentile(0.5, MISS):.1f} / {load.percentile(0.99, MISS):.1f} ms",
        ),
    ]
    rows += monitoring_rows(run.monitoring)
    if run.rollouts is not None:
        rows += rollout_rows(run.rollouts)
    rows += [(f"time: {name}", f"{seconds:.1f} s") for name, seconds in timings.items()]
    rows.append(("time: total", f"{total_s:.1f} s ({total_s / 60:.1f} min)"))
    return rows


def monitoring_rows(run: MonitoringRun) -> list[tuple[str, str]]:
    """The production loop: what each kind of traffic left in alarm, and quality."""
    rows = [
        (
            f"monitor: traffic sent, windows of {run.window_records:,}",
            " / ".join(f"{p.name} {p.windows}" for p in run.phases),
        ),
        (
            "monitor: toxic share, clean / drifted traffic",
            f"{run.toxic_share[0]:.0%} / {run.toxic_share[1]:.0%}",
        ),
        ("monitor: in alarm after the clean traffic", ", ".join(run.phases[0].in_alarm) or "none"),
        ("monitor: in alarm after the drifted batch", ", ".join(run.raised) or "none"),
    ]
    recovery = run.phases[-1]
    cleared = (
        f"yes, after {recovery.windows} clean window(s)"
        if run.cleared
        else f"no: {', '.join(recovery.in_alarm)} after {recovery.windows} window(s)"
    )
    rows.append(("monitor: every alarm cleared by clean traffic", cleared))
    receipt = run.receipt
    rows.append(
        (
            "moderators' decisions (joined / pending / duplicate)",
            f"{receipt.accepted:,} ({receipt.joined:,} / {receipt.pending:,} / "
            f"{receipt.duplicate:,})",
        )
    )
    judged = [w for w in run.quality if w.realized is not None]
    if judged:
        last = judged[-1]
        real, est = last.realized, last.estimated
        for figure in ("f1", "roc_auc"):
            rows.append(
                (
                    f"quality, last judged window: {figure} realized / estimated",
                    f"{_fmt(getattr(real, figure))} / "
                    f"{_fmt(getattr(est, figure) if est is not None else None)}",
                )
            )
    return rows


def _model_line(model: ModelSummary | None) -> str:
    if model is None:
        return "None vNone (None)"
    return f"{model.name} v{model.version} ({model.state})"


def print_summary(
    console: Console, settings: Settings, run: DemoRun, timings: dict[str, float], total_s: float
) -> None:
    """The summary table and where everything was written."""
    table = Table(title="mlcycle demo: what ran")
    table.add_column("what")
    table.add_column("figure", justify="right")
    for what, figure in summary_rows(settings, run, timings, total_s):
        table.add_row(Text(what), Text(figure))
    console.print(table)
    result = run.trained.result
    console.print(f"store: {settings.store.es_url or settings.store.sqlite_path}")
    for strategy, outcome in run.labels.items():
        console.print(f"label diagnostics ({strategy}): {outcome.report}")
    console.print(f"training report: {result.report}")
    console.print(f"model blessing: {result.model.reason if result.model else None}")


def write_report(
    path: Path, settings: Settings, run: DemoRun, timings: dict[str, float], total_s: float
) -> Path:
    """The demo's HTML page at ``path``, replaced atomically; returns the path."""
    rows = summary_rows(settings, run, timings, total_s)
    links = [
        (f"label run {outcome.id} ({strategy}): diagnostics", outcome.report)
        for strategy, outcome in run.labels.items()
    ]
    training = run.trained.result.report
    if training:
        links.append((f"training job {run.trained.job_id}: report", Path(training)))
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>mlcycle demo</title><style>{_CSS}</style></head><body>",
        "<h1>mlcycle demo</h1>",
        "<h2>Reports</h2><ul>",
        *(
            f"<li><a href='{escape(_href(target, path.parent))}'>{escape(label)}</a></li>"
            for label, target in links
        ),
        "</ul>",
        "<h2>Summary</h2>",
        _table(("what", "figure"), rows),
        "<h2>Where the time went</h2>",
        inline_figure(_stage_plot, timings, alt="seconds per stage", plot="stages", size=(7.5, 5)),
        "<h2>Load test</h2>",
        f"<p>{LOAD_NOTE}</p>",
        inline_figure(_latency_plot, run.load, alt="latency distribution", plot="latency"),
        "<h2>Watching the live model</h2>",
        f"<p>{MONITOR_NOTE}</p>",
        *monitoring_section(run.monitoring.view, heading="h3"),
        *(
            ["<h2>Rolling out a retrained model</h2>", *rollout_section(run.rollouts)]
            if run.rollouts is not None
            else []
        ),
        "<h2>Label strategies</h2>",
        "<p class='note'>Items labeled by both runs, by class: "
        f"mean_threshold / {DEFAULT_STRATEGY}.</p>",
        _table(
            (f"mean_threshold / {DEFAULT_STRATEGY}", "items"),
            [(pair, f"{n:,}") for pair, n in run.agreement.pairs.items()],
        ),
        "</body></html>",
    ]
    write_atomically(path, "\n".join(parts).encode("utf-8"))
    return path


MONITOR_NOTE = (
    "After the load test: test-split comments (the reference's population) through "
    "POST /v1/predict a monitor window at a time, clean, then a generated drifted batch "
    "(a burst of new words, a shifted toxic share), then clean again until every alarm "
    "cleared; then moderators' decisions on a sample of them (their labels) through "
    "POST /v1/feedback."
)
LOAD_NOTE = (
    "Closed loop: each client sends its next single-comment POST /v1/predict when the "
    "previous one answered. Even requests repeat one of a few texts scored before the "
    "run (the Redis cache answers: hits); odd ones send a text never seen before "
    "(featurized and scored by the model server: misses). The load generator shares "
    "the machine with every service."
)


def _href(target: Path, base: Path) -> str:
    """A link to ``target`` relative to the report's folder, so the folder can move."""
    try:
        return Path(os.path.relpath(target, base)).as_posix()
    except ValueError:  # another drive
        return target.resolve().as_uri()


def _table(header: tuple[str, str], rows: list[tuple[str, str]]) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join(f"<tr><td>{escape(a)}</td><td>{escape(b)}</td></tr>" for a, b in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _stage_plot(fig: Any, timings: dict[str, float]) -> None:
    ax = fig.add_subplot()
    names = list(timings)[::-1]
    ax.barh(names, [timings[n] for n in names], color="#4c78a8")
    ax.set_xlabel("seconds")
    ax.set_title(f"stages: {sum(timings.values()):.0f} s in all")
    for y, name in enumerate(names):
        ax.annotate(
            f" {timings[name]:.1f}", (timings[name], y), va="center", fontsize=8, color="#555"
        )


def _latency_plot(fig: Any, load: Run) -> None:
    import numpy as np

    ax = fig.add_subplot()
    values = [v for v in load.latencies_ms if v > 0]
    if not values:
        ax.text(0.5, 0.5, "no requests", ha="center", transform=ax.transAxes)
        return
    bins = np.geomspace(min(values), max(values) * 1.01, 50)
    for outcome, colour, label in (
        (HIT, "#54a24b", "repeats (hits)"),
        (MISS, "#e45756", "new (misses)"),
    ):
        mine = [v for v, o in zip(load.latencies_ms, load.outcomes, strict=True) if o == outcome]
        if mine:
            ax.hist(mine, bins=bins, alpha=0.6, color=colour, label=f"{label}: {len(mine):,}")
    for q, style in ((0.5, "--"), (0.99, ":")):
        ax.axvline(
            load.percentile(q), color="#333", linestyle=style, label=f"p{round(q * 100)} all"
        )
    ax.set_xscale("log")
    ax.set_xlabel("latency (ms, log scale)")
    ax.set_ylabel("requests")
    ax.set_title(f"{len(load.latencies_ms):,} requests, {load.rps:,.0f} requests/s")
    ax.legend()
