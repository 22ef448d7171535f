"""Stages of the main job shared by the CLI and the demo: import a dataset, wait until stored.

Each stage goes through the services' real interfaces (Kafka topics, REST),
never around them, so the demo exercises what users run.
"""

from __future__ import annotations

import time
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


def wait_until_indexed(settings: Settings, *, timeout_s: float = 600.0) -> float:
    """Block until the indexer's consumer group has committed everything in its topics.

    A committed offset means the record is durable in the store (or in its
    dead-letter topic), so zero lag is exactly "everything sent is stored".
    Returns the seconds waited.
    """
    from mlcycle.common.kafka.lag import group_lag

    topics = [settings.topics.comments_raw, settings.topics.votes_raw]
    started = time.perf_counter()
    deadline = started + timeout_s
    while time.perf_counter() < deadline:
        if group_lag(settings, settings.indexer_group_id, topics) == 0:
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
    base = f"http://{settings.host}:{settings.inference_port}"
    body = {"instances": [{"text": text} for text in texts]}
    answer = httpx.post(f"{base}/v1/predict", json=body, headers=_auth(settings), timeout=30.0)
    answer.raise_for_status()
    return list(answer.json()["predictions"])


def single_request_latency(settings: Settings, texts: list[str], rounds: int = 200) -> dict:
    """p50 and p99 in ms of one-comment ``POST /v1/predict`` calls, one at a time.

    The first round over ``texts`` misses the cache; later rounds hit it, so the
    figure is what a client sees on a warm service.
    """
    base = f"http://{settings.host}:{settings.inference_port}"
    timings = []
    with httpx.Client(base_url=base, headers=_auth(settings), timeout=30.0) as client:
        for i in range(rounds):
            body = {"instances": [{"text": texts[i % len(texts)]}]}
            started = time.perf_counter()
            client.post("/v1/predict", json=body).raise_for_status()
            timings.append((time.perf_counter() - started) * 1000)
    timings.sort()
    return {"p50_ms": timings[len(timings) // 2], "p99_ms": timings[int(len(timings) * 0.99)]}


def wait_until_scored(settings: Settings, expected: int, timeout_s: float = 180.0) -> int:
    """Records the streaming scorer has produced to ``scored.comments``, once caught up.

    Waits until ``expected`` records are there, or the count stops growing for
    15 s, or ``timeout_s`` passes; returns the count either way.
    """
    from mlcycle.common.kafka.lag import topic_sizes

    topic = settings.topics.scored_comments
    deadline = time.perf_counter() + timeout_s
    last, last_change = -1, time.perf_counter()
    while time.perf_counter() < deadline:
        scored = topic_sizes(settings, [topic])[topic]
        if scored >= expected:
            return scored
        if scored != last:
            last, last_change = scored, time.perf_counter()
        elif time.perf_counter() - last_change > 15.0:
            return scored
        time.sleep(1.0)
    return max(last, 0)
