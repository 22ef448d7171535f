"""Stages of the main job shared by the CLI and the demo, each a client of the services.

Import a dataset into Kafka and wait until it is stored, run and read label
runs, featurize, train, wait until a version is served, predict, post new
comments and read their scores back from ``scored.comments``. Each stage goes
through the services' real interfaces (Kafka topics, REST), never around
them, so the demo exercises what users run.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from mlcycle.common.errors import Unavailable
from mlcycle.common.settings import Settings


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
        wait_for_broker(settings.bootstrap_servers, timeout_s=10)
    except Unavailable as exc:
        raise Unavailable(
            f"no Kafka broker at {settings.bootstrap_servers}: start the stack with "
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
    with progress, RecordProducer(settings, client_id="mlcycle-import") as producer:
        task = progress.add_task(fmt, total=None)
        counts = publish(reader, producer, settings, on_batch=lambda n: progress.advance(task, n))
    stats = importer.stats
    return ImportResult(
        fmt=fmt,
        comments=counts.comments,
        votes=counts.votes,
        skipped=stats.skipped,
        seconds=time.perf_counter() - started,
        skipped_reasons=dict(stats.skipped_reasons),
    )


def collector_stats(settings: Settings) -> dict[str, object]:
    """``GET /v1/stats`` from the running collector."""
    url = f"http://{settings.host}:{settings.collector_port}/v1/stats"
    response = httpx.get(url, timeout=5.0)
    response.raise_for_status()
    return dict(response.json())


def wait_until_indexed(
    settings: Settings,
    *,
    timeout_s: float = 600.0,
    on_progress: Callable[[int], None] | None = None,
) -> float:
    """Block until the indexer's consumer group has committed everything in its topics.

    A committed offset means the record is durable in the store (or in its
    dead-letter topic), so zero lag is exactly "everything sent is stored".
    ``on_progress(lag)`` sees each lag read. Returns the seconds waited.
    """
    from mlcycle.common.kafka.lag import group_lag

    topics = [settings.topics.comments_raw, settings.topics.votes_raw]
    started = time.perf_counter()
    deadline = started + timeout_s
    while time.perf_counter() < deadline:
        lag = group_lag(settings, settings.indexer_group_id, topics)
        if on_progress is not None:
            on_progress(lag)
        if lag == 0:
            return time.perf_counter() - started
        time.sleep(0.5)
    raise Unavailable(f"the indexer did not catch up within {timeout_s:.0f} s")


def label_via_api(
    settings: Settings,
    params: dict[str, object],
    *,
    console: Console | None = None,
    timeout_s: float = 1800.0,
) -> dict[str, object]:
    """Start a label run on the labeler service and follow it to the end; returns the run."""
    base = f"http://{settings.host}:{settings.labeler_port}"
    headers = {"Authorization": f"Bearer {settings.api_keys[0]}"} if settings.api_keys else {}
    started = httpx.post(f"{base}/v1/label-runs", json=params, headers=headers, timeout=30.0)
    started.raise_for_status()
    run_id = started.json()["id"]
    progress = Progress(
        SpinnerColumn(),
        TextColumn("[bold]label[/] {task.description}"),
        TimeElapsedColumn(),
        console=console,
    )
    deadline = time.perf_counter() + timeout_s
    with progress:
        task = progress.add_task(run_id, total=None)
        while time.perf_counter() < deadline:
            run = httpx.get(f"{base}/v1/label-runs/{run_id}", timeout=30.0).json()
            state = run["progress"]
            done = f"{state.get('chunks_done', 0)}/{state.get('chunks_total') or '?'}"
            progress.update(task, description=f"{run_id} {state.get('phase')} {done}")
            if run["status"] == "succeeded":
                return dict(run)
            if run["status"] == "failed":
                raise Unavailable(f"label run {run_id} failed: {run.get('error')}")
            time.sleep(0.5)
    raise Unavailable(f"label run {run_id} did not finish within {timeout_s:.0f} s")


def featurize_via_api(settings: Settings, label_run: str) -> dict[str, object]:
    """Fit a transform on ``label_run``'s train split and build its feature set, over REST."""
    base = f"http://{settings.host}:{settings.featurizer_port}"
    headers = {"Authorization": f"Bearer {settings.api_keys[0]}"} if settings.api_keys else {}
    with httpx.Client(base_url=base, headers=headers, timeout=600.0) as client:
        fitted = client.post("/v1/transforms", json={"label_run": label_run})
        fitted.raise_for_status()
        built = client.post("/v1/feature-sets", json={"label_run": label_run})
        built.raise_for_status()
        return {"transform": fitted.json(), "feature_set": built.json()}


