"""The live monitor's gauges: each signal's state and each version's quality, as shared.

Every replica exports what the aggregate and the feedback join hold for all of
them, so ``max by (model_version, signal)`` is right whichever one was scraped.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Mapping

from mlcycle.contracts.monitoring import QualityWindow, SignalState
from mlcycle.inference.metrics import (
    MONITOR_ALARM,
    MONITOR_GAUGES,
    MONITOR_STATISTIC,
    MONITOR_THRESHOLD,
    MONITOR_WINDOW_RECORDS,
    QUALITY_ESTIMATED,
    QUALITY_FIGURES,
    QUALITY_REALIZED,
)
from mlcycle.inference.monitor_watch import Watch

# A version's quality windows from the feedback join, by (model, version).
QualitySource = Callable[[str, int], list[QualityWindow]]


def export_signals(watch: Watch, states: Mapping[str, SignalState]) -> None:
    """Each signal's last statistic, threshold, window size and alarm state."""
    v = str(watch.version)
    for signal, state in states.items():
        last = state.last
        statistic = last.statistic if last is not None else None
        threshold = last.threshold if last is not None else None
        MONITOR_STATISTIC.labels(v, signal).set(math.nan if statistic is None else statistic)
        MONITOR_THRESHOLD.labels(v, signal).set(math.nan if threshold is None else threshold)
        MONITOR_WINDOW_RECORDS.labels(v, signal).set(last.window if last is not None else 0)
        MONITOR_ALARM.labels(v, signal).set(1 if state.alarm else 0)
        watch.exported.add(signal)


def export_quality(watch: Watch, quality_of: QualitySource) -> None:
    """Realized and estimated quality over the latest window with decisions (else the
    estimate of the window filling), so an alert compares the two over the same scores."""
    try:
        windows = quality_of(watch.name, watch.version)
    except Exception:  # the join's store away: the gauges keep their last values
        return
    judged = [w for w in windows if w.realized is not None]
    window = judged[-1] if judged else (windows[-1] if windows else None)
    v = str(watch.version)
    for gauge, figures in (
        (QUALITY_REALIZED, window.realized if window is not None else None),
        (QUALITY_ESTIMATED, window.estimated if window is not None else None),
    ):
        for figure in QUALITY_FIGURES:
            value = getattr(figures, figure) if figures is not None else None
            gauge.labels(v, figure).set(math.nan if value is None else value)
    watch.quality_exported = True


def forget_gauges(watch: Watch) -> None:
    """Remove the gauges of a version no longer served here."""
    v = str(watch.version)
    for signal in watch.exported:
        for gauge in MONITOR_GAUGES:
            with contextlib.suppress(KeyError):
                gauge.remove(v, signal)
    if watch.quality_exported:
        for gauge in (QUALITY_REALIZED, QUALITY_ESTIMATED):
            for figure in QUALITY_FIGURES:
                with contextlib.suppress(KeyError):
                    gauge.remove(v, figure)
