"""``mlcycle demo``: the main job on the embedded stack, stage by stage, with a summary.

The stages: get the dataset, start the stack, import it through Kafka, wait
until the indexer has stored it, query it back over REST, label it twice on
the labeler (the talk's mean-threshold rule over the crowd votes, then
Dawid-Skene over crowd votes and labeling functions, which training uses) and
measure how often the two agree, fit a transform on the train split and
featurize the labeled items into shards, search and train a model, deploy it
(the model server picks up the promoted version), predict through the
inference service, let its streaming scorer score every imported comment,
send a batch of new comments to ``comments.raw`` through the collector and
read their scores back from ``scored.comments``, and load-test
``POST /v1/predict``. Every stage shows a progress bar and its time; the end is
a summary table and one HTML report.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import httpx
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from mlcycle.common.errors import Unavailable
from mlcycle.common.settings import Settings
from mlcycle.local.loadtest import Run, predict_load
from mlcycle.local.pipeline import (
    ImportResult,
    ScoredReader,
    collector_stats,
    featurize_via_api,
    import_dataset,
    label_via_api,
    labels_of_run,
    post_comments,
    predict_via_api,
    production_version,
    train_via_api,
    wait_until_indexed,
    wait_until_scored,
    wait_until_served,
)
from mlcycle.local.stack import LocalStack

T = TypeVar("T")
# Written for the demo, not taken from any dataset: one plainly civil, one plainly rude.
SAMPLE_TEXTS = [
    "Thanks for fixing the citation, the article reads much better now.",
    "You are a pathetic idiot and everyone here hates you.",
]
# The original talk's test accuracy (dense 88k bag-of-words MLP), for comparison.
TALK_ACCURACY = 0.708
# New comments for the streaming round trip, and the load test's shape.
NEW_COMMENTS = 200
LOAD_CLIENTS = 8
LOAD_REPEATS = 50
# Phrases the demo's new comments are made of (written for the demo, never dataset rows).
_TEMPLATES = (
    "Thanks for cleaning up {topic}, it reads much better now.",
    "I reverted your change to {topic} because the source does not say that.",
    "Could someone with a better source look at {topic}?",
    "Good catch on {topic}, I had missed that completely.",
    "Nobody wants your garbage edits to {topic}, get lost.",
    "Only a complete moron would rewrite {topic} like that.",
    "Stop vandalising {topic}, you pathetic troll.",
    "I moved {topic} to the talk page so we can discuss it first.",
)
_TOPICS = (
    "the citation in the second paragraph",
    "the infobox",
    "the early history section",
    "the list of references",
    "the merge proposal",
    "the photo caption",
    "the timeline",
    "the spelling in the lead",
)


def demo_text(n: int, tag: str) -> str:
    """The ``n``-th comment the demo writes; ``tag`` makes it new to the cache of every run."""
    template = _TEMPLATES[n % len(_TEMPLATES)]
    topic = _TOPICS[(n // len(_TEMPLATES)) % len(_TOPICS)]
    return f"{template.format(topic=topic)} ({tag}-{n})"


class StageBar:
    """One stage's progress bar: what it is doing and, when known, how far it is."""

    def __init__(self, progress: Progress, task: Any) -> None:
        self.progress = progress
        self.task = task

    def update(self, text: str, completed: float | None = None, total: float | None = None) -> None:
        """Show ``text``; move the bar to ``completed`` of ``total`` when given."""
        changes: dict[str, Any] = {"description": text}
        if total is not None:
            changes["total"] = total
        if completed is not None:
            changes["completed"] = completed
        self.progress.update(self.task, **changes)