def train_via_api(
    settings: Settings, label_run: str, trials: int, *, console: Console | None = None
) -> dict[str, object]:
    """A training job on the trainer service: search, evaluate, bless, export; its final record."""
    base = f"http://{settings.host}:{settings.trainer_port}"
    headers = {"Authorization": f"Bearer {settings.api_keys[0]}"} if settings.api_keys else {}
    with httpx.Client(base_url=base, headers=headers, timeout=30.0) as client:
        started = client.post("/v1/jobs", json={"label_run": label_run, "trials": trials})
        started.raise_for_status()
        job_id = started.json()["id"]
        progress = Progress(
            SpinnerColumn(),
            TextColumn("[bold]train[/] {task.description}"),
            TextColumn("{task.completed}/{task.total} trials"),
            TimeElapsedColumn(),
            console=console,
        )
        with progress:
            bar = progress.add_task("queued", total=trials)
            while True:
                job = client.get(f"/v1/jobs/{job_id}").json()
                state = job.get("progress") or {}
                best = state.get("best_value")
                text = str(state.get("detail") or state.get("stage", ""))
                if best is not None:
                    text += f" (best dev {best:.4f})"
                progress.update(bar, description=text, completed=state.get("trials_done", 0))
                if job["status"] in ("succeeded", "failed"):
                    break
                time.sleep(1.0)
    if job["status"] != "succeeded":
        raise Unavailable(f"training job {job_id} failed: {job.get('error')}")
    return dict(job)


def _auth(settings: Settings) -> dict[str, str]:
    return {"Authorization": f"Bearer {settings.api_keys[0]}"} if settings.api_keys else {}


def production_version(settings: Settings) -> int | None:
    """The version the registry serves for ``settings.model_name`` (None before any)."""
    base = f"http://{settings.host}:{settings.trainer_port}"
    listed = httpx.get(f"{base}/v1/models", headers=_auth(settings), timeout=30.0)
    listed.raise_for_status()
    version = (listed.json().get("production") or {}).get(settings.model_name)
    return None if version is None else int(version)


def wait_until_served(settings: Settings, version: int, timeout_s: float = 180.0) -> float:
    """Block until the model server has ``version`` AVAILABLE and inference answers with it.

    Returns the seconds it took. Both look through the public APIs: TF Serving's
    model status over REST, and the inference service's readiness.
    """
    status_url = (
        f"http://{settings.host}:{settings.model_server_rest_port}/v1/models/{settings.model_name}"
    )
    ready_url = f"http://{settings.host}:{settings.inference_port}/readyz"
    started = time.perf_counter()
    deadline = started + timeout_s
    while time.perf_counter() < deadline:
        try:
            states = httpx.get(status_url, timeout=5.0).json().get("model_version_status", [])
            available = {int(s["version"]) for s in states if s.get("state") == "AVAILABLE"}
            if version in available and httpx.get(ready_url, timeout=5.0).status_code == 200:
                return time.perf_counter() - started
        except (httpx.HTTPError, ValueError, KeyError):
            pass
        time.sleep(0.5)
    raise Unavailable(f"model version {version} was not served within {timeout_s:.0f} s")


