"""The live positive rate: what share of the served traffic is positive, from unlabeled scores.

A binary model's served score is its probability of the positive class under
the deployment prior its job stated (``threshold_policy.score_prior`` in
``metadata.json``). Each served version keeps a bounded window of its most
recent scores, cache hits included (a repeated comment is traffic too), and
the prior that explains them best is found on demand by the EM of Saerens,
Latinne and Decaestecker (:func:`mlcycle.evaluation.priors.estimate_positive_rate`),
the same estimate the trainer's threshold rests on. When the live rate drifts
from the stated one, the threshold is no longer the Bayes decision for the
traffic: that is what a monitor watches.

The hot path only appends a float to a deque (atomic, no lock); the EM runs
when ``GET /v1/positive-rate`` asks or Prometheus scrapes
``mlcycle_inference_live_positive_rate``, at most once per ``REFRESH_S`` for the
gauge, in the caller's thread.
"""

from __future__ import annotations

import math
import threading
import time
import weakref
from collections import deque
from dataclasses import dataclass

import numpy as np
from pydantic import BaseModel, Field

from mlcycle.evaluation.priors import estimate_positive_rate
from mlcycle.inference.metrics import LIVE_POSITIVE_RATE

# Scores kept per model version: enough for a rate of 0.1 to be known to about ±0.006
# (binomial standard error), a few minutes of busy traffic.
WINDOW = 10_000
# The gauge re-runs the EM at most this often; the route always runs it afresh.
REFRESH_S = 10.0
# Snapshot attempts while predictions append concurrently (copying raises if the deque moves).
SNAPSHOT_ATTEMPTS = 5
LIVE_RATE_DESCRIPTION = (
    "Over the most recent scores a binary model version served (cache hits included), "
    "the EM of Saerens, Latinne and Decaestecker estimates the traffic's positive rate, "
    "starting from the prior the scores are calibrated to (`score_prior`, the deployment "
    "prior of the version's training job). The serving version by default; `version` "
    "asks for one of the few versions kept loaded before it."
)


class LivePositiveRate(BaseModel):
    """``GET /v1/positive-rate``: the positive rate of the recent traffic of one model version."""

    model: str
    model_version: int
    window: int = Field(description="scores in the window (the most recent served ones)")
    capacity: int = Field(description="the most the window keeps")
    score_prior: float | None = Field(
        description="the positive rate the model's scores are probabilities under (its job's "
        "deployment prior); null when its metadata does not say"
    )
    positive_rate: float | None = Field(
        description="the EM estimate of the traffic's positive rate; null without scores or "
        "without score_prior"
    )
    iterations: int | None = None
    converged: bool | None = None
    mean_score: float | None = Field(description="the plain mean of the scores")
    flagged_rate: float | None = Field(description="share of the scores at or above threshold")
    threshold: float | None
    reason: str | None = Field(None, description="why positive_rate is null")


@dataclass(frozen=True)
class _Estimate:
    at: float
    value: float


class LiveScores:
    """The recent positive-class scores of one served binary model version."""

    def __init__(self, score_prior: float | None, capacity: int = WINDOW) -> None:
        self.score_prior = score_prior
        self.capacity = capacity
        # deque.append is atomic under the GIL: the hot path takes no lock.
        self.scores: deque[float] = deque(maxlen=capacity)
        self._lock = threading.Lock()
        self._cached: _Estimate | None = None

    def snapshot(self) -> np.ndarray:
        """The window's scores now, oldest first."""
        for _ in range(SNAPSHOT_ATTEMPTS):
            try:
                return np.fromiter(self.scores, np.float64)
            except RuntimeError:  # appended to while being copied; try again
                continue
        return np.fromiter(tuple(self.scores), np.float64)

    def report(self, name: str, version: int, threshold: float | None) -> LivePositiveRate:
        """The EM estimate over the window now, with the figures beside it."""
        scores = self.snapshot()
        n = len(scores)
        figures = {
            "model": name,
            "model_version": version,
            "window": n,
            "capacity": self.capacity,
            "score_prior": self.score_prior,
            "threshold": threshold,
            "mean_score": float(scores.mean()) if n else None,
            "flagged_rate": (
                float((scores >= threshold).mean()) if n and threshold is not None else None
            ),
        }
        if self.score_prior is None:
            reason = (
                "the model's metadata.json names no score_prior (a model exported before "
                "threshold policies): its scores' prior is unknown"
            )
            return LivePositiveRate(**figures, positive_rate=None, reason=reason)
        if n == 0:
            reason = "no scores served by this version yet"
            return LivePositiveRate(**figures, positive_rate=None, reason=reason)
        found = estimate_positive_rate(scores, self.score_prior)
        with self._lock:
            self._cached = _Estimate(time.monotonic(), found.positive_rate)
        return LivePositiveRate(
            **figures,
            positive_rate=found.positive_rate,
            iterations=found.iterations,
            converged=found.converged,
        )

    def gauge_value(self) -> float:
        """The estimate for the gauge (NaN when there is none), re-run at most every REFRESH_S."""
        cached = self._cached
        if cached is not None and time.monotonic() - cached.at < REFRESH_S:
            return cached.value
        if self.score_prior is None or not self.scores:
            return math.nan
        found = estimate_positive_rate(self.snapshot(), self.score_prior)
        with self._lock:
            self._cached = _Estimate(time.monotonic(), found.positive_rate)
        return found.positive_rate


def expose(live: LiveScores, version: int) -> None:
    """Make ``live`` the source of the version's ``mlcycle_inference_live_positive_rate``.

    The gauge holds it weakly: a version the service no longer keeps reads NaN
    instead of keeping its scores alive.
    """
    ref = weakref.ref(live)

    def read() -> float:
        target = ref()
        return target.gauge_value() if target is not None else math.nan

    LIVE_POSITIVE_RATE.labels(str(version)).set_function(read)
