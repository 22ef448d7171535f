"""The collector's own Prometheus metrics (HTTP and consumer-loop metrics are shared ones)."""

from __future__ import annotations

from prometheus_client import Counter

RECORDS_ACCEPTED = Counter(
    "mlcycle_collector_records_accepted_total",
    "Records accepted over REST and acknowledged by the broker",
    ["kind"],
)
REQUESTS_REJECTED = Counter(
    "mlcycle_collector_requests_rejected_total",
    "Ingest requests refused, by the error code answered",
    ["kind", "reason"],
)
DOCUMENTS_INDEXED = Counter(
    "mlcycle_collector_documents_indexed_total",
    "Documents the indexer upserted into the store",
    ["collection"],
)
RECORDS_INVALID = Counter(
    "mlcycle_collector_records_invalid_total",
    "Records the indexer could not decode or validate, or the store refused (dead-lettered)",
    ["topic", "reason"],
)
