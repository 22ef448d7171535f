"""The score cache: Redis, keyed by model version, transform version and normalized text.

A key is ``mlcycle:score:<model>:<version>:<transform>:<hash>``, the hash over the
normalized text (and the instance's metadata in canonical JSON, when it has
any). A new model version therefore never reads an old version's score. The
value is the class probabilities as little-endian float32 bytes, so the label
is derived with the threshold in force when it is read.

Redis is an optimisation, never a dependency: every failure or timeout is
absorbed (the texts count as misses), and after one the cache is skipped for a
growing pause, so a dead or slow Redis does not add its timeout to every request.

The cache is written once, for asyncio: :class:`AsyncScoreCache` (``redis.asyncio``,
replies parsed by hiredis), which the API's event loop reads and writes through.
:class:`ScoreCache` is its blocking face for callers that block (the streaming
scorer, lineage, the readiness check): it runs an :class:`AsyncScoreCache` on a
private event loop. Every client of one cache shares one :class:`CacheHealth`, so
a failure seen by any of them pauses them all.

A batch's scores are stored by one small Lua script (``SET key value EX ttl`` for
each) rather than a pipeline of SETs: the client parses one reply instead of
one per key, a tenth of the cost for a batch of 64. A server that refuses
scripts (an ACL, a proxy) gets the pipeline instead.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import orjson
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import AuthenticationError, NoPermissionError, RedisError, ResponseError

from mlcycle.common.redis_connection import ConnectionOptions, redacted
from mlcycle.inference.loop import LoopThread
from mlcycle.inference.metrics import CACHE_ERRORS

log = logging.getLogger(__name__)

KEY_PREFIX = "mlcycle:score"
# Local Redis answers in well under a millisecond; past this it is considered down.
SOCKET_TIMEOUT_S = 0.1
BACKOFF_FIRST_S = 0.5
BACKOFF_MAX_S = 10.0
_WHITESPACE = re.compile(r"[ \t\n\r\f\v]+")
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


def normalize_text(text: str, max_chars: int) -> str:
    """``text`` as the cache sees it: runs of ASCII whitespace as one space, trimmed.

    Every transform collapses and trims whitespace itself, so both forms get the
    same vector, except when the raw text is longer than the transform's
    ``max_chars`` (it is cut before anything else): such a text is kept as is.
    """
    if len(text) > max_chars:
        return text
    return _WHITESPACE.sub(" ", text).strip(" ")


def key_prefix(model: str, version: int, transform: str) -> str:
    """The part of every key shared by one model version (and its transform)."""
    return f"{KEY_PREFIX}:{model}:{version}:{transform}:"


def cache_key(prefix: str, text: str, metadata: Mapping[str, Any] | None, max_chars: int) -> str:
    """The key of one instance: ``prefix`` + a 128-bit hash of its normalized text and metadata."""
    digest = hashlib.blake2b(
        normalize_text(text, max_chars).encode("utf-8", "surrogatepass"), digest_size=16
    )
    if metadata:
        digest.update(b"\x00")
        digest.update(_canonical(metadata))
    return prefix + digest.hexdigest()


def _canonical(metadata: Mapping[str, Any]) -> bytes:
    try:
        return orjson.dumps(metadata, option=orjson.OPT_SORT_KEYS)
    except TypeError:  # integers beyond 64 bits and the like
        return json.dumps(metadata, sort_keys=True, default=str).encode("utf-8", "surrogatepass")


def encode_scores(probabilities: np.ndarray) -> bytes:
    """One row of class probabilities as a cache value."""
    return probabilities.astype("<f4", copy=False).tobytes()


def decode_scores(value: bytes, n_classes: int) -> np.ndarray | None:
    """The probabilities in a cache value, or None when it is not one of ``n_classes`` classes."""
    if len(value) != 4 * n_classes:
        return None
    return np.frombuffer(value, "<f4")


class CacheHealth:
    """Whether Redis may be asked now: after a failure it is skipped for a growing pause.

    Shared by every client of one cache (each event loop has its own), so a failure
    seen by any pauses them all, and a success seen by any ends the pause.
    """

    def __init__(self, url: str) -> None:
        self.url = redacted(url)  # logged
        self._lock = threading.Lock()
        self._failures = 0
        self._skip_until = 0.0

    @property
    def healthy(self) -> bool:
        """False since the last failed operation, until one succeeds again."""
        return self._failures == 0

    def usable(self) -> bool:
        """True unless Redis failed and the pause after it is not over."""
        return self._failures == 0 or time.monotonic() >= self._skip_until

    def failed(self, operation: str, exc: Exception) -> None:
        """Count a failed ``operation`` and pause the cache (longer after each failure)."""
        CACHE_ERRORS.labels(operation).inc()
        now = time.monotonic()
        with self._lock:
            if self._failures and now < self._skip_until:
                # Started before the pause began (concurrent calls): the pause already covers it.
                return
            self._failures += 1
            pause = min(BACKOFF_MAX_S, BACKOFF_FIRST_S * 2 ** (self._failures - 1))
            self._skip_until = now + pause
            first = self._failures == 1
        if isinstance(exc, AuthenticationError):
            # Not an outage that passes: the password is wrong or missing. Said at every
            # pause, not once, since nothing gets better until someone changes it.
            log.error(
                "score cache refused mlcycle's login: check MLCYCLE_REDIS_PASSWORD; "
                "predicting uncached",
                extra={"redis": self.url, "error": str(exc), "retry_in_s": pause},
            )
            return
        if first:
            log.warning(
                "score cache unreachable; predicting uncached",
                extra={"redis": self.url, "error": str(exc), "retry_in_s": pause},
            )

    def succeeded(self) -> None:
        """End the pause after a successful operation."""
        if self._failures:
            with self._lock:
                self._failures = 0
            log.info("score cache reachable again", extra={"redis": self.url})


class AsyncScoreCache:
    """Scores in Redis from one event loop: MGET reads, one script call per batch of writes."""

    def __init__(
        self,
        url: str,
        ttl_s: int | None,
        health: CacheHealth | None = None,
        *,
        timeout_s: float = SOCKET_TIMEOUT_S,
        connection: ConnectionOptions | None = None,
    ) -> None:
        self.url = url
        self.ttl_s = ttl_s or None  # 0 means no expiry
        self.timeout_s = timeout_s
        self.health = health or CacheHealth(url)
        # The password and CA (mlcycle.common.redis_connection.connection_options).
        self.connection = connection or ConnectionOptions()
        self._redis = aioredis.Redis.from_url(
            url,
            **self.connection,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            retry=Retry(NoBackoff(), 0),  # a retry would double the wait on a dead server
        )
        self._set_many = self._redis.register_script(SET_MANY)
        self._scripts_refused = False

    @property
    def healthy(self) -> bool:
        """False since the last failed operation, until one succeeds again."""
        return self.health.healthy

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

    async def ping(self) -> bool:
        """Ask Redis now, whatever the backoff says (for readiness checks)."""
        try:
            await self._redis.ping()
        except RedisError as exc:
            self.health.failed("ping", exc)
            return False
        self.health.succeeded()
        return True

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


class ScoreCache:
    """The blocking face of :class:`AsyncScoreCache`: its calls run on a private event loop.

    Redis, unlike ``grpc.aio``, costs the other loops of the process nothing.
    """

    def __init__(
        self,
        url: str,
        ttl_s: int,
        *,
        timeout_s: float = SOCKET_TIMEOUT_S,
        connection: ConnectionOptions | None = None,
    ) -> None:
        self.url = url
        self.ttl_s = ttl_s or None  # 0 means no expiry
        self.timeout_s = timeout_s
        self.connection = connection or ConnectionOptions()
        self.health = CacheHealth(url)
        self._loop = LoopThread("score-cache")
        self._core = self._loop.run(self._open())

    async def _open(self) -> AsyncScoreCache:
        return self.aio()  # made on the loop that will use its connections

    @property
    def healthy(self) -> bool:
        """False since the last failed operation, until one succeeds again."""
        return self.health.healthy

    def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        """The cached value of each key (None for a miss, or for all while Redis is down)."""
        if not keys or not self.health.usable():  # nothing to ask Redis: no trip to the loop
            return [None] * len(keys)
        return self._loop.run(self._core.get_many(keys))

    def set_many(self, items: Sequence[tuple[str, bytes]]) -> None:
        """Store ``(key, value)`` pairs with the TTL, in one round trip; failures are absorbed."""
        if items and self.health.usable():
            self._loop.run(self._core.set_many(items))

    def ping(self) -> bool:
        """Ask Redis now, whatever the backoff says (for readiness checks)."""
        return self._loop.run(self._core.ping())

    def aio(self) -> AsyncScoreCache:
        """A client of the same Redis for the calling event loop, sharing this one's health."""
        return AsyncScoreCache(
            self.url,
            self.ttl_s,
            self.health,
            timeout_s=self.timeout_s,
            connection=self.connection,
        )

    def close(self) -> None:
        """Release the connections (and the private loop)."""
        self._loop.run(self._core.close())
        self._loop.close()


class AsyncNoCache:
    """No cache configured, on an event loop: every text is a miss."""

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        """All misses."""
        return [None] * len(keys)

    async def set_many(self, items: Sequence[tuple[str, bytes]]) -> None:
        """Nothing to store."""

    async def close(self) -> None:
        """Nothing to release."""


class NoCache:
    """The cache when none is configured: every text is a miss."""

    healthy = True
    url = ""

    def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        """All misses."""
        return [None] * len(keys)

    def set_many(self, items: Sequence[tuple[str, bytes]]) -> None:
        """Nothing to store."""

    def ping(self) -> bool:
        """Always fine."""
        return True

    def aio(self) -> AsyncNoCache:
        """The asyncio side of no cache."""
        return AsyncNoCache()

    def close(self) -> None:
        """Nothing to release."""
