"""The event loop's score cache against a real Redis: one script call stores a batch with its
TTL, a Redis that refuses scripts gets SETs, a Redis that goes away costs one short timeout."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import numpy as np
import pytest
import redis

from mlcycle.common.infra.redis import EmbeddedRedis
from mlcycle.inference.cache import ScoreCache, decode_scores, encode_scores

pytestmark = pytest.mark.integration


def items(prefix: str, n: int) -> list[tuple[str, bytes]]:
    return [
        (f"{prefix}:{i}", encode_scores(np.array([1 - i / n, i / n], np.float32))) for i in range(n)
    ]


async def write_then_read(cache: ScoreCache, batch: list[tuple[str, bytes]]) -> list:
    aio = cache.aio()
    try:
        await aio.set_many(batch)
        return await aio.get_many([key for key, _ in batch] + ["never-written"])
    finally:
        await aio.close()


@pytest.mark.parametrize("ttl_s", [3600, 0])
def test_a_batch_is_stored_at_once_with_its_ttl(redis_server: EmbeddedRedis, ttl_s: int) -> None:
    cache = ScoreCache(redis_server.url, ttl_s=ttl_s)
    batch = items(f"test:batch:{ttl_s}", 64)
    values = asyncio.run(write_then_read(cache, batch))
    assert values == [value for _, value in batch] + [None]
    assert np.allclose(decode_scores(values[16], 2), [0.75, 0.25])
    plain = redis.Redis.from_url(redis_server.url)
    ttls = {plain.ttl(key) for key, _ in batch}
    if ttl_s:
        assert all(0 < ttl <= ttl_s for ttl in ttls)
    else:
        assert ttls == {-1}  # no expiry
    assert cache.healthy
    plain.close()
    cache.close()


def test_a_redis_that_refuses_scripts_gets_plain_sets(tmp_path: Path) -> None:
    with EmbeddedRedis(0, data_dir=tmp_path / "redis") as server:
        plain = redis.Redis.from_url(server.url)
        plain.execute_command("ACL", "SETUSER", "default", "-@scripting")
        cache = ScoreCache(server.url, ttl_s=60)
        batches = [items(f"test:noscript:{n}", 3) for n in range(2)]

        async def scenario() -> list:
            aio = cache.aio()
            for batch in batches:
                await aio.set_many(batch)
            values = await aio.get_many([key for batch in batches for key, _ in batch])
            await aio.close()
            return values

        assert asyncio.run(scenario()) == [value for batch in batches for _, value in batch]
        assert all(0 < plain.ttl(key) <= 60 for batch in batches for key, _ in batch)
        assert plain.info("commandstats")["cmdstat_evalsha"]["rejected_calls"] == 1  # asked once
        assert cache.healthy
        plain.close()
        cache.close()


def test_a_redis_that_goes_away_costs_one_timeout_then_is_skipped(tmp_path: Path) -> None:
    server = EmbeddedRedis(0, data_dir=tmp_path / "redis").start()
    cache = ScoreCache(server.url, ttl_s=60)

    async def scenario() -> float:
        aio = cache.aio()
        await aio.set_many(items("test:gone", 2))
        assert (await aio.get_many(["test:gone:1"]))[0] is not None
        server.stop()
        assert await aio.get_many(["test:gone:1"]) == [None]
        started = time.perf_counter()
        for _ in range(100):
            assert await aio.get_many(["test:gone:1"]) == [None]
            await aio.set_many(items("test:gone", 2))
        await aio.close()
        return time.perf_counter() - started

    assert asyncio.run(scenario()) < 0.05
    assert not cache.healthy
    assert cache.ping() is False
    cache.close()


def test_the_blocking_cache_reads_and_writes_what_the_event_loop_does(
    redis_server: EmbeddedRedis,
) -> None:
    cache = ScoreCache(redis_server.url, ttl_s=60)
    written = items("test:blocking:loop", 3)
    asyncio.run(write_then_read(cache, written))
    assert cache.get_many([key for key, _ in written]) == [value for _, value in written]
    mine = items("test:blocking:own", 2)
    cache.set_many(mine)
    assert cache.get_many([key for key, _ in mine]) == [value for _, value in mine]
    plain = redis.Redis.from_url(redis_server.url)
    assert all(0 < plain.ttl(key) <= 60 for key, _ in mine)
    assert cache.ping() is True and cache.healthy
    plain.close()
    cache.close()