class Stages:
    """Runs the demo's stages one after the other, each with its bar and its time."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.timings: dict[str, float] = {}

    def run(self, name: str, fn: Callable[[StageBar], T]) -> T:
        """Run ``fn(bar)`` under a progress bar named ``name``; record and print its time."""
        progress = Progress(
            SpinnerColumn(),
            TextColumn(f"[bold]{name}[/] {{task.description}}"),
            BarColumn(),
            TimeElapsedColumn(),
            console=self.console,
        )
        started = time.perf_counter()
        with progress:
            result = fn(StageBar(progress, progress.add_task("", total=None)))
        return self._done(name, started, result)

    def run_own(self, name: str, fn: Callable[[], T]) -> T:
        """Run ``fn()``, which draws its own progress bar; record and print its time."""
        return self._done(name, time.perf_counter(), fn())

    def _done(self, name: str, started: float, result: T) -> T:
        self.timings[name] = time.perf_counter() - started
        self.console.print(f"[dim]{name} took {self.timings[name]:.1f} s[/]")
        return result


@dataclass(frozen=True)
class DemoRun:
    """What the stages produced, for the summary and the report."""

    imported: ImportResult
    counts: dict[str, int]
    dead_lettered: dict[str, int]
    search_hits: int
    label_runs: dict[str, dict[str, Any]]  # strategy -> finished run
    label_reports: dict[str, Path]  # strategy -> diagnostics page
    agreement: dict[str, Any]
    features: dict[str, Any]
    trained: dict[str, Any]
    served: dict[str, Any]
    stream: dict[str, Any]
    load: Run
    load_seconds: float


def run_demo(
    settings: Settings,
    *,
    data: list[Path],
    fmt: str,
    trials: int,
    console: Console,
    load_seconds: float = 20.0,
) -> int:
    """Run every stage, print the summary table and write the HTML report; 0 on success."""
    from mlcycle.local.demo_report import print_summary, write_report

    started = time.perf_counter()
    stages = Stages(console)
    paths, fmt = stages.run("dataset", lambda bar: _dataset(settings, data, fmt, bar))
    stack = LocalStack(settings, log_dir=settings.data_dir / "logs")
    try:
        resolved = stages.run("start stack", lambda bar: _start(stack, bar))
        run = _stages(resolved, stages, paths, fmt, trials, load_seconds)
    finally:
        stack.stop()
    total_s = time.perf_counter() - started
    report = settings.data_dir / "reports" / f"demo-{datetime.now(UTC):%Y%m%dT%H%M%S}.html"
    print_summary(console, settings, run, stages.timings, total_s)
    write_report(report, settings, run, stages.timings, total_s)
    console.print(f"demo report: {report}")
    return 0


def _stages(
    settings: Settings,
    stages: Stages,
    paths: list[Path],
    fmt: str,
    trials: int,
    load_seconds: float,
) -> DemoRun:
    console = stages.console
    imported = stages.run_own(
        "import", lambda: import_dataset(settings, fmt, paths, console=console)
    )
    console.print(imported.describe())
    sent = imported.comments + imported.votes
    stages.run("index", lambda bar: _index(settings, sent, bar))
    counts = dict(collector_stats(settings).get("counts", {}))
    search_hits = _sample_search(settings)
    runs, reports, agreement = _label_stage(settings, stages)
    label_run = runs["dawid_skene"]["id"]
    features = stages.run(
        "featurize",
        lambda bar: _step(
            bar, "fit on train, build shards", featurize_via_api, settings, label_run
        ),
    )
    trained = stages.run_own(
        "train", lambda: train_via_api(settings, label_run, trials, console=console)
    )
    served = _serve_stage(settings, stages)
    stream = _stream_stage(settings, stages, imported.comments)
    load = stages.run("load test", lambda bar: _load_test(settings, load_seconds, bar))
    return DemoRun(
        imported=imported,
        counts=counts,
        dead_lettered=_dead_lettered(settings),
        search_hits=search_hits,
        label_runs=runs,
        label_reports=reports,
        agreement=agreement,
        features=features,
        trained=trained,
        served=served,
        stream=stream,
        load=load,
        load_seconds=load_seconds,
    )


def _step(bar: StageBar, text: str, fn: Callable[..., T], *args: Any) -> T:
    bar.update(text)
    return fn(*args)


def _dataset(
    settings: Settings, data: list[Path], fmt: str, bar: StageBar
) -> tuple[list[Path], str]:
    if data:
        bar.update(f"{len(data)} local file(s), format {fmt}")
        return data, fmt
    from mlcycle.importers.download import download_wikidetox

    def progress(name: str, done: int, total: int | None) -> None:
        bar.update(f"downloading {name}: {done / 1e6:,.1f} MB", done, total)

    bar.update("Wikipedia Talk Labels (cached after the first download)")
    return download_wikidetox(settings.data_dir / "downloads", progress=progress), "wikidetox"


def _start(stack: LocalStack, bar: StageBar) -> Settings:
    bar.update(f"broker, Redis and {len(stack.service_names)} services")
    return stack.start()


def _index(settings: Settings, sent: int, bar: StageBar) -> float:
    def progress(lag: int) -> None:
        bar.update(f"{sent - lag:,} of {sent:,} records stored", max(0, sent - lag), sent)

    return wait_until_indexed(settings, on_progress=progress)


def _sample_search(settings: Settings) -> int:
    """How many comments a full-text search for 'you' shows on its first page."""
    base = f"http://{settings.host}:{settings.collector_port}"
    response = httpx.get(f"{base}/v1/comments", params={"q": "you", "limit": 3}, timeout=10)
    response.raise_for_status()
    return len(response.json().get("items", []))


def _label_stage(
    settings: Settings, stages: Stages
) -> tuple[dict[str, dict[str, Any]], dict[str, Path], dict[str, Any]]:
    """The talk's rule, then Dawid-Skene (last, so it is the labeler's latest run); agreement.

    Each run is a label run on the labeler service, with its HTML diagnostics page.
    """
    from mlcycle.labeler.report import write_html

    strategies = {
        # The talk's rule counts crowd votes only: toxic when more than half said so.
        "mean_threshold": {"labeling_functions": []},
        "dawid_skene": {},
    }
    runs: dict[str, dict[str, Any]] = {}
    reports: dict[str, Path] = {}
    for strategy, extra in strategies.items():
        params = {"strategy": strategy, "task": settings.label_task, **extra}
        run = stages.run_own(
            f"label {strategy}",
            lambda params=params: label_via_api(settings, params, console=stages.console),
        )
        runs[strategy] = run
        reports[strategy] = settings.data_dir / "reports" / f"{run['id']}.html"
        write_html(
            run["report"], reports[strategy], title=f"mlcycle label run {run['id']} ({strategy})"
        )
    agreement = stages.run(
        "label agreement",
        lambda bar: _agreement(settings, runs["mean_threshold"], runs["dawid_skene"], bar),
    )
    return runs, reports, agreement


def _agreement(
    settings: Settings, first: dict[str, Any], second: dict[str, Any], bar: StageBar
) -> dict[str, Any]:
    """Both runs' labels over ``GET /v1/labels``, and how often they agree."""
    total = int(first["stats"]["labeled"]) + int(second["stats"]["labeled"])
    read = 0

    def progress(done: int) -> None:
        bar.update(f"{read + done:,} of {total:,} labels read", read + done, total)

    ours = labels_of_run(settings, first["id"], on_page=progress)
    read = len(ours)
    theirs = labels_of_run(settings, second["id"], on_page=progress)
    return label_agreement(ours, theirs)


