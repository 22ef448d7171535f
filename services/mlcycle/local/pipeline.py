"""Stages of the main job shared by the CLI and the demo, each a client of the services.

Import a dataset into Kafka and wait until it is stored, run and read label
runs, featurize, train, wait until a version is served, and read the streaming
scorer's output from ``scored.comments``. Each stage goes through the services'
real interfaces (Kafka topics, and REST through :mod:`mlcycle.clients`), never
around them, so the demo exercises what users run.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from mlcycle.clients import (
    DeadlinePassed,
    FeaturizerClient,
    LabelerClient,
    ServiceClients,
    TrainerClient,
    poll_until,
)
from mlcycle.clients.featurizer import FittedTransform
from mlcycle.clients.trainer import TrainingJob
from mlcycle.common.errors import MlcycleError, Unavailable
from mlcycle.common.settings import KafkaSettings, Settings
from mlcycle.contracts.features import FeatureSetManifest
from mlcycle.contracts.label_runs import LabelRun, RunParams

# The streaming scorer has caught up when its output count stops growing this long.
STALL_S = 15.0


@dataclass
class ImportResult:
    """What one import sent, what the importer skipped, and how long it took."""

    fmt: str
    comments: int
    votes: int
    skipped: int
    seconds: float
    skipped_reasons: dict[str, int] = field(default_factory=dict)

    def describe(self) -> str:
        """One plain sentence for the terminal."""
        rate = (self.comments + self.votes) / self.seconds if self.seconds else 0.0
        text = (
            f"imported {self.comments:,} comments and {self.votes:,} votes ({self.fmt}) "
            f"into the topics in {self.seconds:.1f} s ({rate:,.0f} records/s)"
        )
        if self.skipped:
            text += f"; skipped {self.skipped:,} unreadable rows {self.skipped_reasons}"
        return text


def import_dataset(
    settings: Settings, fmt: str, paths: list[Path], *, console: Console | None = None
) -> ImportResult:
    """Read ``paths`` with the ``fmt`` importer and publish every record, with a progress bar."""
    from mlcycle.common.kafka.admin import wait_for_broker
    from mlcycle.common.kafka.producer import RecordProducer
    from mlcycle.importers import get_importer
    from mlcycle.importers.publish import publish

    importer = get_importer(fmt)
    reader = importer.read(list(paths))  # checks the files now, before any broker is needed
    try:
        wait_for_broker(settings.kafka, timeout_s=10)
    except Unavailable as exc:
        raise Unavailable(
            f"no Kafka broker at {settings.kafka.bootstrap_servers}: start the stack with "
            "`mlcycle up`, or point MLCYCLE_KAFKA_BOOTSTRAP at a cluster"
        ) from exc
    started = time.perf_counter()
    progress = Progress(
        SpinnerColumn(),
        TextColumn("[bold]import[/] {task.description}"),
        TextColumn("{task.completed:,} records"),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    )
    with progress, RecordProducer(settings.kafka, client_id="mlcycle-import") as producer:
        task = progress.add_task(fmt, total=None)
        counts = publish(
            reader, producer, settings.kafka.topics, on_batch=lambda n: progress.advance(task, n)
        )
    stats = importer.stats
    # A mix of corpora names what it read ("corpora: davidson, hatexplain").
    describe = getattr(importer, "describe", None)
    return ImportResult(
        fmt=describe() if callable(describe) else fmt,
        comments=counts.comments,
        votes=counts.votes,
        skipped=stats.skipped,
        seconds=time.perf_counter() - started,
        skipped_reasons=dict(stats.skipped_reasons),
    )


def wait_until_indexed(
    kafka: KafkaSettings,
    group_id: str,
    *,
    timeout_s: float = 600.0,
    on_progress: Callable[[int], None] | None = None,
) -> float:
    """Block until the indexer's consumer group (``group_id``) has committed all its topics.

    A committed offset means the record is durable in the store (or in its
    dead-letter topic), so zero lag is exactly "everything sent is stored".
    ``on_progress(lag)`` sees each lag read. Returns the seconds waited.
    """
    from mlcycle.common.kafka.lag import group_lag

    topics = [kafka.topics.comments_raw, kafka.topics.votes_raw, kafka.topics.votes_reviewed]
    started = time.perf_counter()

    def caught_up() -> bool:
        lag = group_lag(kafka, group_id, topics)
        if on_progress is not None:
            on_progress(lag)
        return lag == 0

    poll_until(caught_up, timeout=timeout_s, interval=0.5, what="the indexer did not catch up")
    return time.perf_counter() - started


def label_via_api(
    labeler: LabelerClient,
    params: RunParams,
    *,
    console: Console | None = None,
    timeout_s: float = 1800.0,
) -> LabelRun:
    """Start a label run on the labeler service and follow it to the end; returns the run."""
    run_id = labeler.start_run(params).id
    progress = Progress(
        SpinnerColumn(),
        TextColumn("[bold]label[/] {task.description}"),
        TimeElapsedColumn(),
        console=console,
    )
    with progress:
        bar = progress.add_task(run_id, total=None)

        def finished() -> LabelRun | None:
            run = labeler.run(run_id)
            state = run.progress
            done = f"{state.chunks_done}/{state.chunks_total or '?'}"
            progress.update(bar, description=f"{run_id} {state.phase} {done}")
            return run if run.finished else None

        run = poll_until(
            finished, timeout=timeout_s, interval=0.5, what=f"label run {run_id} did not finish"
        )
    if run.status != "succeeded":
        raise Unavailable(f"label run {run_id} failed: {run.error}")
    return run


@dataclass(frozen=True)
class Featurized:
    """A transform fitted on a label run's train split, and the run's feature set built with it."""

    transform: FittedTransform
    feature_set: FeatureSetManifest


def featurize_via_api(featurizer: FeaturizerClient, label_run: str) -> Featurized:
    """Fit a transform on ``label_run``'s train split and build its feature set, over REST."""
    transform = featurizer.fit(label_run)
    return Featurized(transform, featurizer.build_feature_set(label_run))


