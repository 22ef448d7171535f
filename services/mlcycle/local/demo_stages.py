"""The stages of ``mlcycle demo`` once the stack is up, each under its own progress bar.

Every stage talks to the services through their clients (and to Kafka for the
topics), and returns a typed record of :mod:`mlcycle.local.demo_records`.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from mlcycle.clients import ServiceClients
from mlcycle.common.errors import Unavailable
from mlcycle.common.settings import KafkaSettings, Settings, settings_to_env
from mlcycle.contracts.label_runs import DEFAULT_STRATEGY, RunParams
from mlcycle.local.demo_records import (
    Agreement,
    LabelOutcome,
    SamplePrediction,
    SearchLimits,
    Served,
    StreamFigures,
    Trained,
    label_agreement,
)
from mlcycle.local.loadtest import Run, predict_load
from mlcycle.local.pipeline import (
    ScoredReader,
    label_via_api,
    labels_of_run,
    train_via_api,
    wait_until_indexed,
    wait_until_scored,
    wait_until_served,
)

T = TypeVar("T")
# Written for the demo, not taken from any dataset: one plainly civil, one plainly rude.
SAMPLE_TEXTS = [
    "Thanks for fixing the citation, the article reads much better now.",
    "You are a pathetic idiot and everyone here hates you.",
]
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
        self.progress.update(self.task, description=text, completed=completed, total=total)


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


def step(bar: StageBar, text: str, fn: Callable[..., T], *args: Any) -> T:
    """Show ``text``, then run ``fn(*args)``: a stage of one call."""
    bar.update(text)
    return fn(*args)


def index(settings: Settings, sent: int, bar: StageBar) -> float:
    """Wait until the indexer has stored the ``sent`` records."""

    def progress(lag: int) -> None:
        bar.update(f"{sent - lag:,} of {sent:,} records stored", max(0, sent - lag), sent)

    return wait_until_indexed(
        settings.kafka, settings.collector.indexer_group_id, on_progress=progress
    )


def sample_search(clients: ServiceClients) -> int:
    """How many comments a full-text search for 'you' shows on its first page."""
    return len(clients.collector.search("you", limit=3).items)


def label_runs(
    settings: Settings, clients: ServiceClients, stages: Stages
) -> tuple[dict[str, LabelOutcome], Agreement]:
    """Each strategy's run on the labeler, with its HTML diagnostics page; then their agreement."""
    from mlcycle.labeler.report import write_html

    task = settings.labeler.task
    # The talk's rule counts crowd votes only (toxic when more than half said so); the
    # default strategy also hears the labeling functions. It runs last, so it is the
    # labeler's latest run, the one training uses.
    strategies = {
        "mean_threshold": RunParams(strategy="mean_threshold", task=task, labeling_functions=[]),
        DEFAULT_STRATEGY: RunParams(strategy=DEFAULT_STRATEGY, task=task),
    }
    outcomes: dict[str, LabelOutcome] = {}
    for strategy, params in strategies.items():
        run = stages.run_own(
            f"label {strategy}",
            lambda params=params: label_via_api(clients.labeler, params, console=stages.console),
        )
        if run.stats is None:
            raise Unavailable(f"label run {run.id} succeeded without its figures")
        page = settings.data_dir / "reports" / f"{run.id}.html"
        write_html(run.report or {}, page, title=f"mlcycle label run {run.id} ({strategy})")
        outcomes[strategy] = LabelOutcome(id=run.id, stats=run.stats, report=page)
    talk, default = outcomes["mean_threshold"], outcomes[DEFAULT_STRATEGY]
    agreement = stages.run("label agreement", lambda bar: _agreement(clients, talk, default, bar))
    return outcomes, agreement


def _agreement(
    clients: ServiceClients, first: LabelOutcome, second: LabelOutcome, bar: StageBar
) -> Agreement:
    """Both runs' labels over ``GET /v1/labels``, and how often they agree."""
    total = first.stats.labeled + second.stats.labeled
    read = 0

    def progress(done: int) -> None:
        bar.update(f"{read + done:,} of {total:,} labels read", read + done, total)

    ours = labels_of_run(clients.labeler, first.id, on_page=progress)
    read = len(ours)
    theirs = labels_of_run(clients.labeler, second.id, on_page=progress)
    return label_agreement(ours, theirs)


def ensure_embeddings(settings: Settings, stages: Stages) -> None:
    """Distill the static embeddings before training when the default search uses them.

    The trainer would make them itself; as a stage of its own, the demo shows what the
    minute goes on, and a second demo on the same data directory skips it. It runs as
    ``mlcycle embeddings distill`` in a child process, so TensorFlow's start-up chatter
    stays out of the demo's output and its memory is freed when it is done.
    """
    from mlcycle.contracts.training import SearchSpace
    from mlcycle.trainer.config import variant_config

    configs = [variant_config(v, None) for v in SearchSpace().features]
    if any(c is not None and c.embeddings.enabled for c in configs):
        stages.run(
            "embeddings",
            lambda bar: step(
                bar,
                "static embeddings from the pre-trained MiniLM (once per data directory)",
                _distill,
                settings,
            ),
        )


