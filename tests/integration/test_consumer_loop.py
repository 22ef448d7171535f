"""The shared consumer loop against the real broker: commit only after the handler, no loss.

The handlers write to SQLite with an upsert and a delivery counter, so each
test can tell "lost" (row missing), "duplicated" (impossible: upsert) and
"redelivered" (counter above one) apart.
"""

from __future__ import annotations

import base64
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import orjson
import pytest
from kafka import KafkaAdminClient, TopicPartition
from prometheus_client import REGISTRY

from mlcycle.common.kafka.consumer import ConsumedRecord, ConsumerLoop, Failure
from mlcycle.common.kafka.producer import RecordProducer
from mlcycle.common.settings import Settings, settings_to_env
from mlcycle.contracts.deadletters import DeadLetter
from tests.fixtures.broker import read_all

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
# Tansu completes a group join after about half the session timeout, and a SIGKILLed
# member keeps its partitions for a whole one: a short timeout keeps this file fast.
SESSION_TIMEOUT_MS = 3000


@pytest.fixture
def settings(kafka_settings: Settings) -> Settings:
    return kafka_settings.replace(kafka_session_timeout_ms=SESSION_TIMEOUT_MS)


class SqliteSink:
    """A handler that upserts each record by key and counts how often each key was delivered."""

    def __init__(
        self, path: Path, after_write: Callable[[list[ConsumedRecord]], None] | None = None
    ):
        self.path = path
        self.after_write = after_write
        with sqlite3.connect(path) as db:
            db.execute(
                "CREATE TABLE IF NOT EXISTS records"
                " (key TEXT PRIMARY KEY, value BLOB, deliveries INTEGER NOT NULL)"
            )

    def __call__(self, batch: list[ConsumedRecord]) -> list[Failure]:
        rows = [(r.key, r.value) for r in batch]
        with sqlite3.connect(self.path) as db:
            db.executemany(
                "INSERT INTO records (key, value, deliveries) VALUES (?, ?, 1)"
                " ON CONFLICT (key) DO UPDATE SET value = excluded.value,"
                " deliveries = deliveries + 1",
                rows,
            )
        if self.after_write is not None:
            self.after_write(batch)
        return []

    def deliveries(self) -> dict[str, int]:
        with sqlite3.connect(self.path) as db:
            return dict(db.execute("SELECT key, deliveries FROM records").fetchall())


def produce(settings: Settings, items: list[tuple[str, bytes]]) -> dict[TopicPartition, int]:
    """Send ``items`` to comments.raw; return the end offset of each partition written."""
    topic = settings.kafka.topics.comments_raw
    ends: dict[TopicPartition, int] = {}
    with RecordProducer(settings.kafka) as producer:
        futures = [producer.send(topic, key, value) for key, value in items]
        for future in futures:
            meta = future.get(10)
            tp = TopicPartition(topic, meta.partition)
            ends[tp] = max(ends.get(tp, 0), meta.offset + 1)
    return ends


def committed(settings: Settings, group_id: str) -> dict[TopicPartition, int]:
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka.bootstrap_servers)
    try:
        offsets = admin.list_group_offsets(group_id).get(group_id, {})
    finally:
        admin.close()
    return {tp: meta.offset for tp, meta in offsets.items() if meta.offset >= 0}


def comments(n: int, prefix: str = "c") -> list[tuple[str, bytes]]:
    return [
        (f"{prefix}{i}", orjson.dumps({"id": f"{prefix}{i}", "text": "x" * 50})) for i in range(n)
    ]


def make_loop(settings: Settings, handler: Callable, **kwargs: object) -> ConsumerLoop:
    return ConsumerLoop(
        settings.kafka,
        topics=[settings.kafka.topics.comments_raw],
        group_id=settings.collector.indexer_group_id,
        handler=handler,
        service="test",
        **kwargs,
    )


# -- in-process -------------------------------------------------------------------------------


