"""The evidence store contract: in memory and in Redis (a real server) alike."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator

import numpy as np
import pytest
import redis

from mlcycle.common.infra.redis import EmbeddedRedis
from mlcycle.rollouts.evidence import (
    EvidenceStore,
    MemoryEvidenceStore,
    RedisEvidenceStore,
    RolloutEvidence,
)
from mlcycle.rollouts.tally import EvidenceTally

pytestmark = pytest.mark.integration


@pytest.fixture(params=["memory", "redis"])
def store(request: pytest.FixtureRequest) -> Iterator[EvidenceStore]:
    if request.param == "memory":
        yield MemoryEvidenceStore()
        return
    server: EmbeddedRedis = request.getfixturevalue("redis_server")
    client = redis.Redis.from_url(server.url)
    yield RedisEvidenceStore(client, prefix=f"test:{uuid.uuid4().hex[:8]}:")
    client.close()


def sample(calls: int = 1) -> EvidenceTally:
    tally = EvidenceTally()
    for _ in range(calls):
        tally.call("candidate", 2, 0.005, ok=True)
        tally.call("production", 2, 0.004, ok=True)
        tally.pairs(np.array([0.2, 0.7]), np.array([0.3, 0.4]), 0.5, 0.5)
    return tally


def test_nothing_added_reads_empty(store: EvidenceStore) -> None:
    evidence = store.read("r-none")
    assert evidence.tally.empty and evidence.updated_at is None and evidence.pairs == 0
    store.add("r-none", EvidenceTally(), 5.0)
    assert store.read("r-none").updated_at is None


def test_adds_sum_and_updated_at_is_the_latest(store: EvidenceStore) -> None:
    store.add("r1", sample(), 100.0)
    store.add("r1", sample(2), 90.0)  # a replica whose flush arrives late
    evidence = store.read("r1")
    expected = sample(3).fields()
    assert evidence.tally.fields() == pytest.approx(expected)
    assert evidence.tally.fields().keys() == expected.keys()
    assert evidence.requests("candidate") == 6 and evidence.pairs == 6
    assert evidence.agreement == pytest.approx(0.5)
    assert evidence.score_delta().mean == pytest.approx((0.1 - 0.3) / 2)
    # The logit sums pool as floats (HINCRBYFLOAT in Redis), so the correlation reads alike.
    assert evidence.correlated_pairs == 6
    assert evidence.score_correlation == pytest.approx(RolloutEvidence(sample(3)).score_correlation)
    assert evidence.updated_at == 100.0
    assert store.read("r2").pairs == 0
    store.forget("r1")
    assert store.read("r1").updated_at is None


def test_concurrent_writers_pool_exactly(
    store: EvidenceStore, request: pytest.FixtureRequest
) -> None:
    if isinstance(store, RedisEvidenceStore):
        # Each writer its own connection, as each replica has.
        client = redis.Redis.from_url(request.getfixturevalue("redis_server").url)
        writers = [store, RedisEvidenceStore(client, prefix=store.prefix)]
    else:
        writers = [store, store]
    adds = 200

    def write(writer: EvidenceStore, start: float) -> None:
        for i in range(adds):
            writer.add("busy", sample(), start + i)

    threads = [threading.Thread(target=write, args=(w, 1000.0 * n)) for n, w in enumerate(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    evidence = store.read("busy")
    assert evidence.requests("candidate") == 2 * adds * 2
    assert evidence.pairs == 2 * adds * 2
    assert evidence.tally.fields()["pair:delta_sum"] == pytest.approx(-0.2 * 2 * adds)
    assert evidence.updated_at == 1000.0 + adds - 1


def test_redis_evidence_expires(redis_server: EmbeddedRedis) -> None:
    client = redis.Redis.from_url(redis_server.url)
    store = RedisEvidenceStore(client, prefix=f"ttl:{uuid.uuid4().hex[:8]}:", ttl_s=60)
    store.add("r1", sample(), 1.0)
    assert 0 < client.ttl(store.key("r1")) <= 60
    with pytest.raises(ValueError, match="ttl_s"):
        RedisEvidenceStore(client, ttl_s=0)
    client.close()