def train_via_api(
    trainer: TrainerClient,
    label_run: str,
    trials: int,
    *,
    console: Console | None = None,
    timeout_s: float = math.inf,
    time_budget_s: float | None = None,
    auto_promote: bool | None = None,
    extra: Mapping[str, object] | None = None,
) -> TrainingJob:
    """A training job on the trainer service: search, evaluate, bless, export; its final record.

    ``time_budget_s`` caps the search (no trial starts after it); None: the job's default.
    ``auto_promote=False`` keeps a blessed winner out of production (a rollout takes it
    there); None: the job's default. ``extra`` adds any other job setting (a preset, a drill).
    """
    config: dict[str, object] = {"label_run": label_run, "trials": trials, **(extra or {})}
    if time_budget_s is not None:
        config["time_budget_s"] = time_budget_s
    if auto_promote is not None:
        config["auto_promote"] = auto_promote
    job_id = trainer.start_job(config).id
    progress = Progress(
        SpinnerColumn(),
        TextColumn("[bold]train[/] {task.description}"),
        TextColumn("{task.completed}/{task.total} trials"),
        TimeElapsedColumn(),
        console=console,
    )
    with progress:
        bar = progress.add_task("queued", total=trials)

        def finished() -> TrainingJob | None:
            job = trainer.job(job_id)
            state = job.progress
            text = str(state.detail or state.stage or "")
            if state.best_value is not None:
                text += f" (best dev {state.best_value:.4f})"
            progress.update(bar, description=text, completed=state.trials_done)
            return job if job.finished else None

        job = poll_until(
            finished, timeout=timeout_s, interval=1.0, what=f"training job {job_id} did not finish"
        )
    if job.status != "succeeded":
        raise Unavailable(f"training job {job_id} failed: {job.error}")
    return job


def wait_until_served(clients: ServiceClients, version: int, timeout_s: float = 180.0) -> float:
    """Block until the model server has ``version`` AVAILABLE and inference answers with it.

    Returns the seconds it took. Both look through the public APIs: TF Serving's
    model status over REST, and the inference service's readiness.
    """
    started = time.perf_counter()

    def served() -> bool:
        available = clients.modelserver.available_versions(timeout_s=5.0)
        return version in available and clients.inference.ready(timeout_s=5.0)

    poll_until(
        served,
        timeout=timeout_s,
        interval=0.5,
        what=f"model version {version} was not served",
        ignore=(MlcycleError,),
    )
    return time.perf_counter() - started