def predict_via_api(settings: Settings, texts: list[str]) -> list[dict[str, object]]:
    """Scores of ``texts`` from the inference service's ``POST /v1/predict``."""
    from mlcycle.inference.cli import default_url, request_predictions

    key = settings.api_keys[0] if settings.api_keys else None
    return list(request_predictions(default_url(settings), texts, key)["predictions"])


def wait_until_scored(
    settings: Settings,
    expected: int,
    timeout_s: float = 180.0,
    on_progress: Callable[[int], None] | None = None,
) -> int:
    """Records the streaming scorer has produced to ``scored.comments``, once caught up.

    Waits until ``expected`` records are there, or the count stops growing for
    15 s, or ``timeout_s`` passes; returns the count either way.
    ``on_progress(count)`` sees each count read.
    """
    from mlcycle.common.kafka.lag import topic_sizes

    topic = settings.topics.scored_comments
    deadline = time.perf_counter() + timeout_s
    last, last_change = -1, time.perf_counter()
    while time.perf_counter() < deadline:
        scored = topic_sizes(settings, [topic])[topic]
        if on_progress is not None:
            on_progress(scored)
        if scored >= expected:
            return scored
        if scored != last:
            last, last_change = scored, time.perf_counter()
        elif time.perf_counter() - last_change > 15.0:
            return scored
        time.sleep(1.0)
    return max(last, 0)


def labels_of_run(
    settings: Settings,
    run_id: str,
    *,
    page_size: int = 1000,
    on_page: Callable[[int], None] | None = None,
) -> dict[str, int]:
    """Every hard label of label run ``run_id`` (item id -> class), paged from the labeler.

    ``on_page(labels_so_far)`` is called after each page of ``GET /v1/labels``.
    """
    base = f"http://{settings.host}:{settings.labeler_port}"
    labels: dict[str, int] = {}
    cursor: str | None = None
    with httpx.Client(base_url=base, timeout=60.0) as client:
        while True:
            params: dict[str, object] = {"run": run_id, "limit": page_size}
            if cursor:
                params["cursor"] = cursor
            page = client.get("/v1/labels", params=params)
            page.raise_for_status()
            body = page.json()
            labels.update((str(item["item_id"]), int(item["label"])) for item in body["items"])
            if on_page is not None:
                on_page(len(labels))
            cursor = body.get("next_cursor")
            if not cursor:
                return labels


def post_comments(settings: Settings, comments: list[dict[str, object]]) -> int:
    """``POST /v1/comments`` to the collector (it answers once Kafka has every record)."""
    url = f"http://{settings.host}:{settings.collector_port}/v1/comments"
    answer = httpx.post(url, json=comments, headers=_auth(settings), timeout=60.0)
    answer.raise_for_status()
    return int(answer.json()["accepted"])


class ScoredReader:
    """A Kafka consumer on ``scored.comments``, from the topic's end at creation onwards.

    Create it before sending comments, then :meth:`collect` their scores: every
    partition is assigned (no group, nothing committed), so it reads whatever
    the streaming scorer produces from now on, whoever else reads the topic.
    """

    def __init__(self, settings: Settings) -> None:
        from kafka import KafkaConsumer

        from mlcycle.common.kafka.lag import end_offsets

        self.topic = settings.topics.scored_comments
        self.consumer = KafkaConsumer(
            bootstrap_servers=settings.bootstrap_servers,
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
        deadline = time.perf_counter() + timeout_s
        while len(found) < len(ids) and time.perf_counter() < deadline:
            for batch in self.consumer.poll(timeout_ms=200).values():
                arrived = time.perf_counter()
                for record in batch:
                    scored = orjson.loads(record.value)
                    if scored.get("id") in ids and scored["id"] not in found:
                        found[scored["id"]] = (scored, arrived)
            if on_progress is not None:
                on_progress(len(found))
        return found

    def close(self) -> None:
        """Leave the broker."""
        self.consumer.close()
