"""Prometheus metrics shared by every service.

Metric objects live on the default registry, created once at import of this
module (creating a metric is not a side effect on anything outside the
process). Services add their own next to their code.
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram

RECORDS_CONSUMED = Counter(
    "mlcycle_records_consumed_total",
    "Records read from a Kafka topic by a consumer loop",
    ["topic", "group"],
)
RECORDS_DEAD_LETTERED = Counter(
    "mlcycle_records_dead_lettered_total",
    "Records routed to a dead-letter topic",
    ["topic", "group"],
)
RECORDS_PRODUCED = Counter(
    "mlcycle_records_produced_total",
    "Records acknowledged by the broker",
    ["topic"],
)
BATCH_RETRIES = Counter(
    "mlcycle_consumer_batch_retries_total",
    "Batches a consumer loop retried after a failure, nothing committed (by error code)",
    ["group", "reason"],
)
BATCH_SECONDS = Histogram(
    "mlcycle_consumer_batch_seconds",
    "Time to handle one polled batch, from decode to commit",
    ["group"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
STORE_WRITES = Counter(
    "mlcycle_store_documents_written_total",
    "Documents upserted into the store",
    ["collection"],
)
HTTP_REQUESTS = Counter(
    "mlcycle_http_requests_total",
    "HTTP requests by route and status",
    ["service", "method", "route", "status"],
)
HTTP_LATENCY = Histogram(
    "mlcycle_http_request_seconds",
    "HTTP request latency by route",
    ["service", "method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
