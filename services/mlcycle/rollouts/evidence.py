"""A rollout's pooled evidence, and the stores every replica adds its tally to.

:class:`RolloutEvidence` reads figures off the summed counters of
:mod:`mlcycle.rollouts.tally`. :class:`EvidenceStore` is where replicas pool them:
:class:`MemoryEvidenceStore` in one process (tests, the embedded stack) and
:class:`RedisEvidenceStore` across processes, one Redis hash per rollout whose
counters one Lua script adds atomically, so concurrent replicas sum exactly.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import redis

from mlcycle.contracts.rollouts import Latency, Role, ScoreDeltas
from mlcycle.rollouts.tally import (
    DELTA_BUCKETS,
    LATENCY_EDGES,
    LATENCY_EDGES_MS,
    PAIR,
    EvidenceTally,
)

# A logit variance under this is no variance (constant scores, up to rounding of the sums).
FLAT_VARIANCE = 1e-9


def correlation_from_sums(n: int, sums: tuple[float, ...]) -> float | None:
    """Pearson's correlation of production's and the candidate's logits from their sums.

    ``sums``: Σlp, Σlc, Σlp², Σlc², Σlp·lc over ``n`` pairs (see
    :mod:`mlcycle.rollouts.tally`). None with fewer than 2 pairs or when production's
    scores do not vary (nothing to follow). A candidate whose scores do not vary while
    production's do carries no information about them: 0.
    """
    if n < 2:
        return None
    sp, sc, spp, scc, spc = sums
    mean_p, mean_c = sp / n, sc / n
    var_p = max(spp / n - mean_p * mean_p, 0.0)
    var_c = max(scc / n - mean_c * mean_c, 0.0)
    if var_p <= FLAT_VARIANCE:
        return None
    if var_c <= FLAT_VARIANCE:
        return 0.0
    covariance = spc / n - mean_p * mean_c
    return min(1.0, max(-1.0, covariance / math.sqrt(var_p * var_c)))


# The hash field holding the last add's time (epoch seconds); every other field is a counter.
UPDATED_AT = "updated_at"
REDIS_PREFIX = "mlcycle:rollout:"
REDIS_TTL_S = 30 * 24 * 3600


def _quantile_index(counts: np.ndarray, q: float) -> tuple[int, float]:
    """The bucket holding quantile ``q`` and the rank's fraction into that bucket."""
    cumulative = np.cumsum(counts)
    rank = q * float(cumulative[-1])
    i = int(np.searchsorted(cumulative, rank, side="left"))
    i = min(i, len(counts) - 1)
    before = float(cumulative[i - 1]) if i else 0.0
    inside = float(counts[i])
    return i, (rank - before) / inside if inside else 0.0


def _latency_ms(counts: np.ndarray, q: float) -> float:
    i, _ = _quantile_index(counts, q)
    edges = LATENCY_EDGES_MS
    if i == 0:
        return edges[0]
    if i >= len(edges):
        return edges[-1]
    return math.sqrt(edges[i - 1] * edges[i])  # the bucket's geometric middle


def latency_of(counts: np.ndarray) -> Latency:
    """p50 and p99 of calls counted per latency bucket, with the counts themselves."""
    if not counts.sum():
        return Latency()
    buckets = {int(i): int(counts[i]) for i in np.flatnonzero(counts)}
    return Latency(
        p50_ms=_latency_ms(counts, 0.5), p99_ms=_latency_ms(counts, 0.99), buckets=buckets
    )


def latency_since(now: Latency, before: Latency | None) -> Latency:
    """The latency of the calls made since ``before`` was read (``now`` minus ``before``).

    Without bucket counts on either side (records older than the counts), ``now`` as is.
    """
    if before is None or not before.buckets:
        return now
    if not now.buckets:
        return now
    counts = np.zeros(LATENCY_EDGES + 1, np.int64)
    for i, n in now.buckets.items():
        counts[i] += n
    for i, n in before.buckets.items():
        counts[i] -= n
    return latency_of(np.maximum(counts, 0))


def _delta(counts: np.ndarray, q: float) -> float:
    i, fraction = _quantile_index(counts, q)
    width = 2.0 / DELTA_BUCKETS
    return -1.0 + width * (i + min(max(fraction, 0.0), 1.0))