def test_every_record_is_handled_and_committed_only_after_the_handler(
    settings: Settings, tmp_path: Path
) -> None:
    settings = settings.replace(kafka_max_poll_records=50)
    ends = produce(settings, comments(300))
    seen_commits: list[dict[TopicPartition, int]] = []

    def check_nothing_of_this_batch_is_committed(batch: list[ConsumedRecord]) -> None:
        done = committed(settings, settings.collector.indexer_group_id)
        seen_commits.append(done)
        for record in batch:
            tp = TopicPartition(record.topic, record.partition)
            assert done.get(tp, 0) <= record.offset, "offset committed before the handler ran"

    sink = SqliteSink(tmp_path / "sink.db", check_nothing_of_this_batch_is_committed)
    stats = make_loop(settings, sink).run_until_idle(idle_s=1.0, timeout_s=30)

    assert stats.records == 300 and stats.batches >= 6
    assert set(sink.deliveries()) == {f"c{i}" for i in range(300)}
    assert committed(settings, settings.collector.indexer_group_id) == ends
    assert any(seen_commits[1:]), "each batch is committed before the next one is handled"
    consumed = REGISTRY.get_sample_value(
        "mlcycle_records_consumed_total",
        {"topic": settings.kafka.topics.comments_raw, "group": settings.collector.indexer_group_id},
    )
    assert consumed == 300


class Crash(BaseException):
    """Stands for the process dying: not an Exception, so the loop does not handle it."""


def test_a_crash_before_commit_redelivers_the_batch_to_the_next_member(
    settings: Settings, tmp_path: Path
) -> None:
    settings = settings.replace(kafka_max_poll_records=40)
    ends = produce(settings, comments(120))

    def crash(batch: list[ConsumedRecord]) -> None:
        raise Crash

    first = SqliteSink(tmp_path / "sink.db", crash)
    with pytest.raises(Crash):
        make_loop(settings, first).run_until_idle(idle_s=1.0, timeout_s=30)
    written_once = set(first.deliveries())
    assert 0 < len(written_once) <= 40
    assert committed(settings, settings.collector.indexer_group_id) == {}

    second = SqliteSink(tmp_path / "sink.db")
    make_loop(settings, second).run_until_idle(idle_s=1.0, timeout_s=30)
    deliveries = second.deliveries()
    assert len(deliveries) == 120, "no record lost"
    assert {k for k, n in deliveries.items() if n == 2} == written_once, "the batch came again"
    assert committed(settings, settings.collector.indexer_group_id) == ends


