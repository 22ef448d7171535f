"""The embedded broker and Redis: real binaries started, used, and stopped without leftovers."""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import redis

from mlcycle.common.errors import Unavailable
from mlcycle.common.infra.broker import EmbeddedBroker
from mlcycle.common.infra.redis import EmbeddedRedis
from mlcycle.common.kafka.admin import ensure_topics, wait_for_broker
from mlcycle.common.kafka.producer import RecordProducer
from mlcycle.common.settings import KafkaSettings, load_settings

pytestmark = pytest.mark.integration


def _refuses(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1.0)
        return sock.connect_ex((host, port)) != 0


def _wait_gone(pid: int, timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.05)
    return False


def test_broker_starts_on_a_free_port_serves_kafka_and_stops(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)  # every log call on the way is formatted, extras included
    log_path = tmp_path / "logs" / "broker.log"
    with EmbeddedBroker(0, log_path=log_path) as broker:
        assert broker.port != 0 and broker.running
        assert broker.bootstrap == f"127.0.0.1:{broker.port}"
        settings = load_settings(kafka_bootstrap=broker.bootstrap, data_dir=tmp_path)
        ensure_topics(settings.kafka, ["infra.smoke"])
        ensure_topics(settings.kafka, ["infra.smoke"])  # already exists: no error
        with RecordProducer(settings.kafka) as producer:
            assert producer.send_batch("infra.smoke", [("a", b"{}"), ("b", b"{}")]) == 2
        pid = broker.pid
        assert pid is not None
    assert not broker.running
    assert _wait_gone(pid)
    assert _refuses("127.0.0.1", broker.port)
    assert log_path.read_text().strip(), "broker output goes to the log file"
    broker.stop()  # idempotent


def test_broker_refuses_a_port_in_use() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(Unavailable, match="already in use"):
            EmbeddedBroker(port).start()


def test_wait_for_broker_times_out_clearly() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    started = time.monotonic()
    with pytest.raises(Unavailable, match=f"127.0.0.1:{port}"):
        wait_for_broker(KafkaSettings(bootstrap=f"127.0.0.1:{port}"), timeout_s=1.0)
    assert time.monotonic() - started < 5


_ORPHAN_SCRIPT = """
import sys, time
from mlcycle.common.infra.broker import EmbeddedBroker
broker = EmbeddedBroker(0).start()
print(broker.pid, flush=True)
time.sleep(60)
"""


def test_broker_dies_with_its_parent() -> None:
    """A SIGKILLed parent leaves no broker behind listening on a port."""
    parent = subprocess.Popen(
        [sys.executable, "-c", _ORPHAN_SCRIPT], stdout=subprocess.PIPE, text=True
    )
    try:
        line = parent.stdout.readline() if parent.stdout else ""
        broker_pid = int(line)
        assert psutil.pid_exists(broker_pid)
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait(10)
        assert _wait_gone(broker_pid), "the broker outlived its parent"
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()


def test_redis_starts_answers_and_stops(tmp_path: Path) -> None:
    with EmbeddedRedis(0, data_dir=tmp_path / "redis") as server:
        assert server.url == f"redis://127.0.0.1:{server.port}/0"
        client = redis.Redis.from_url(server.url)
        client.set("k", "v", ex=60)
        assert client.get("k") == b"v"
        client.close()
        pid = server.pid
        assert pid is not None
    assert _wait_gone(pid)
    assert _refuses("127.0.0.1", server.port)
    assert not list((tmp_path / "redis").glob("*.rdb")), "a cache writes no snapshot"


def test_redis_without_data_dir_cleans_up_its_temp_dir() -> None:
    server = EmbeddedRedis(0).start()
    data_dir = server.data_dir
    assert data_dir is not None and data_dir.is_dir()
    assert redis.Redis.from_url(server.url).ping()
    server.stop()
    assert not data_dir.exists()


def test_redis_session_fixture_is_usable(redis_server: EmbeddedRedis) -> None:
    client = redis.Redis.from_url(redis_server.url)
    assert client.ping()
    client.close()
