"""What the benchmarks share: a throw-away local stack on free ports, synthetic comments, REST load.

Benchmarks measure the real thing: the same processes `mlcycle up` starts,
over real HTTP and a real broker, each next to a baseline run in the same
process on the same machine, because absolute numbers on a shared 2-core
machine mean little on their own.
"""

from __future__ import annotations

import random
import statistics
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import orjson

from mlcycle.clients import CollectorClient, ServiceUnreachable, clients_for
from mlcycle.common.errors import Unavailable
from mlcycle.common.infra.process import free_port
from mlcycle.common.settings import Settings, load_settings
from mlcycle.local.stack import LocalStack

WORDS = (
    "the a you this that article page talk edit wikipedia please thanks source "
    "stupid idiot hate love good bad really think know people would could should "
    "revert vandalism block user comment section reference link image policy"
).split()


def stack_settings(data_dir: Path, **overrides: object) -> Settings:
    """Settings for an isolated stack: its own data dir and free ports."""
    return load_settings(
        data_dir=data_dir,
        embedded_kafka_port=free_port(),
        collector_port=free_port(),
        indexer_metrics_port=free_port(),
        labeler_port=free_port(),
        labeler_stream_metrics_port=free_port(),
        featurizer_port=free_port(),
        featurizer_grpc_port=free_port(),
        featurizer_batch_metrics_port=free_port(),
        log_level="WARNING",
        **overrides,
    )


def serving_settings(data_dir: Path, **overrides: object) -> Settings:
    """:func:`stack_settings` with free ports for the model server and inference too."""
    return stack_settings(
        data_dir,
        model_server_port=free_port(),
        model_server_rest_port=free_port(),
        inference_port=free_port(),
        inference_stream_metrics_port=free_port(),
        feedback_metrics_port=free_port(),
        **overrides,
    )


@contextmanager
def running_stack(**overrides: object) -> Iterator[LocalStack]:
    """The collector's part of the stack (broker, API, indexer) in a temporary data dir."""
    with tempfile.TemporaryDirectory(prefix="mlcycle-bench-") as tmp:
        stack = LocalStack(
            stack_settings(Path(tmp), **overrides),
            services=("collector-api", "collector-indexer"),
            log_dir=Path(tmp) / "logs",
            with_redis=False,
        )
        try:
            stack.start()
            yield stack
        finally:
            stack.stop()


def synthetic_comments(n: int, *, prefix: str, seed: int = 7) -> list[dict[str, object]]:
    """``n`` comment records of realistic size (~60 words) with metadata."""
    rng = random.Random(seed)
    return [
        {
            "id": f"{prefix}-{i}",
            "text": " ".join(rng.choices(WORDS, k=rng.randint(20, 100))),
            "source": "bench",
            "metadata": {"year": rng.randint(2001, 2016), "logged_in": rng.random() < 0.7},
        }
        for i in range(n)
    ]


def batches(records: list[dict[str, object]], size: int) -> list[bytes]:
    """JSON-array request bodies of ``size`` records each, serialized up front."""
    return [orjson.dumps(records[i : i + size]) for i in range(0, len(records), size)]


def post_all(
    settings: Settings,
    bodies: list[bytes],
    *,
    concurrency: int = 4,
    retry_unavailable: bool = False,
    bodies_per_s: float | None = None,
) -> list[float]:
    """POST every body as comments with ``concurrency`` keep-alive clients; returns latencies (s).

    With ``retry_unavailable`` a 503 is retried (the body was not acknowledged,
    so the sender still owns it) — what a well-behaved producer does.
    ``bodies_per_s`` paces the sending, to stretch an ingest over a time span.
    """
    latencies: list[float] = []
    lock = threading.Lock()
    local = threading.local()
    opened: list[CollectorClient] = []
    started = time.perf_counter()
    sequence = iter(range(len(bodies)))

    def pace() -> None:
        if bodies_per_s:
            with lock:
                slot = next(sequence)
            delay = started + slot / bodies_per_s - time.perf_counter()
            if delay > 0:
                time.sleep(delay)

    def send(body: bytes) -> None:
        pace()
        client = getattr(local, "client", None)
        if client is None:
            client = local.client = clients_for(settings).collector
            with lock:
                opened.append(client)
        while True:
            started = time.perf_counter()
            try:
                client.post_comments(body, timeout_s=60.0)
            except ServiceUnreachable:
                raise
            except Unavailable:
                if not retry_unavailable:
                    raise
                time.sleep(0.2)
                continue
            with lock:
                latencies.append(time.perf_counter() - started)
            return

    try:
        with ThreadPoolExecutor(concurrency) as pool:
            list(pool.map(send, bodies))
    finally:
        for client in opened:
            client.close()
    return latencies


def median(values: list[float]) -> float:
    """The median, the figure quoted on a noisy shared machine."""
    return float(statistics.median(values))