def test_a_failing_handler_is_retried_and_nothing_is_committed_meanwhile(
    settings: Settings, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    ends = produce(settings, comments(60))
    sink = SqliteSink(tmp_path / "sink.db")
    calls: list[list[str]] = []

    def flaky(batch: list[ConsumedRecord]) -> list[Failure]:
        calls.append([r.key or "" for r in batch])
        if len(calls) <= 2:
            assert committed(settings, settings.collector.indexer_group_id) == {}
            raise RuntimeError("store is down")
        return sink(batch)

    stats = make_loop(settings, flaky).run_until_idle(idle_s=1.0, timeout_s=30)

    assert stats.retries == 2
    assert [r.message for r in caplog.records].count(
        "batch failed; nothing committed, retrying"
    ) == 2
    # The sink never saw the failed calls, so every record stored was handed over again.
    assert len(sink.deliveries()) == 60
    assert set(calls[0]) <= set().union(*map(set, calls[2:]))
    assert committed(settings, settings.collector.indexer_group_id) == ends


def test_a_poison_record_goes_to_the_dlq_and_the_rest_flows(
    settings: Settings, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    items = comments(20) + [("bad-json", b"{not json"), ("bad-utf8", b"\xff\xfe\x00")]
    ends = produce(settings, items)
    sink = SqliteSink(tmp_path / "sink.db")

    def parse_then_store(batch: list[ConsumedRecord]) -> list[Failure]:
        good, failures = [], []
        for record in batch:
            try:
                orjson.loads(record.value)
                good.append(record)
            except orjson.JSONDecodeError as exc:
                failures.append(Failure(record, f"invalid JSON: {exc}"))
        sink(good)
        return failures

    stats = make_loop(settings, parse_then_store).run_until_idle(idle_s=1.0, timeout_s=30)

    assert stats.records == 22 and stats.dead_lettered == 2
    assert sum(r.message == "record dead-lettered" for r in caplog.records) == 2
    assert len(sink.deliveries()) == 20
    assert committed(settings, settings.collector.indexer_group_id) == ends
    dlq = read_all(settings, settings.kafka.topics.dlq(settings.kafka.topics.comments_raw), 2)
    by_key = {r.key: r for r in dlq}
    assert set(by_key) == {b"bad-json", b"bad-utf8"}
    text = orjson.loads(by_key[b"bad-json"].value)
    assert text["original"]["value"] == "{not json"
    assert text["original"]["topic"] == settings.kafka.topics.comments_raw
    assert text["error"].startswith("invalid JSON") and text["service"] == "test"
    assert datetime.fromisoformat(text["time"]).tzinfo is not None
    binary = orjson.loads(by_key[b"bad-utf8"].value)["original"]
    assert binary["value_encoding"] == "base64"
    assert base64.b64decode(binary["value"]) == b"\xff\xfe\x00"
    # Both read back as the typed dead-letter record, the original value byte for byte.
    letters = {key: DeadLetter.model_validate_json(r.value) for key, r in by_key.items()}
    assert letters[b"bad-json"].original.value_bytes() == b"{not json"
    assert letters[b"bad-utf8"].original.value_bytes() == b"\xff\xfe\x00"
    assert {letter.service for letter in letters.values()} == {"test"}
    # The original position, as the broker assigned it.
    original = read_all(settings, settings.kafka.topics.comments_raw, 22)
    position = {r.key: (r.partition, r.offset) for r in original}
    for key, record in by_key.items():
        body = orjson.loads(record.value)["original"]
        assert (body["partition"], body["offset"]) == position[key]
        assert dict(record.headers)["mlcycle-dlq-error"].startswith(b"invalid JSON")


# -- a real process -----------------------------------------------------------------------------

_CHILD = """
import os, signal, sys, time
from pathlib import Path
from mlcycle.common.kafka.consumer import ConsumerLoop
from mlcycle.common.settings import load_settings
from tests.integration.test_consumer_loop import SqliteSink

mode = sys.argv[2]

def after_write(batch):
    if mode == "sigkill":
        os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(0.3)

settings = load_settings()
sink = SqliteSink(Path(sys.argv[1]), after_write)
ConsumerLoop(
    settings.kafka,
    topics=[settings.kafka.topics.comments_raw],
    group_id=settings.collector.indexer_group_id,
    handler=sink,
    service="child",
).run()
"""


def start_child(settings: Settings, db: Path, mode: str, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, **settings_to_env(settings)}
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-c", _CHILD, str(db), mode], cwd=REPO, env=env, stderr=out
        )


def wait_for_rows(db: Path, at_least: int, proc: subprocess.Popen[bytes], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if db.exists():
            try:
                if len(SqliteSink(db).deliveries()) >= at_least:
                    return
            except sqlite3.OperationalError:
                pass  # the child is creating the table
        if proc.poll() is not None:
            return
        time.sleep(0.05)
    raise AssertionError(f"fewer than {at_least} rows after {timeout_s} s")


def test_sigkill_after_the_write_before_the_commit_loses_nothing(
    settings: Settings, tmp_path: Path
) -> None:
    settings = settings.replace(kafka_max_poll_records=30)
    ends = produce(settings, comments(90))
    db = tmp_path / "sink.db"
    child = start_child(settings, db, "sigkill", tmp_path / "child.log")
    try:
        assert child.wait(30) == -signal.SIGKILL, (tmp_path / "child.log").read_text()
    finally:
        if child.poll() is None:
            child.kill()
    written_before_crash = set(SqliteSink(db).deliveries())
    assert 0 < len(written_before_crash) <= 30
    assert committed(settings, settings.collector.indexer_group_id) == {}

    sink = SqliteSink(db)
    make_loop(settings, sink).run_until_idle(idle_s=1.0, timeout_s=40)
    deliveries = sink.deliveries()
    assert len(deliveries) == 90
    assert {k for k, n in deliveries.items() if n > 1} == written_before_crash
    assert committed(settings, settings.collector.indexer_group_id) == ends


def test_sigterm_finishes_the_batch_commits_it_and_exits_zero(
    settings: Settings, tmp_path: Path
) -> None:
    settings = settings.replace(kafka_max_poll_records=20)
    produce(settings, comments(400))
    db = tmp_path / "sink.db"
    log = tmp_path / "child.log"
    child = start_child(settings, db, "slow", log)
    try:
        wait_for_rows(db, 40, child, timeout_s=30)
        assert child.poll() is None, log.read_text()
        child.send_signal(signal.SIGTERM)
        assert child.wait(15) == 0, log.read_text()
    finally:
        if child.poll() is None:
            child.kill()
    handled = len(SqliteSink(db).deliveries())
    assert 40 <= handled < 400
    # Exactly what was handled is committed: the batch in flight at SIGTERM included.
    assert sum(committed(settings, settings.collector.indexer_group_id).values()) == handled
