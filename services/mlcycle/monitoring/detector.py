"""Judging a window against the reference profile: one statistic per signal, thresholds from
the false-alarm budget, and hysteresis.

The budget (``false_alarm_budget_records``) is how many records should pass, on
average, between two false alarms of one signal. A window of n records is one
trial, so its false-alarm probability is alpha = n / budget, and the signal
enters alarm when its statistic exceeds the (1 - alpha) quantile of the
statistic under no drift for a window of that size (:mod:`.statistics`). That
threshold is an effect size the window must beat, so a large window does not
make a negligible change "significant", and a small window needs a larger one.
Thresholds are cached per signal and window size; sizes are rounded down to a
geometric grid (steps of 2**(1/8), ~9 %), which only ever makes a threshold
stricter.

Hysteresis: a signal in alarm leaves it only when its statistic falls to the
no-drift median, the value a window that looks like the reference typically
has. The divergences' no-drift distributions are narrow (over 64 buckets the
Jensen-Shannon divergence's spread is ~20 % of its median), so an exit at, say,
the 90th percentile would sit just under the enter threshold, and a reference
that happens to sit a little off the truth, or a drift right at the threshold,
would flap in and out of alarm, each entry a new alert. At the median, a drift
that persists keeps one alarm; once the inputs look like the reference again it
clears in each window with probability one half (two windows on average).

Below ``min_window_records`` nothing is claimed: every signal is
"insufficient", with no statistic, and keeps its previous alarm state. A signal
the profile has no reference for (no scores for a multi-class model, no
vocabulary to be outside of) is "unavailable".
"""

from __future__ import annotations

import math
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np

from mlcycle.common.settings.sections import MonitoringSettings
from mlcycle.contracts.monitoring import (
    LENGTH,
    METADATA_PREFIX,
    NGRAMS,
    OOV_SHARE,
    POSITIVE_RATE,
    SCORE,
    Categories,
    Histogram,
    Mover,
    RatioMoments,
    ReferenceProfile,
    SignalStatus,
    WindowResult,
)
from mlcycle.monitoring import statistics as stats
from mlcycle.monitoring.tally import Tally

# The no-drift quantile a signal in alarm must fall to before it leaves it: the median.
EXIT_QUANTILE = 0.5
# Bins, buckets or categories reported as having moved most.
MOVERS = 3
_GRID_STEP = 2 ** (1 / 8)

TESTS = {
    "js": "Jensen-Shannon divergence (bits)",
    "ks": "Kolmogorov-Smirnov distance over the binned CDF",
    "proportion": "difference of proportions, live minus reference (absolute)",
    "ratio": "difference of ratios of totals, live minus reference (absolute)",
}


def grid_floor(n: float) -> int:
    """The largest point of the geometric grid at or below ``n`` (at least 1)."""
    if n < 1:
        return 1
    point = int(_GRID_STEP ** math.floor(math.log(n, _GRID_STEP) + 1e-9))
    return max(point, 1)


@dataclass(frozen=True)
class _Shares:
    """A signal judged by a distribution over bins: its reference and how to read a tally."""

    signal: str
    prefix: str  # the tally's counter prefix
    kind: str  # "js" or "ks"
    reference: np.ndarray
    labels: list[str]
    examples: list[list[str]] = field(default_factory=list)
    # How many drawn units one counted unit is worth the variance of (n-grams cluster in texts).
    dispersion: float = 1.0


@dataclass(frozen=True)
class _Ratio:
    """A signal judged by a ratio of totals: the reference's sums and how to read a tally."""

    signal: str
    kind: str  # "proportion" or "ratio"
    reference: RatioMoments
    example_key: str | None
    # A proportion's denominator: the records counted in these bins (the scored ones).
    units_bins: tuple[str, int] | None = None