@dataclass(frozen=True)
class RolloutEvidence:
    """The pooled evidence of one rollout, and when a replica last added to it."""

    tally: EvidenceTally = field(default_factory=EvidenceTally)
    updated_at: float | None = None  # epoch seconds of the last add by any replica

    def requests(self, role: Role) -> int:
        """Instances ``role`` was asked to score (failed ones included)."""
        return int(self.tally.count(f"{role}:requests"))

    def errors(self, role: Role) -> int:
        """Instances ``role`` failed to score."""
        return int(self.tally.count(f"{role}:errors"))

    def error_rate(self, role: Role) -> float | None:
        """Errors per instance; None before any."""
        requests = self.requests(role)
        return self.errors(role) / requests if requests else None

    def latency(self, role: Role) -> Latency:
        """p50 and p99 of ``role``'s call latency (within about 9 %)."""
        return latency_of(self.tally.latency_counts(role))

    @property
    def pairs(self) -> int:
        """Comments scored by both versions."""
        return int(self.tally.count(f"{PAIR}:n"))

    @property
    def agreement(self) -> float | None:
        """Share of pairs both versions labelled alike at their served thresholds."""
        pairs = self.pairs
        return int(self.tally.count(f"{PAIR}:agree")) / pairs if pairs else None

    @property
    def correlated_pairs(self) -> int:
        """Pairs the score correlation is over (pairs tallied before it was measured lack it)."""
        return self.tally.logit_sums()[0]

    @property
    def score_correlation(self) -> float | None:
        """Pearson's correlation of the two versions' logits over the paired comments."""
        return correlation_from_sums(*self.tally.logit_sums())

    def score_delta(self) -> ScoreDeltas:
        """Candidate score minus production score over the pairs (quantiles per bucket)."""
        pairs = self.pairs
        if not pairs:
            return ScoreDeltas()
        counts = self.tally.delta_counts()
        return ScoreDeltas(
            mean=float(self.tally.count(f"{PAIR}:delta_sum")) / pairs,
            mean_abs=float(self.tally.count(f"{PAIR}:delta_abs_sum")) / pairs,
            p05=_delta(counts, 0.05),
            p50=_delta(counts, 0.5),
            p95=_delta(counts, 0.95),
        )


class EvidenceStore(Protocol):
    """Where the replicas pool a rollout's evidence."""

    def add(self, rollout: str, tally: EvidenceTally, now: float) -> None:
        """Add ``tally`` to the rollout's evidence, seen at ``now`` (epoch seconds).

        An empty tally changes nothing, not even ``updated_at``: a replica that saw
        no traffic has no evidence to vouch for.
        """

    def read(self, rollout: str) -> RolloutEvidence:
        """The rollout's evidence so far (empty, ``updated_at`` None, when nothing was added)."""

    def forget(self, rollout: str) -> None:
        """Drop the rollout's evidence."""


class MemoryEvidenceStore:
    """The evidence of one process's rollouts; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._evidence: dict[str, tuple[EvidenceTally, float]] = {}

    def add(self, rollout: str, tally: EvidenceTally, now: float) -> None:
        if tally.empty:
            return
        with self._lock:
            pooled, updated_at = self._evidence.get(rollout, (EvidenceTally(), now))
            pooled.merge(tally)
            self._evidence[rollout] = (pooled, max(updated_at, now))

    def read(self, rollout: str) -> RolloutEvidence:
        with self._lock:
            found = self._evidence.get(rollout)
            if found is None:
                return RolloutEvidence()
            return RolloutEvidence(found[0].copy(), found[1])

    def forget(self, rollout: str) -> None:
        with self._lock:
            self._evidence.pop(rollout, None)


# KEYS[1]: the rollout's hash. ARGV[1]: now, ARGV[2]: TTL (s), then name, kind, amount
# triples (kind "i": HINCRBY, "f": HINCRBYFLOAT). One script, so an add is all or nothing.
_ADD = """
local current = redis.call('HGET', KEYS[1], 'UPDATED_AT')
if not current or tonumber(ARGV[1]) > tonumber(current) then
    redis.call('HSET', KEYS[1], 'UPDATED_AT', ARGV[1])
end
for i = 3, #ARGV, 3 do
    if ARGV[i + 1] == 'i' then
        redis.call('HINCRBY', KEYS[1], ARGV[i], ARGV[i + 2])
    else
        redis.call('HINCRBYFLOAT', KEYS[1], ARGV[i], ARGV[i + 2])
    end
end
redis.call('EXPIRE', KEYS[1], ARGV[2])
return 1
""".replace("UPDATED_AT", UPDATED_AT)


class RedisEvidenceStore:
    """The evidence of every replica, one Redis hash per rollout (``<prefix><rollout>``).

    Redis errors propagate (:class:`redis.RedisError`): the replica keeps its
    tally and adds it on a later flush. The hash expires ``ttl_s`` after its
    last add, so abandoned rollouts do not stay forever.
    """

    def __init__(
        self, client: redis.Redis, prefix: str = REDIS_PREFIX, ttl_s: int = REDIS_TTL_S
    ) -> None:
        if ttl_s <= 0:
            raise ValueError("ttl_s must be positive")
        self.client = client
        self.prefix = prefix
        self.ttl_s = int(ttl_s)
        self._add = client.register_script(_ADD)

    def key(self, rollout: str) -> str:
        """The hash holding ``rollout``'s evidence."""
        return self.prefix + rollout

    def add(self, rollout: str, tally: EvidenceTally, now: float) -> None:
        counters = tally.fields()
        if not counters:
            return
        args: list[str | int] = [repr(float(now)), self.ttl_s]
        for name, amount in counters.items():
            if isinstance(amount, int):
                args += [name, "i", amount]
            else:
                args += [name, "f", repr(float(amount))]
        self._add(keys=[self.key(rollout)], args=args)

    def read(self, rollout: str) -> RolloutEvidence:
        stored = {
            (k.decode("utf-8") if isinstance(k, bytes) else k): v
            for k, v in self.client.hgetall(self.key(rollout)).items()
        }
        if not stored:
            return RolloutEvidence()
        updated_at = stored.pop(UPDATED_AT, None)
        return RolloutEvidence(
            EvidenceTally.from_fields(stored),
            float(updated_at) if updated_at is not None else None,
        )

    def forget(self, rollout: str) -> None:
        self.client.delete(self.key(rollout))
