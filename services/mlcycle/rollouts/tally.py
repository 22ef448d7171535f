"""What one process saw of a rollout, as additive counters that pool across replicas.

Each inference replica tallies in-process and adds its counters to one shared
store (a Redis hash: ``HINCRBY`` / ``HINCRBYFLOAT`` per counter), so the
registry reads the evidence of every replica as one sum. Counter names (the
shared format; ``<role>`` is ``production`` or ``candidate``):

- ``<role>:calls``: scoring calls made by that version;
- ``<role>:requests``: instances it was asked to score (failed ones included);
- ``<role>:errors``: instances it failed to score;
- ``<role>:lat:<bb>``: calls whose latency fell in bucket ``bb`` (two digits) of
  :data:`LATENCY_EDGES_MS`: bucket 0 is below the first edge, bucket ``i`` is
  ``[edge[i-1], edge[i])``, the last is at or past the last edge. The edges rise
  by 2^(1/4), so a quantile read at a bucket's geometric middle is within 9 %;
- ``<role>:lat_sum``: the calls' latencies summed, in milliseconds (float);
- ``pair:n``: comments scored by both versions (a pair);
- ``pair:agree``: pairs both versions put on the same side of their own served
  threshold (positive at ``score >= threshold``);
- ``pair:delta:<bb>``: pairs whose candidate score minus production score fell in
  bucket ``bb`` of :data:`DELTA_BUCKETS` equal buckets over [-1, 1];
- ``pair:delta_sum``, ``pair:delta_abs_sum``: the deltas and their absolute values
  summed (float);
- ``pair:logit_n``: pairs tallied with the sums below (pairs tallied before they existed
  lack them, so this may be fewer than ``pair:n``);
- ``pair:lp_sum``, ``pair:lc_sum``, ``pair:lpp_sum``, ``pair:lcc_sum``, ``pair:lpc_sum``:
  over those pairs, the logits of production's score (``lp``) and of the candidate's
  (``lc``) summed, squared and summed, and multiplied and summed (float): what the
  Pearson correlation of the two models' logits is read from. Scores are clipped to
  [:data:`LOGIT_CLIP`, 1 - :data:`LOGIT_CLIP`] first; on the logit scale the many low
  scores of a low-prevalence stream stay apart instead of being squashed near 0.

Counters ending in ``_sum`` are floats; every other one is an integer.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import cast

import numpy as np

from mlcycle.contracts.rollouts import ROLES, Role

LATENCY_FIRST_MS = 0.05
LATENCY_RATIO = 2.0**0.25
LATENCY_EDGES = 80
# Bucket i > 0 starts at LATENCY_EDGES_MS[i - 1]; 0.05 ms to about 52 s.
LATENCY_EDGES_MS: tuple[float, ...] = tuple(
    LATENCY_FIRST_MS * LATENCY_RATIO**i for i in range(LATENCY_EDGES)
)
DELTA_BUCKETS = 40
PAIR = "pair"
LOGIT_CLIP = 1e-6
# The logit sums' counter names (see the module docstring), n first.
LOGIT_N = f"{PAIR}:logit_n"
LOGIT_SUMS = ("lp", "lc", "lpp", "lcc", "lpc")


def latency_bucket(latency_ms: float) -> int:
    """The latency bucket of one call (0 .. LATENCY_EDGES)."""
    return int(np.searchsorted(LATENCY_EDGES_MS, latency_ms, side="right"))


def delta_buckets(deltas: np.ndarray) -> np.ndarray:
    """The delta bucket of each score difference (0 .. DELTA_BUCKETS - 1)."""
    scaled = np.floor((np.asarray(deltas, np.float64) + 1.0) / 2.0 * DELTA_BUCKETS)
    return np.clip(scaled, 0, DELTA_BUCKETS - 1).astype(np.int64)


def logits(scores: np.ndarray) -> np.ndarray:
    """The logit of each probability, clipped to [LOGIT_CLIP, 1 - LOGIT_CLIP] first."""
    p = np.clip(np.asarray(scores, np.float64), LOGIT_CLIP, 1.0 - LOGIT_CLIP)
    return np.log(p) - np.log1p(-p)


def _is_float(name: str) -> bool:
    return name.endswith("_sum")


class EvidenceTally:
    """Counters of calls and pairs; merge them, and round-trip them through :meth:`fields`.

    Not thread-safe: the caller holds a lock around it.
    """

    def __init__(self) -> None:
        self._counts: dict[str, int | float] = {}

    def _bump(self, name: str, amount: int | float) -> None:
        if amount:
            self._counts[name] = self._counts.get(name, 0) + amount

    def call(self, role: Role, instances: int, latency_s: float, ok: bool) -> None:
        """One scoring call of ``instances`` rows by ``role``; a failure fails every row."""
        if role not in ROLES:
            raise ValueError(f"role must be one of {ROLES}, not {role!r}")
        latency_ms = max(0.0, float(latency_s) * 1000.0)
        self._bump(f"{role}:calls", 1)
        self._bump(f"{role}:requests", int(instances))
        if not ok:
            self._bump(f"{role}:errors", int(instances))
        self._bump(f"{role}:lat:{latency_bucket(latency_ms):02d}", 1)
        self._bump(f"{role}:lat_sum", latency_ms)

    def pairs(
        self,
        production: np.ndarray,
        candidate: np.ndarray,
        production_threshold: float,
        candidate_threshold: float,
    ) -> None:
        """Binary scores of the same comments by both versions, in the same order."""
        p = np.asarray(production, np.float64).reshape(-1)
        c = np.asarray(candidate, np.float64).reshape(-1)
        if p.shape != c.shape:
            raise ValueError(f"{p.size} production scores but {c.size} candidate scores")
        if not p.size:
            return
        agree = (p >= production_threshold) == (c >= candidate_threshold)
        deltas = c - p
        self._bump(f"{PAIR}:n", int(p.size))
        self._bump(f"{PAIR}:agree", int(agree.sum()))
        counts = np.bincount(delta_buckets(deltas), minlength=DELTA_BUCKETS)
        for i in np.flatnonzero(counts).tolist():
            self._bump(f"{PAIR}:delta:{i:02d}", int(counts[i]))
        self._bump(f"{PAIR}:delta_sum", float(deltas.sum()))
        self._bump(f"{PAIR}:delta_abs_sum", float(np.abs(deltas).sum()))
        lp, lc = logits(p), logits(c)
        self._bump(LOGIT_N, int(p.size))
        sums = (lp.sum(), lc.sum(), (lp * lp).sum(), (lc * lc).sum(), (lp * lc).sum())
        for name, total in zip(LOGIT_SUMS, sums, strict=True):
            self._bump(f"{PAIR}:{name}_sum", float(total))

    def merge(self, other: EvidenceTally) -> None:
        """Add ``other``'s counters to this tally."""
        for name, value in other._counts.items():
            self._bump(name, value)

    @property
    def empty(self) -> bool:
        """No call and no pair tallied."""
        return not self._counts

    def count(self, name: str) -> int | float:
        """One counter (0 when never bumped)."""
        return self._counts.get(name, 0)

    def fields(self) -> dict[str, int | float]:
        """Every non-zero counter by name (a copy)."""
        return dict(self._counts)

    @classmethod
    def from_fields(cls, mapping: Mapping[str | bytes, object]) -> EvidenceTally:
        """A tally from counters, as :meth:`fields` gave them or as read back from Redis."""
        tally = cls()
        for raw_name, raw in mapping.items():
            name = raw_name.decode("utf-8") if isinstance(raw_name, bytes) else raw_name
            value = cast(str | bytes | int | float, raw)
            if _is_float(name):
                tally._bump(name, float(value))
            else:
                number = float(value)
                if not number.is_integer():
                    raise ValueError(f"counter {name!r} must be an integer, not {number}")
                tally._bump(name, int(number))
        return tally

    def copy(self) -> EvidenceTally:
        """An independent copy."""
        return EvidenceTally.from_fields(dict(self._counts))

    def latency_counts(self, role: Role) -> np.ndarray:
        """Calls per latency bucket (LATENCY_EDGES + 1 of them)."""
        return np.array(
            [self._counts.get(f"{role}:lat:{i:02d}", 0) for i in range(LATENCY_EDGES + 1)],
            np.int64,
        )

    def delta_counts(self) -> np.ndarray:
        """Pairs per score-delta bucket (DELTA_BUCKETS of them)."""
        return np.array(
            [self._counts.get(f"{PAIR}:delta:{i:02d}", 0) for i in range(DELTA_BUCKETS)],
            np.int64,
        )

    def logit_sums(self) -> tuple[int, tuple[float, ...]]:
        """Pairs with logit sums, and those sums in :data:`LOGIT_SUMS`' order (0 when absent)."""
        sums = tuple(float(self._counts.get(f"{PAIR}:{name}_sum", 0.0)) for name in LOGIT_SUMS)
        return int(self._counts.get(LOGIT_N, 0)), sums

    def __eq__(self, other: object) -> bool:
        return isinstance(other, EvidenceTally) and self._counts == other._counts

    def __repr__(self) -> str:
        return f"EvidenceTally({self._counts!r})"
