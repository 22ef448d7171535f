"""The model server's Prometheus metrics, per model and version.

Label values come only from configured model names and served versions, never
from raw request fields, so a client sending random model names cannot grow
the number of series. Metric children are cached: recording a request is a
dict lookup and two updates, cheap enough for every call on the hot path.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping

from prometheus_client import Counter, Gauge, Histogram

REQUESTS = Counter(
    "mlcycle_modelserver_requests_total",
    "Requests answered by the model server, by API, method and status",
    ["model", "version", "api", "method", "status"],
)
LATENCY = Histogram(
    "mlcycle_modelserver_request_seconds",
    "Server-side time to answer a request, by API and method",
    ["model", "version", "api", "method"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
BATCH_SIZE = Histogram(
    "mlcycle_modelserver_batch_size",
    "Rows per model call formed by server-side batching",
    ["model", "version"],
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024),
)
BATCH_REQUESTS = Histogram(
    "mlcycle_modelserver_batch_requests",
    "Requests merged into one model call by server-side batching",
    ["model", "version"],
    buckets=(1, 2, 4, 8, 16, 32, 64, 128),
)
VERSIONS = Gauge(
    "mlcycle_modelserver_versions",
    "Model versions known to the server, by state (START, LOADING, AVAILABLE, UNLOADING, END)",
    ["model", "state"],
)
LOAD_SECONDS = Histogram(
    "mlcycle_modelserver_load_seconds",
    "Time to load a model version, warm-up included",
    ["model"],
    buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
)
LOAD_FAILURES = Counter(
    "mlcycle_modelserver_load_failures_total",
    "Model versions that failed to load",
    ["model"],
)
UNKNOWN_MODEL = "<unknown>"

_children: dict[tuple[str, ...], tuple[Counter, Histogram]] = {}
_lock = threading.Lock()


def observe_request(
    model: str, version: str, api: str, method: str, status: str, seconds: float
) -> None:
    """Count one answered request and record its latency."""
    key = (model, version, api, method, status)
    pair = _children.get(key)
    if pair is None:
        with _lock:
            pair = (
                REQUESTS.labels(model, version, api, method, status),
                LATENCY.labels(model, version, api, method),
            )
            _children[key] = pair
    pair[0].inc()
    pair[1].observe(seconds)


def observe_batch(model: str, version: int, rows: int, requests: int) -> None:
    """Record one batched model call."""
    BATCH_SIZE.labels(model, str(version)).observe(rows)
    BATCH_REQUESTS.labels(model, str(version)).observe(requests)


def set_version_states(model: str, counts: Mapping[str, int]) -> None:
    """The number of versions of ``model`` in each state."""
    for state, count in counts.items():
        VERSIONS.labels(model, state).set(count)


def observe_load(model: str, seconds: float, ok: bool) -> None:
    """Record one version load, successful or not."""
    LOAD_SECONDS.labels(model).observe(seconds)
    if not ok:
        LOAD_FAILURES.labels(model).inc()