class Detector:
    """Evaluates windows of one model version against its reference profile (thread-safe)."""

    def __init__(self, profile: ReferenceProfile, settings: MonitoringSettings) -> None:
        self.profile = profile
        self.settings = settings
        self._signals: list[_Shares | _Ratio | tuple[str, str]] = self._specs(profile)
        self._cache: dict[tuple, tuple[float, float]] = {}
        self._lock = threading.Lock()

    @property
    def signals(self) -> list[str]:
        """Every signal this detector reports on, available or not."""
        return [_name(s) for s in self._signals]

    @property
    def unavailable(self) -> dict[str, str]:
        """Why each signal without a reference is unavailable (SignalState.reason)."""
        return {s[0]: s[1] for s in self._signals if isinstance(s, tuple)}

    @staticmethod
    def _specs(profile: ReferenceProfile) -> list[_Shares | _Ratio | tuple[str, str]]:
        specs: list[_Shares | _Ratio | tuple[str, str]] = []
        if profile.score is not None:
            specs.append(_histogram(SCORE, "score", "js", profile.score))
        else:
            specs.append((SCORE, "the model has no binary score (multi-class)"))
        if profile.positive is not None and profile.score is not None:
            bins = len(profile.score.counts)
            # Example ids: records of the top score bin, the ones most surely flagged.
            top = f"score:{bins - 1}"
            specs.append(
                _Ratio(POSITIVE_RATE, "proportion", profile.positive, top, ("score", bins))
            )
        else:
            specs.append((POSITIVE_RATE, "the profile has no served threshold"))
        specs.append(_histogram(LENGTH, "length", "ks", profile.length))
        if profile.oov is not None:
            specs.append(_Ratio(OOV_SHARE, "ratio", profile.oov, "oov"))
        else:
            specs.append((OOV_SHARE, "the transform has no word vocabulary"))
        ngrams = profile.ngrams
        specs.append(
            _Shares(
                signal=NGRAMS,
                prefix="ngrams",
                kind="js",
                reference=np.asarray(ngrams.counts, np.float64),
                labels=[f"bucket {k}" for k in range(ngrams.buckets)],
                examples=[list(e) for e in ngrams.examples],
                dispersion=ngrams.dispersion,
            )
        )
        for name, reference in sorted(profile.metadata.items()):
            signal, prefix = f"{METADATA_PREFIX}{name}", f"meta:{name}"
            if isinstance(reference, Categories):
                specs.append(
                    _Shares(
                        signal=signal,
                        prefix=prefix,
                        kind="js",
                        reference=np.asarray(reference.counts, np.float64),
                        labels=[*reference.categories, "<other or missing>"],
                        examples=[[c] for c in reference.categories] + [[]],
                    )
                )
            else:
                specs.append(_histogram(signal, prefix, "ks", reference))
        # A distribution with nothing in it (an empty dev split) is no reference.
        return [
            (s.signal, "the reference holds nothing to compare with")
            if isinstance(s, _Shares) and s.reference.sum() <= 0
            else s
            for s in specs
        ]

    # -- thresholds ---------------------------------------------------------------------------

    def alpha(self, records: int) -> float:
        """A window's false-alarm probability under the budget."""
        budget = self.settings.false_alarm_budget_records
        return min(0.5, grid_floor(records) / budget)

    def warm(self, records: int) -> None:
        """Compute every threshold for windows of ``records`` records now (e.g. the configured
        window size, when the monitor starts), rather than when the first such window closes."""
        for spec in self._signals:
            if isinstance(spec, _Shares):
                self._shares_thresholds(spec, records)

    def _shares_thresholds(self, spec: _Shares, records: int) -> tuple[float, float]:
        """(enter, exit) for a window of ``records`` records.

        The window is drawn with as many units (scores, n-grams, field values) as that
        many reference records hold, fewer by the n-grams' dispersion: a window whose
        texts are longer than the reference's gets a threshold a little too strict for
        its n-grams, never too lax, and every window of one size shares one threshold.
        """
        n = grid_floor(records)
        key = (spec.signal, n)
        with self._lock:
            cached = self._cache.get(key)
        if cached is not None:
            return cached
        alpha = self.alpha(records)
        per_record = spec.reference.sum() / max(self.profile.rows, 1)
        window = max(int(n * per_record / spec.dispersion), 1)
        reference = max(int(spec.reference.sum() / spec.dispersion), 1)
        enter, leave = stats.null_quantiles(
            spec.kind,
            spec.reference,
            reference,
            window,
            [1.0 - alpha, EXIT_QUANTILE],
            draws=stats.draws_for(alpha),
            seed=stats.seed_of(spec.signal, n, window, reference),
        )
        found = (enter, min(leave, enter))
        with self._lock:
            self._cache[key] = found
        return found

    def _ratio_thresholds(self, spec: _Ratio, records: int, units: int) -> tuple[float, float]:
        alpha = self.alpha(records)
        window = grid_floor(units)
        enter = stats.ratio_threshold(spec.reference, window, 1.0 - alpha)
        leave = stats.ratio_threshold(spec.reference, window, EXIT_QUANTILE)
        return enter, min(leave, enter)

    # -- evaluating ---------------------------------------------------------------------------

    def evaluate(
        self,
        tally: Tally,
        previous_alarms: Mapping[str, bool],
        started_at: datetime,
        closed_at: datetime,
    ) -> list[WindowResult]:
        """One result per signal for the window ``tally`` (``previous_alarms``: each signal's
        alarm state before it, False when absent)."""
        common = {
            "model": self.profile.model,
            "model_version": self.profile.model_version,
            "window": tally.n,
            "started_at": started_at,
            "closed_at": closed_at,
        }
        enough = tally.n >= self.settings.min_window_records
        results = []
        for spec in self._signals:
            signal = _name(spec)
            before = bool(previous_alarms.get(signal, False))
            if isinstance(spec, tuple):
                results.append(_quiet(common, signal, "unavailable", before, test="none"))
            elif not enough:
                results.append(_quiet(common, signal, "insufficient", before, TESTS[spec.kind]))
            elif isinstance(spec, _Shares):
                results.append(self._judge_shares(spec, tally, before, common))
            else:
                results.append(self._judge_ratio(spec, tally, before, common))
        return results

    def _judge_shares(
        self, spec: _Shares, tally: Tally, before: bool, common: dict
    ) -> WindowResult:
        live = tally.vector(spec.prefix, len(spec.reference))
        units = float(live.sum())
        if units <= 0:
            return _quiet(common, spec.signal, "insufficient", before, TESTS[spec.kind])
        statistic = float(stats.STATISTICS[spec.kind](spec.reference, live))
        enter, leave = self._shares_thresholds(spec, tally.n)
        alarm = statistic > leave if before else statistic > enter
        ref_shares, live_shares = stats.shares(spec.reference), stats.shares(live)
        moved = np.abs(live_shares - ref_shares)
        movers = [
            Mover(
                key=spec.labels[i],
                reference=float(ref_shares[i]),
                live=float(live_shares[i]),
                examples=spec.examples[i] if spec.examples else [],
                ids=tally.examples.get(f"{spec.prefix}:{i}", []),
            )
            for i in np.argsort(-moved, kind="stable")[:MOVERS].tolist()
            if moved[i] > 0
        ]
        return WindowResult(
            **common,
            signal=spec.signal,
            statistic=statistic,
            threshold=enter,
            exit_threshold=leave,
            test=TESTS[spec.kind],
            alarm=alarm,
            status="alarm" if alarm else "ok",
            movers=movers,
            bins=spec.labels,
            reference_shares=ref_shares.tolist(),
            live_shares=live_shares.tolist(),
        )

    def _judge_ratio(self, spec: _Ratio, tally: Tally, before: bool, common: dict) -> WindowResult:
        if spec.units_bins is not None:
            # Flagged records over scored records (the score bins count every scored one).
            units = int(tally.vector(*spec.units_bins).sum())
            live = tally.counts.get("positive:x", 0.0) / units if units else None
        else:
            moments = tally.moments("oov")
            units = moments.n
            live = stats.ratio(moments)
        reference = stats.ratio(spec.reference)
        if live is None or reference is None or units <= 0:
            return _quiet(common, spec.signal, "insufficient", before, TESTS[spec.kind])
        statistic = abs(live - reference)
        enter, leave = self._ratio_thresholds(spec, tally.n, units)
        alarm = statistic > leave if before else statistic > enter
        ids = tally.examples.get(spec.example_key, []) if spec.example_key else []
        mover = Mover(key=spec.signal, reference=reference, live=live, ids=ids)
        return WindowResult(
            **common,
            signal=spec.signal,
            statistic=statistic,
            threshold=enter,
            exit_threshold=leave,
            test=TESTS[spec.kind],
            alarm=alarm,
            status="alarm" if alarm else "ok",
            movers=[mover],
        )


