"""Ingest throughput: REST batches of 500 comments until stored, next to a raw producer loop.

What is measured, per round, on one local stack (embedded Tansu broker,
collector API and indexer as separate processes, SQLite store):
- end to end: the wall time from the first POST /v1/comments of N comments
  (batches of 500, 4 keep-alive client threads) until GET /v1/stats counts
  all N in the store;
- raw producer: the same N serialized comments sent by a plain kafka-python
  producer loop to a fresh topic on the same broker, until every send is
  acknowledged. It gets the collector's own producer tuning (acks=all,
  idempotent, keyed by id, same linger, 512 KiB batches, no compression), so
  the ratio is the cost of REST, validation and indexing, not of tuning.
Rounds alternate the two; the figures quoted are medians over the rounds.
The ratio is end-to-end rate / raw producer rate.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
import uuid

import orjson
from _harness import batches, median, post_all, running_stack, synthetic_comments
from kafka import KafkaProducer

from mlcycle.clients import CollectorClient, clients_for, poll_until
from mlcycle.common.kafka.admin import ensure_topics
from mlcycle.common.kafka.producer import BATCH_BYTES, MAX_REQUEST_BYTES
from mlcycle.common.settings import Settings

BATCH = 500


def raw_producer_rate(settings: Settings, records: list[dict[str, object]]) -> float:
    """Records/s of a bare kafka-python loop sending ``records`` and waiting for every ack."""
    topic = f"bench.raw.{uuid.uuid4().hex[:8]}"
    ensure_topics(settings.kafka, [topic])
    payloads = [(str(r["id"]).encode(), orjson.dumps(r)) for r in records]
    producer = KafkaProducer(
        bootstrap_servers=settings.kafka.bootstrap_servers,
        acks="all",
        enable_idempotence=True,
        linger_ms=settings.kafka.linger_ms,
        batch_size=BATCH_BYTES,
        max_request_size=MAX_REQUEST_BYTES,
        compression_type=None,
    )
    try:
        started = time.perf_counter()
        futures = [producer.send(topic, key=key, value=value) for key, value in payloads]
        producer.flush()
        for future in futures:
            future.get(timeout=30)
        return len(records) / (time.perf_counter() - started)
    finally:
        producer.close()


def stored_comments(collector: CollectorClient) -> int:
    return collector.stats(timeout_s=10.0).count("comments")


def end_to_end_rate(settings: Settings, records: list[dict[str, object]]) -> tuple[float, float]:
    """(stored records/s, acknowledged records/s) for ``records`` sent over REST."""
    bodies = batches(records, BATCH)
    with clients_for(settings).collector as collector:
        before = stored_comments(collector)
        started = time.perf_counter()
        post_all(settings, bodies)
        acked = time.perf_counter() - started
        target = before + len(records)
        poll_until(
            lambda: stored_comments(collector) >= target,
            timeout=math.inf,
            interval=0.02,
            what="the comments were not all stored",
        )
        stored = time.perf_counter() - started
    return len(records) / stored, len(records) / acked


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=50_000, help="comments per round")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    e2e, accepted, raw = [], [], []
    with running_stack() as stack:
        settings = stack.settings
        warmup = synthetic_comments(2_000, prefix="warmup")
        end_to_end_rate(settings, warmup)
        raw_producer_rate(settings, warmup)
        for round_no in range(args.rounds):
            records = synthetic_comments(args.records, prefix=f"r{round_no}", seed=round_no)
            stored_rate, acked_rate = end_to_end_rate(settings, records)
            e2e.append(stored_rate)
            accepted.append(acked_rate)
            raw.append(raw_producer_rate(settings, records))
            print(
                f"round {round_no + 1}: end to end {stored_rate:,.0f}/s  "
                f"(REST acknowledged {acked_rate:,.0f}/s)  raw producer {raw[-1]:,.0f}/s",
                file=sys.stderr,
            )

    result = {
        "benchmark": "ingest",
        "records_per_round": args.records,
        "rounds": args.rounds,
        "batch": BATCH,
        "end_to_end_per_s": round(median(e2e)),
        "rest_acknowledged_per_s": round(median(accepted)),
        "raw_producer_per_s": round(median(raw)),
        "ratio": round(median(e2e) / median(raw), 3),
        "target_end_to_end_per_s": 10_000,
        "target_ratio": 0.4,
    }
    print()
    print(f"{'measure (median of rounds)':<34}{'records/s':>12}")
    print(f"{'end to end (REST -> SQLite)':<34}{result['end_to_end_per_s']:>12,}")
    print(f"{'REST acknowledged (Kafka acked)':<34}{result['rest_acknowledged_per_s']:>12,}")
    print(f"{'raw kafka-python producer':<34}{result['raw_producer_per_s']:>12,}")
    print(f"{'ratio end to end / raw':<34}{result['ratio']:>12}")
    print(orjson.dumps(result).decode())


if __name__ == "__main__":
    main()