def _distill(settings: Settings) -> str:
    argv = [sys.executable, "-m", "mlcycle", "embeddings", "distill", "--quiet"]
    env = {**os.environ, **settings_to_env(settings)}
    done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-5:])
        raise Unavailable(f"`mlcycle embeddings distill` failed:\n{tail}")
    return done.stdout.strip()


def train(
    clients: ServiceClients, label_run: str, limits: SearchLimits, console: Console
) -> Trained:
    """Search within ``limits``, evaluate, bless and export a model on the trainer; its result."""
    job = train_via_api(
        clients.trainer, label_run, limits.trials, console=console, time_budget_s=limits.budget_s
    )
    if job.result is None:
        raise Unavailable(f"training job {job.id} succeeded without a result")
    return Trained(job_id=job.id, trials_done=job.progress.trials_done, result=job.result)


def serve(settings: Settings, clients: ServiceClients, stages: Stages) -> Served:
    """Deploy: wait until the production version is served; predict the sample texts."""
    version = clients.trainer.production_version(settings.trainer.model_name)
    if version is None:
        raise Unavailable("no model version is in production: the demo has nothing to deploy")
    stages.run(
        "deploy",
        lambda bar: step(
            bar, f"waiting for v{version} on the model server", wait_until_served, clients, version
        ),
    )
    predictions = stages.run(
        "predict",
        lambda bar: step(bar, "POST /v1/predict", clients.inference.predict, SAMPLE_TEXTS),
    )
    for text, prediction in zip(SAMPLE_TEXTS, predictions, strict=True):
        stages.console.print(f"{prediction.score:.3f} {prediction.label}  {text}")
    samples = [SamplePrediction(t, p) for t, p in zip(SAMPLE_TEXTS, predictions, strict=True)]
    return Served(version=version, samples=samples)


def stream(
    settings: Settings, clients: ServiceClients, stages: Stages, imported: int
) -> StreamFigures:
    """The imported comments scored by the stream; then new comments there and back again."""

    def catch_up(bar: StageBar) -> int:
        def progress(scored: int) -> None:
            bar.update(f"{scored:,} of {imported:,} imported comments scored", scored, imported)

        return wait_until_scored(settings.kafka, expected=imported, on_progress=progress)

    scored = stages.run("stream imported", catch_up)
    return stages.run(
        "stream new comments", lambda bar: _round_trip(settings.kafka, clients, scored, bar)
    )


def _round_trip(
    kafka: KafkaSettings, clients: ServiceClients, scored_imported: int, bar: StageBar
) -> StreamFigures:
    """POST new comments to the collector; read their scores from ``scored.comments``."""
    tag = f"{datetime.now(UTC):%Y%m%dT%H%M%S}"
    comments = [
        {"id": f"demo-{tag}-{n}", "text": demo_text(n, tag), "source": "mlcycle-demo"}
        for n in range(NEW_COMMENTS)
    ]
    ids = {c["id"] for c in comments}
    reader = ScoredReader(kafka)  # at the topic's end before anything is sent
    try:
        bar.update(f"POST /v1/comments: {len(comments)} new comments", 0, len(comments))
        started = time.perf_counter()
        accepted = clients.collector.post_comments(comments, timeout_s=60.0).accepted
        sent_s = time.perf_counter() - started

        def progress(matched: int) -> None:
            bar.update(f"{matched} of {accepted} scored back from Kafka", matched, accepted)

        found = reader.collect(ids, on_progress=progress)
    finally:
        reader.close()
    arrivals = sorted(arrived - started for _, arrived in found.values())
    versions = {str(record.get("model_version")) for record, _ in found.values()}
    return StreamFigures(
        scored_imported=scored_imported,
        sent=accepted,
        scored_back=len(found),
        post_s=sent_s,
        all_back_s=arrivals[-1] if arrivals else None,
        first_back_s=arrivals[0] if arrivals else None,
        model_versions=sorted(versions),
        positive=sum(1 for record, _ in found.values() if str(record.get("label")) == "1"),
    )


def load_test(settings: Settings, seconds: float, bar: StageBar) -> Run:
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


def dead_lettered(kafka: KafkaSettings) -> dict[str, int]:
    """Records in the collector's dead-letter topics (rejected by the indexer)."""
    from mlcycle.common.kafka.lag import topic_sizes

    topics = kafka.topics
    dlqs = [topics.dlq(t) for t in (topics.comments_raw, topics.votes_raw, topics.votes_reviewed)]
    return topic_sizes(kafka, dlqs)