def label_agreement(first: dict[str, int], second: dict[str, int]) -> dict[str, Any]:
    """Share of the items both labeled that got the same class, and Cohen's kappa.

    Kappa is the agreement beyond what the two label distributions would give
    by chance: (observed - expected) / (1 - expected); None when undefined
    (both put every item in one class).
    """
    items = sorted(first.keys() & second.keys())
    pairs = [(first[i], second[i]) for i in items]
    n = len(pairs)
    if n == 0:
        return {"items": 0, "agreement": None, "kappa": None, "pairs": {}}
    observed = sum(a == b for a, b in pairs) / n
    classes = sorted({c for pair in pairs for c in pair})
    expected = sum(
        (sum(a == c for a, _ in pairs) / n) * (sum(b == c for _, b in pairs) / n) for c in classes
    )
    kappa = None if expected >= 1.0 else (observed - expected) / (1.0 - expected)
    counts = {
        f"{a}/{b}": sum(pair == (a, b) for pair in pairs)
        for a, b in itertools.product(classes, classes)
    }
    return {
        "items": n,
        "only_first": len(first) - n,
        "only_second": len(second) - n,
        "agreement": observed,
        "kappa": kappa,
        "pairs": counts,
    }


def _serve_stage(settings: Settings, stages: Stages) -> dict[str, Any]:
    """Deploy: wait until the production version is served; predict the sample texts."""
    version = production_version(settings)
    if version is None:
        raise Unavailable("no model version is in production: the demo has nothing to deploy")
    stages.run(
        "deploy",
        lambda bar: _step(
            bar, f"waiting for v{version} on the model server", wait_until_served, settings, version
        ),
    )
    predictions = stages.run(
        "predict",
        lambda bar: _step(bar, "POST /v1/predict", predict_via_api, settings, SAMPLE_TEXTS),
    )
    for text, prediction in zip(SAMPLE_TEXTS, predictions, strict=True):
        stages.console.print(f"{prediction['score']:.3f} {prediction['label']}  {text}")
    return {"version": version, "predictions": predictions}


