"""The score cache as the API's event loop uses it: ``redis.asyncio``, no thread involved.

Same keys, values and failure handling as :class:`~mlcycle.inference.cache.ScoreCache`
(whose :class:`~mlcycle.inference.cache.CacheHealth` it shares): every Redis
error or timeout counts as a miss and pauses the cache, so a dead Redis costs
one short timeout, then nothing until the pause is over.

A batch's scores are stored by one small Lua script (``SET key value EX ttl`` for
each) rather than a pipeline of SETs: the client parses one reply instead of
one per key, a tenth of the cost for a batch of 64. A server that refuses
scripts (an ACL, a proxy) gets the pipeline instead.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import NoPermissionError, RedisError, ResponseError

from mlcycle.inference.cache import SOCKET_TIMEOUT_S, CacheHealth

log = logging.getLogger(__name__)

# KEYS: the keys; ARGV[1]: the TTL in seconds (0: none), ARGV[2..]: the values, in order.
SET_MANY = """
local ttl = tonumber(ARGV[1])
for i, key in ipairs(KEYS) do
    if ttl > 0 then
        redis.call('SET', key, ARGV[i + 1], 'EX', ttl)
    else
        redis.call('SET', key, ARGV[i + 1])
    end
end
return #KEYS
"""


class AsyncScoreCache:
    """Scores in Redis from one event loop: MGET reads, one script call per batch of writes."""

    def __init__(
        self,
        url: str,
        ttl_s: int | None,
        health: CacheHealth,
        *,
        timeout_s: float = SOCKET_TIMEOUT_S,
    ) -> None:
        self.ttl_s = ttl_s or None  # 0 means no expiry
        self.health = health
        self._redis = aioredis.Redis.from_url(
            url,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            retry=Retry(NoBackoff(), 0),  # a retry would double the wait on a dead server
        )
        self._set_many = self._redis.register_script(SET_MANY)
        self._scripts_refused = False

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        """The cached value of each key (None for a miss, or for all while Redis is down)."""
        if not keys or not self.health.usable():
            return [None] * len(keys)
        try:
            values = await self._redis.mget(keys)
        except RedisError as exc:
            self.health.failed("get", exc)
            return [None] * len(keys)
        self.health.succeeded()
        return values

    async def set_many(self, items: Sequence[tuple[str, bytes]]) -> None:
        """Store ``(key, value)`` pairs with the TTL, in one round trip; failures are absorbed."""
        if not items or not self.health.usable():
            return
        try:
            if self._scripts_refused or not await self._set_by_script(items):
                await self._set_by_pipeline(items)
        except RedisError as exc:
            self.health.failed("set", exc)
            return
        self.health.succeeded()

    async def _set_by_script(self, items: Sequence[tuple[str, bytes]]) -> bool:
        """Store ``items`` with one script call; False when the server refuses scripts."""
        keys = [key for key, _ in items]
        args = [self.ttl_s or 0, *(value for _, value in items)]
        try:
            await self._set_many(keys=keys, args=args)
        except ResponseError as exc:
            if not _refuses_scripts(exc):
                raise
            log.info("Redis refuses scripts; scores are stored by SETs", extra={"error": str(exc)})
            self._scripts_refused = True
            return False
        return True

    async def _set_by_pipeline(self, items: Sequence[tuple[str, bytes]]) -> None:
        pipe = self._redis.pipeline(transaction=False)
        for key, value in items:
            pipe.set(key, value, ex=self.ttl_s)
        await pipe.execute()

    async def close(self) -> None:
        """Release the connections."""
        await self._redis.aclose()


def _refuses_scripts(exc: ResponseError) -> bool:
    """Whether ``exc`` says the server does not run scripts (disabled, renamed or forbidden)."""
    return isinstance(exc, NoPermissionError) or "unknown command" in str(exc).lower()


class AsyncNoCache:
    """No cache configured: every text is a miss."""

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        """All misses."""
        return [None] * len(keys)

    async def set_many(self, items: Sequence[tuple[str, bytes]]) -> None:
        """Nothing to store."""

    async def close(self) -> None:
        """Nothing to release."""
