"""``mlcycle demo``: the main job on the embedded stack, stage by stage, with a summary.

The stages: get the dataset, start the stack, import it through Kafka, wait
until the indexer has stored it, query it back over REST, build labels with
the labeler (Dawid-Skene over crowd votes and labeling functions, with its
diagnostics page), fit a transform on the train split and featurize the
labeled items into shards, search and train a model, then deploy it (the
model server picks up the promoted version) and predict through the
inference service, while its streaming scorer scores every imported comment.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
from rich.console import Console
from rich.table import Table

from mlcycle.common.errors import Unavailable
from mlcycle.common.settings import Settings
from mlcycle.pipeline import (
    ImportResult,
    collector_stats,
    featurize_via_api,
    import_dataset,
    label_via_api,
    predict_via_api,
    production_version,
    single_request_latency,
    train_via_api,
    wait_until_indexed,
    wait_until_scored,
    wait_until_served,
)
from mlcycle.stack import LocalStack

T = TypeVar("T")
# Written for the demo, not taken from any dataset: one plainly civil, one plainly rude.
SAMPLE_TEXTS = [
    "Thanks for fixing the citation, the article reads much better now.",
    "You are a pathetic idiot and everyone here hates you.",
]
# The original talk's test accuracy (dense 88k bag-of-words MLP), for comparison.
TALK_ACCURACY = 0.708


def _timed(console: Console, name: str, timings: dict[str, float], fn: Callable[[], T]) -> T:
    console.rule(f"[bold]{name}")
    started = time.perf_counter()
    result = fn()
    timings[name] = time.perf_counter() - started
    console.print(f"[dim]{name} took {timings[name]:.1f} s[/]")
    return result


def _dataset(settings: Settings, data: list[Path], fmt: str) -> tuple[list[Path], str]:
    if data:
        return data, fmt
    from mlcycle.importers.download import download_wikidetox

    return download_wikidetox(settings.data_dir / "downloads"), "wikidetox"


def _sample_search(settings: Settings) -> int:
    """How many comments a full-text search for 'you' shows on its first page."""
    base = f"http://{settings.host}:{settings.collector_port}"
    response = httpx.get(f"{base}/v1/comments", params={"q": "you", "limit": 3}, timeout=10)
    response.raise_for_status()
    return len(response.json().get("items", []))


@dataclass(frozen=True)
class DemoRun:
    """What the stages produced, for the summary."""

    imported: ImportResult
    counts: dict[str, int]
    dead_lettered: dict[str, int]
    search_hits: int
    label_run: dict[str, Any]
    report_path: Path
    features: dict[str, Any]
    trained: dict[str, Any]
    served: dict[str, Any]


def run_demo(
    settings: Settings, *, data: list[Path], fmt: str, trials: int, console: Console
) -> int:
    """Run every stage that exists, print the summary table; 0 on success."""
    timings: dict[str, float] = {}
    paths, fmt = _timed(console, "dataset", timings, lambda: _dataset(settings, data, fmt))
    stack = LocalStack(settings, log_dir=settings.data_dir / "logs")
    try:
        resolved = _timed(console, "start stack", timings, stack.start)
        imported = _timed(
            console,
            "import",
            timings,
            lambda: import_dataset(resolved, fmt, paths, console=console),
        )
        console.print(imported.describe())
        _timed(console, "index", timings, lambda: wait_until_indexed(resolved))
        counts = dict(collector_stats(resolved).get("counts", {}))
        search_hits = _sample_search(resolved)
        label_run, report_path = _label_stage(resolved, console, timings)
        features = _timed(
            console, "featurize", timings, lambda: featurize_via_api(resolved, label_run["id"])
        )
        trained = _timed(
            console,
            "train",
            timings,
            lambda: train_via_api(resolved, label_run["id"], trials, console=console),
        )
        served = _serve_stage(resolved, console, timings, imported.comments)
        run = DemoRun(
            imported=imported,
            counts=counts,
            dead_lettered=_dead_lettered(resolved),
            search_hits=search_hits,
            label_run=label_run,
            report_path=report_path,
            features=features,
            trained=trained,
            served=served,
        )
    finally:
        stack.stop()
    _summary(console, settings, run, timings, trials)
    return 0


def _label_stage(settings: Settings, console: Console, timings: dict[str, float]) -> dict[str, Any]:
    """A Dawid-Skene label run on the labeler service, and its HTML diagnostics page."""
    from mlcycle.labeler.report import write_html

    params = {"strategy": "dawid_skene", "task": settings.label_task}
    run = _timed(
        console, "label", timings, lambda: label_via_api(settings, params, console=console)
    )
    path = settings.data_dir / "reports" / f"{run['id']}.html"
    write_html(run["report"], path, title=f"mlcycle label run {run['id']}")
    return run, path


def _serve_stage(
    settings: Settings, console: Console, timings: dict[str, float], comments: int
) -> dict[str, Any]:
    """Deploy: wait until the production version is served; predict; let the stream catch up."""
    version = production_version(settings)
    if version is None:
        raise Unavailable("no model version is in production: the demo has nothing to deploy")
    _timed(console, "deploy", timings, lambda: wait_until_served(settings, version))
    predictions = _timed(
        console, "predict", timings, lambda: predict_via_api(settings, SAMPLE_TEXTS)
    )
    for text, prediction in zip(SAMPLE_TEXTS, predictions, strict=True):
        console.print(f"{prediction['score']:.3f} {prediction['label']}  {text}")
    latency = single_request_latency(settings, SAMPLE_TEXTS + [f"comment {i}" for i in range(50)])
    scored = _timed(
        console, "stream", timings, lambda: wait_until_scored(settings, expected=comments)
    )
    return {"version": version, "predictions": predictions, "latency": latency, "scored": scored}


def _dead_lettered(settings: Settings) -> dict[str, int]:
    """Records in the collector's dead-letter topics (rejected by the indexer)."""
    from mlcycle.common.kafka.lag import topic_sizes

    topics = settings.topics
    dlqs = [topics.dlq(topics.comments_raw), topics.dlq(topics.votes_raw)]
    return topic_sizes(settings, dlqs)


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _summary(
    console: Console,
    settings: Settings,
    run: DemoRun,
    timings: dict[str, float],
    trials: int,
) -> None:
    imported = run.imported
    table = Table(title="mlcycle demo: what ran")
    table.add_column("what")
    table.add_column("figure", justify="right")
    table.add_row("comments sent to Kafka", f"{imported.comments:,}")
    table.add_row("votes sent to Kafka", f"{imported.votes:,}")
    table.add_row("rows skipped by the importer", f"{imported.skipped:,}")
    table.add_row("comments stored", f"{run.counts.get('comments', 0):,}")
    table.add_row("votes stored", f"{run.counts.get('votes', 0):,}")
    table.add_row("dead-lettered", f"{sum(run.dead_lettered.values()):,}")
    table.add_row("sample search 'you'", f"{run.search_hits} shown")
    stats = run.label_run["stats"]
    baseline = stats["baseline"]
    table.add_row("items labeled (dawid_skene + LFs)", f"{stats['labeled']:,}")
    table.add_row("label events published", f"{stats['events']:,}")
    table.add_row(
        f"agreement with {stats['gold_items']:,} gold items (5+ vote majority)",
        f"{_fmt(stats['accuracy_on_gold'])} (majority {_fmt(baseline['accuracy_on_gold'])})",
    )
    for split, balance in stats["class_balance"].items():
        table.add_row(f"{split} split by class", " / ".join(f"{n:,}" for n in balance.values()))
    transform, feature_set = run.features["transform"], run.features["feature_set"]
    table.add_row(
        "transform (fitted on train)", f"{transform['version']}, dim {transform['dim']:,}"
    )
    table.add_row(
        "feature rows (train / dev / test)",
        " / ".join(f"{feature_set['splits'][s]['rows']:,}" for s in ("train", "dev", "test")),
    )
    result = run.trained["result"]
    test = result.get("test") or {}
    table.add_row(
        f"trials searched (selected on dev {result['metric']})",
        f"{run.trained['progress'].get('trials_done', 0)}, best trial {result['best_trial']}",
    )
    table.add_row(f"test accuracy (the talk: {TALK_ACCURACY})", _fmt(test.get("accuracy")))
    table.add_row(
        "test ROC-AUC / weighted F1",
        f"{_fmt(test.get('roc_auc'))} / {_fmt(test.get('weighted_f1'))}",
    )
    model = result.get("model") or {}
    table.add_row(
        "model version", f"{model.get('name')} v{model.get('version')} ({model.get('state')})"
    )
    served = run.served
    table.add_row("served by the model server", f"{settings.model_name} v{served['version']}")
    for text, prediction in zip(SAMPLE_TEXTS, served["predictions"], strict=True):
        table.add_row(
            f"predict {text[:32]!r}…", f"{prediction['score']:.3f} → {prediction['label']}"
        )
    latency = served["latency"]
    table.add_row(
        "POST /v1/predict, one comment (p50 / p99)",
        f"{latency['p50_ms']:.1f} / {latency['p99_ms']:.1f} ms",
    )
    table.add_row("comments scored by the stream", f"{served['scored']:,} of {imported.comments:,}")
    for name, seconds in timings.items():
        table.add_row(f"time: {name}", f"{seconds:.1f} s")
    console.print(table)
    console.print(f"store: {settings.es_url or settings.store_path}")
    console.print(f"label diagnostics: {run.report_path}")
    console.print(f"training report: {result['report']}")
    console.print(f"model blessing: {model.get('reason')}")