def wait_until_scored(
    kafka: KafkaSettings,
    expected: int,
    timeout_s: float = 180.0,
    on_progress: Callable[[int], None] | None = None,
) -> int:
    """Records the streaming scorer has produced to ``scored.comments``, once caught up.

    Waits until ``expected`` records are there, or the count stops growing for
    ``STALL_S`` seconds, or ``timeout_s`` passes; returns the count either way.
    ``on_progress(count)`` sees each count read.
    """
    from mlcycle.common.kafka.lag import topic_sizes

    topic = kafka.topics.scored_comments
    counts: list[int] = []
    changed_at = time.perf_counter()

    def settled() -> bool:
        nonlocal changed_at
        scored = topic_sizes(kafka, [topic])[topic]
        if on_progress is not None:
            on_progress(scored)
        if not counts or scored != counts[-1]:
            changed_at = time.perf_counter()
        counts.append(scored)
        return scored >= expected or time.perf_counter() - changed_at > STALL_S

    try:
        poll_until(settled, timeout=timeout_s, interval=1.0, what="the stream did not catch up")
    except DeadlinePassed:
        pass  # still growing at the deadline: the count so far is the answer
    return counts[-1] if counts else 0


def labels_of_run(
    labeler: LabelerClient,
    run_id: str,
    *,
    page_size: int = 1000,
    on_page: Callable[[int], None] | None = None,
) -> dict[str, int]:
    """Every hard label of label run ``run_id`` (item id -> class), paged from the labeler.

    ``on_page(labels_so_far)`` is called after each page of ``GET /v1/labels``.
    """
    labels: dict[str, int] = {}
    for page in labeler.all_labels(run_id, page_size=page_size, timeout_s=60.0):
        labels.update((label.item_id, label.label) for label in page.items)
        if on_page is not None:
            on_page(len(labels))
    return labels


class ScoredReader:
    """A Kafka consumer on ``scored.comments``, from the topic's end at creation onwards.

    Create it before sending comments, then :meth:`collect` their scores: every
    partition is assigned (no group, nothing committed), so it reads whatever
    the streaming scorer produces from now on, whoever else reads the topic.
    """

    def __init__(self, settings: KafkaSettings) -> None:
        from mlcycle.common.kafka.connection import new_consumer
        from mlcycle.common.kafka.lag import end_offsets

        self.topic = settings.topics.scored_comments
        self.consumer = new_consumer(
            settings,
            enable_auto_commit=False,
            fetch_max_wait_ms=100,
        )
        ends = end_offsets(settings, [self.topic])
        self.consumer.assign(list(ends))
        for partition, offset in ends.items():
            self.consumer.seek(partition, offset)

    def collect(
        self,
        ids: set[str],
        *,
        timeout_s: float = 120.0,
        on_progress: Callable[[int], None] | None = None,
    ) -> dict[str, tuple[dict[str, object], float]]:
        """The scored record of each id in ``ids`` and when it arrived (``perf_counter``).

        Stops when every id has come back or after ``timeout_s``; records of
        other ids are skipped. ``on_progress(matched)`` follows the count.
        """
        import orjson

        found: dict[str, tuple[dict[str, object], float]] = {}

        def all_back() -> bool:
            for batch in self.consumer.poll(timeout_ms=200).values():
                arrived = time.perf_counter()
                for record in batch:
                    scored = orjson.loads(record.value)
                    if scored.get("id") in ids and scored["id"] not in found:
                        found[scored["id"]] = (scored, arrived)
            if on_progress is not None:
                on_progress(len(found))
            return len(found) >= len(ids)

        try:
            poll_until(all_back, timeout=timeout_s, interval=0.0, what="scores did not come back")
        except DeadlinePassed:
            pass  # the ones that came back are the answer
        return found

    def close(self) -> None:
        """Leave the broker."""
        self.consumer.close()
