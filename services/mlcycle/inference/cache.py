"""The score cache: Redis, keyed by model version, transform version and normalized text.

A key is ``mlcycle:score:<model>:<version>:<transform>:<hash>``, the hash over the
normalized text (and the instance's metadata in canonical JSON, when it has
any). A new model version therefore never reads an old version's score. The
value is the class probabilities as little-endian float32 bytes, so the label
is derived with the threshold in force when it is read.

Redis is an optimisation, never a dependency: every failure or timeout is
absorbed (the texts count as misses), and after one the cache is skipped for a
growing pause, so a dead or slow Redis does not add its timeout to every request.
The API's event loop reads and writes through :class:`AsyncScoreCache`, which
shares its pause with the blocking client the readiness check pings.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import threading
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from mlcycle.inference.metrics import CACHE_ERRORS

if TYPE_CHECKING:
    from mlcycle.inference.aiocache import AsyncNoCache, AsyncScoreCache

log = logging.getLogger(__name__)

KEY_PREFIX = "mlcycle:score"
# Local Redis answers in well under a millisecond; past this it is considered down.
SOCKET_TIMEOUT_S = 0.1
BACKOFF_FIRST_S = 0.5
BACKOFF_MAX_S = 10.0
_WHITESPACE = re.compile(r"[ \t\n\r\f\v]+")


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

    Shared by the blocking and the asyncio clients of one cache, so a failure seen
    by either pauses both, and a success seen by either ends the pause.
    """

    def __init__(self, url: str) -> None:
        self.url = url
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


class ScoreCache:
    """Scores in Redis with MGET reads and pipelined SETs; failures count as misses."""

    def __init__(self, url: str, ttl_s: int, *, timeout_s: float = SOCKET_TIMEOUT_S) -> None:
        self.url = url
        self.ttl_s = ttl_s or None  # 0 means no expiry
        self.timeout_s = timeout_s
        self.health = CacheHealth(url)
        self._redis = redis.Redis.from_url(
            url,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            retry=Retry(NoBackoff(), 0),  # a retry would double the wait on a dead server
        )

    @property
    def healthy(self) -> bool:
        """False since the last failed operation, until one succeeds again."""
        return self.health.healthy

    def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        """The cached value of each key (None for a miss, or for all while Redis is down)."""
        if not keys or not self.health.usable():
            return [None] * len(keys)
        try:
            values = self._redis.mget(keys)
        except redis.RedisError as exc:
            self.health.failed("get", exc)
            return [None] * len(keys)
        self.health.succeeded()
        return values

    def set_many(self, items: Sequence[tuple[str, bytes]]) -> None:
        """Store ``(key, value)`` pairs with the TTL, in one round trip; failures are absorbed."""
        if not items or not self.health.usable():
            return
        try:
            pipe = self._redis.pipeline(transaction=False)
            for key, value in items:
                pipe.set(key, value, ex=self.ttl_s)
            pipe.execute()
        except redis.RedisError as exc:
            self.health.failed("set", exc)
            return
        self.health.succeeded()

    def ping(self) -> bool:
        """Ask Redis now, whatever the backoff says (for readiness checks)."""
        try:
            self._redis.ping()
        except redis.RedisError as exc:
            self.health.failed("ping", exc)
            return False
        self.health.succeeded()
        return True

    def aio(self) -> AsyncScoreCache:
        """An asyncio client of the same Redis, sharing this one's health (use it on one loop)."""
        from mlcycle.inference.aiocache import AsyncScoreCache

        return AsyncScoreCache(self.url, self.ttl_s, self.health, timeout_s=self.timeout_s)

    def close(self) -> None:
        """Release the connections."""
        self._redis.close()


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
        from mlcycle.inference.aiocache import AsyncNoCache

        return AsyncNoCache()

    def close(self) -> None:
        """Nothing to release."""
