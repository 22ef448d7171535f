"""``mlcycle monitor`` and the client against the real inference service: real HTTP, the real
model server and SavedModel with its reference profile, the Redis aggregate and the broker.

One window of the dev-like corpus, then one of unseen words: the command prints the n-gram
signal in alarm, its report plots the two windows against the threshold and the latest
window's shares, and ``--json`` is the route's answer as it came.
"""

from __future__ import annotations

import json
import random
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from typer.testing import CliRunner

from mlcycle.cli import app
from mlcycle.clients.inference import InferenceClient
from mlcycle.common.errors import Forbidden
from mlcycle.common.infra.broker import EmbeddedBroker
from mlcycle.common.infra.redis import EmbeddedRedis
from mlcycle.common.kafka.admin import ensure_topics
from mlcycle.contracts.monitoring import NGRAMS, Decision
from tests.fixtures.broker import unique_topics, wait_for
from tests.fixtures.inference import NAME, World, built_models, corpus
from tests.integration.test_inference_monitoring import (
    KEY,
    PREDICT_KEY,
    UNSEEN,
    Replica,
    profile_version,
)

pytestmark = pytest.mark.integration

READ_SECRET = KEY.rsplit(":", 1)[1]
LABEL_KEY = "monitor-moderator:label:monitor-label-secret"
WINDOW = 200


@pytest.fixture
def replica(
    tmp_path_factory: pytest.TempPathFactory,
    tmp_path: Path,
    redis_server: EmbeddedRedis,
    kafka_broker: EmbeddedBroker,
) -> Iterator[Replica]:
    world = World(built_models(tmp_path_factory.mktemp("monitor-cli-models")), tmp_path)
    profile_version(world)
    world.start_server()
    tag = uuid.uuid4().hex[:10]
    topics = unique_topics(tag).model_copy(update={"monitoring": f"monitoring.{tag}"})
    settings = world.settings(
        redis_url=redis_server.url,
        kafka_bootstrap=kafka_broker.bootstrap,
        topics=topics,
        api_keys=(KEY, PREDICT_KEY, LABEL_KEY),
        monitor_window_records=WINDOW,
        monitor_min_window_records=100,
        monitor_flush_s=0.1,
    )
    ensure_topics(settings.kafka)
    client = redis.Redis.from_url(redis_server.url)
    for key in client.scan_iter(f"mlcycle:monitor:{{{NAME}:*"):
        client.delete(key)
    client.close()
    one = Replica(settings)
    yield one
    one.close()
    world.stop_server()


def test_the_command_shows_the_real_monitor_s_alarm_and_reports_it(
    replica: Replica, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    texts, metadata, _ = corpus(n=WINDOW, seed=31)
    replica.predict(texts, metadata)
    wait_for(lambda: replica.signals()[NGRAMS]["windows"] == 1, timeout_s=30)
    rng = random.Random(7)
    drifted = [
        " ".join(rng.choice(UNSEEN) for _ in range(rng.randint(15, 30))) + f" {uuid.uuid4().hex}"
        for _ in texts
    ]
    replica.predict(drifted, metadata)
    wait_for(lambda: replica.signals()[NGRAMS]["windows"] == 2, timeout_s=30)

    url = str(replica.client.base_url)
    with InferenceClient(url, api_key=READ_SECRET) as client:
        (version,) = client.monitoring().versions
        ngrams = next(s for s in version.signals if s.signal == NGRAMS)
        assert ngrams.alarm and ngrams.last is not None and ngrams.last.bins
        first, second = client.monitoring_history(version=1, signal=NGRAMS)
        assert (first.alarm, second.alarm) == (False, True)
        assert client.monitoring_history(since=first.closed_at, signal=NGRAMS) == [second]

    monkeypatch.setenv("MLCYCLE_DATA_DIR", str(tmp_path))
    report = tmp_path / "monitor.html"
    argv = ["monitor", "--url", url, "--api-key", READ_SECRET, "--report", str(report)]
    result = CliRunner().invoke(app, argv, terminal_width=250)
    assert result.exit_code == 0, result.output
    (line,) = [x for x in result.output.splitlines() if x.startswith(f"│ {NGRAMS} ")]
    assert "alarm" in line
    page = report.read_text()
    # Each signal with windows gets its statistic over time; ngrams and score have shares.
    with_windows = [s for s in version.signals if s.windows]
    assert page.count("data-plot='statistic'") == len(with_windows) >= 2
    assert page.count("data-plot='shares'") >= 1

    raw = CliRunner().invoke(app, ["monitor", "--url", url, "--api-key", READ_SECRET, "--json"])
    assert raw.exit_code == 0, raw.output
    assert json.loads(raw.stdout) == replica.monitoring().json()


def test_the_client_s_decisions_reach_the_real_feedback_route(replica: Replica) -> None:
    url = str(replica.client.base_url)
    decided = [Decision(comment_id=f"never-scored-{uuid.uuid4().hex}", label=1)]
    with InferenceClient(url, api_key=LABEL_KEY.rsplit(":", 1)[1]) as moderator:
        first = moderator.feedback(decided)
        assert (first.accepted, first.joined, first.pending, first.duplicate) == (1, 0, 1, 0)
        again = moderator.feedback(decided)
        assert (again.accepted, again.duplicate) == (1, 1)
        # A named key is the reviewer: naming someone else is refused, as a message.
        other = [decided[0].model_copy(update={"reviewer": "someone-else"})]
        with pytest.raises(Forbidden, match="someone-else"):
            moderator.feedback(other)
    with InferenceClient(url, api_key=READ_SECRET) as reader, pytest.raises(Forbidden):
        reader.feedback(decided)