def _stream_stage(settings: Settings, stages: Stages, imported: int) -> dict[str, Any]:
    """The imported comments scored by the stream; then new comments there and back again."""

    def catch_up(bar: StageBar) -> int:
        def progress(scored: int) -> None:
            bar.update(f"{scored:,} of {imported:,} imported comments scored", scored, imported)

        return wait_until_scored(settings, expected=imported, on_progress=progress)

    scored = stages.run("stream imported", catch_up)
    round_trip = stages.run("stream new comments", lambda bar: _round_trip(settings, bar))
    return {"scored_imported": scored, **round_trip}


def _round_trip(settings: Settings, bar: StageBar) -> dict[str, Any]:
    """POST new comments to the collector; read their scores from ``scored.comments``."""
    tag = f"{datetime.now(UTC):%Y%m%dT%H%M%S}"
    comments = [
        {"id": f"demo-{tag}-{n}", "text": demo_text(n, tag), "source": "mlcycle-demo"}
        for n in range(NEW_COMMENTS)
    ]
    ids = {c["id"] for c in comments}
    reader = ScoredReader(settings)  # at the topic's end before anything is sent
    try:
        bar.update(f"POST /v1/comments: {len(comments)} new comments", 0, len(comments))
        started = time.perf_counter()
        accepted = post_comments(settings, comments)
        sent_s = time.perf_counter() - started

        def progress(matched: int) -> None:
            bar.update(f"{matched} of {accepted} scored back from Kafka", matched, accepted)

        found = reader.collect(ids, on_progress=progress)
    finally:
        reader.close()
    arrivals = sorted(arrived - started for _, arrived in found.values())
    versions = {str(record.get("model_version")) for record, _ in found.values()}
    return {
        "sent": accepted,
        "scored_back": len(found),
        "post_s": sent_s,
        "all_back_s": arrivals[-1] if arrivals else None,
        "first_back_s": arrivals[0] if arrivals else None,
        "model_versions": sorted(versions),
        "positive": sum(1 for record, _ in found.values() if str(record.get("label")) == "1"),
    }


def _load_test(settings: Settings, seconds: float, bar: StageBar) -> Run:
    """``LOAD_CLIENTS`` clients, one comment per request; half repeats (hits), half new."""
    tag = f"load-{datetime.now(UTC):%Y%m%dT%H%M%S}"
    repeats = [demo_text(n, tag + "-hot") for n in range(LOAD_REPEATS)]

    def tick(elapsed: float, done: int) -> None:
        bar.update(f"{LOAD_CLIENTS} clients, {done:,} requests", min(elapsed, seconds), seconds)

    bar.update(f"{LOAD_CLIENTS} clients: warming the cache with {LOAD_REPEATS} texts")
    return predict_load(
        settings,
        repeats=repeats,
        fresh=lambda i: demo_text(i, tag),
        clients=LOAD_CLIENTS,
        seconds=seconds,
        on_tick=tick,
    )


def _dead_lettered(settings: Settings) -> dict[str, int]:
    """Records in the collector's dead-letter topics (rejected by the indexer)."""
    from mlcycle.common.kafka.lag import topic_sizes

    topics = settings.topics
    dlqs = [topics.dlq(topics.comments_raw), topics.dlq(topics.votes_raw)]
    return topic_sizes(settings, dlqs)
