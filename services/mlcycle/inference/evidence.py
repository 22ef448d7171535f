"""What this process saw of each running rollout, pooled with every other replica's.

Requests and the off-path worker tally into one in-process
:class:`~mlcycle.rollouts.tally.EvidenceTally` per rollout (a lock and a few
counter bumps); a daemon thread adds them to the shared
:class:`~mlcycle.rollouts.evidence.EvidenceStore` every ``evidence_flush_s``
(Redis: the monitor's server, so every replica and the stream scorer pool into
one sum the registry decides on). When the store is unreachable the tallies are
kept and added on a later flush; :meth:`EvidenceBook.stop` flushes what is left.
"""

from __future__ import annotations

import logging
import threading
import time

import numpy as np
import redis

from mlcycle.common.redis_connection import connection_options
from mlcycle.common.settings import Settings
from mlcycle.contracts.rollouts import Role
from mlcycle.inference.metrics import EVIDENCE_FLUSH_ERRORS
from mlcycle.rollouts.evidence import EvidenceStore, MemoryEvidenceStore, RedisEvidenceStore
from mlcycle.rollouts.tally import LATENCY_EDGES_MS, EvidenceTally

log = logging.getLogger(__name__)

# Redis is on the flusher's thread only; past this a flush counts as failed and is retried.
SOCKET_TIMEOUT_S = 2.0


class EvidenceBook:
    """Per-rollout tallies of this process, added to ``store`` every ``flush_s``; thread-safe."""

    def __init__(self, store: EvidenceStore, flush_s: float) -> None:
        self.store = store
        self.flush_s = flush_s
        self._tallies: dict[str, EvidenceTally] = {}
        # Calls as they were made (rollout, role, instances, latency, ok): tallied at the next
        # flush, on the flusher's thread, so an answer only pays for an append.
        self._calls: list[tuple[str, Role, int, float, bool]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._failing = False

    def call(self, rollout: str, role: Role, instances: int, latency_s: float, ok: bool) -> None:
        """One scoring call of ``instances`` rows by the version in ``role``."""
        with self._lock:
            self._calls.append((rollout, role, instances, latency_s, ok))

    def pairs(
        self,
        rollout: str,
        production: np.ndarray,
        candidate: np.ndarray,
        production_threshold: float,
        candidate_threshold: float,
    ) -> None:
        """Scores of the same comments by both versions (binary models), in the same order."""
        with self._lock:
            self._tally(rollout).pairs(
                production, candidate, production_threshold, candidate_threshold
            )

    def _tally(self, rollout: str) -> EvidenceTally:
        tally = self._tallies.get(rollout)
        if tally is None:
            tally = self._tallies[rollout] = EvidenceTally()
        return tally

    def _tally_calls(self) -> None:
        """Tally the calls recorded since the last time (the lock held)."""
        calls, self._calls = self._calls, []
        for rollout, tally in tally_calls(calls).items():
            self._tally(rollout).merge(tally)

    def pending(self, rollout: str) -> EvidenceTally:
        """A copy of what is tallied for ``rollout`` and not yet added to the store."""
        with self._lock:
            self._tally_calls()
            tally = self._tallies.get(rollout)
            return EvidenceTally() if tally is None else tally.copy()

    def flush(self) -> bool:
        """Add every tally to the store now; False (tallies kept) when the store failed."""
        with self._lock:
            self._tally_calls()
            tallies, self._tallies = self._tallies, {}
        now = time.time()
        failed: dict[str, EvidenceTally] = {}
        for rollout, tally in tallies.items():
            if failed or tally.empty:
                if not tally.empty:
                    failed[rollout] = tally
                continue
            try:
                self.store.add(rollout, tally, now)
            except Exception as exc:  # Redis away: kept for the next flush
                failed[rollout] = tally
                EVIDENCE_FLUSH_ERRORS.inc()
                if not self._failing:
                    log.warning("rollout evidence not shared; kept for the next flush: %s", exc)
                    self._failing = True
        if failed:
            with self._lock:
                for rollout, tally in failed.items():
                    tally.merge(self._tallies.get(rollout, EvidenceTally()))
                    self._tallies[rollout] = tally
            return False
        if self._failing:
            log.info("rollout evidence shared again")
            self._failing = False
        return True

    def start(self) -> EvidenceBook:
        """Flush every ``flush_s`` on a daemon thread."""
        self._thread = threading.Thread(target=self._run, name="rollout-evidence", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.flush_s):
            try:
                self.flush()
            except Exception:  # the flusher must outlive any surprise
                log.exception("rollout evidence flush failed")

    def stop(self) -> None:
        """Stop the flusher, then add what is left (once)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
        self.flush()
        client = getattr(self.store, "client", None)
        if client is not None:
            client.close()


def tally_calls(calls: list[tuple[str, Role, int, float, bool]]) -> dict[str, EvidenceTally]:
    """Per rollout, the tally of many calls at once: what :meth:`EvidenceTally.call` counts
    for each (its shared counter format), with the latency buckets found in one numpy call."""
    groups: dict[tuple[str, Role], list[tuple[int, float, bool]]] = {}
    for rollout, role, instances, latency_s, ok in calls:
        groups.setdefault((rollout, role), []).append((instances, latency_s, ok))
    out: dict[str, EvidenceTally] = {}
    for (rollout, role), made in groups.items():
        instances = np.fromiter((m[0] for m in made), np.int64, len(made))
        latency_ms = np.maximum(
            0.0, np.fromiter((m[1] for m in made), np.float64, len(made)) * 1000.0
        )
        failed = np.fromiter((not m[2] for m in made), bool, len(made))
        fields: dict[str, int | float] = {
            f"{role}:calls": len(made),
            f"{role}:requests": int(instances.sum()),
            f"{role}:errors": int(instances[failed].sum()),
            f"{role}:lat_sum": float(latency_ms.sum()),
        }
        buckets = np.searchsorted(LATENCY_EDGES_MS, latency_ms, side="right")
        for bucket, count in zip(*np.unique(buckets, return_counts=True), strict=True):
            fields[f"{role}:lat:{int(bucket):02d}"] = int(count)
        tally = out.setdefault(rollout, EvidenceTally())
        tally.merge(EvidenceTally.from_fields({k: v for k, v in fields.items() if v}))
    return out


def open_evidence_store(settings: Settings, redis_url: str) -> EvidenceStore:
    """The shared evidence store on ``redis_url`` (the monitor's and the cache's server),
    else this process's alone."""
    if not redis_url:
        log.info("no Redis: rollout evidence is this process's alone")
        return MemoryEvidenceStore()
    client = redis.Redis.from_url(
        redis_url,
        socket_timeout=SOCKET_TIMEOUT_S,
        socket_connect_timeout=SOCKET_TIMEOUT_S,
        **connection_options(settings.cache),
    )
    return RedisEvidenceStore(client)