def available_signals(profile: ReferenceProfile) -> list[str]:
    """The signals ``profile`` holds a reference for (the others are "unavailable")."""
    return [_name(s) for s in Detector._specs(profile) if not isinstance(s, tuple)]


def _name(spec: _Shares | _Ratio | tuple[str, str]) -> str:
    return spec[0] if isinstance(spec, tuple) else spec.signal


def _quiet(common: dict, signal: str, status: SignalStatus, alarm: bool, test: str) -> WindowResult:
    """A result that claims nothing: no statistic, the alarm state as it was."""
    return WindowResult(
        **common,
        signal=signal,
        statistic=None,
        threshold=None,
        exit_threshold=None,
        test=test,
        alarm=alarm if status == "insufficient" else False,
        status=status,
    )


def _histogram(signal: str, prefix: str, kind: str, reference: Histogram) -> _Shares:
    edges = reference.edges
    last = len(edges) - 2
    labels = []
    for i in range(len(edges) - 1):
        lo, hi = f"{edges[i]:.4g}", f"{edges[i + 1]:.4g}"
        labels.append(f"< {hi}" if i == 0 else f">= {lo}" if i == last else f"[{lo}, {hi})")
    if last == 0:
        labels = [f"all ({edges[0]:.4g})"]
    return _Shares(
        signal=signal,
        prefix=prefix,
        kind=kind,
        reference=np.asarray(reference.counts, np.float64),
        labels=labels,
    )
