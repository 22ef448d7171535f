"""What the live monitor holds per model version, and how a judged window moves its states.

A version is watched with the ``profile.json`` the trainer wrote beside its
SavedModel: a :class:`~mlcycle.monitoring.fingerprint.Fingerprinter` for its
records and a :class:`~mlcycle.monitoring.detector.Detector` for its windows.
Without a profile (a model exported before profiles) its signals are
"unavailable", with the reason.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from mlcycle.common.errors import MlcycleError
from mlcycle.common.settings import MonitoringSettings
from mlcycle.contracts.monitoring import (
    LENGTH,
    NGRAMS,
    OOV_SHARE,
    POSITIVE_RATE,
    PROFILE_FILE,
    SCORE,
    MonitoringEvent,
    SignalState,
    WindowResult,
)
from mlcycle.inference.metadata import ServedModel
from mlcycle.inference.versions import ModelVersion
from mlcycle.monitoring.aggregate import ClosedWindow
from mlcycle.monitoring.detector import Detector
from mlcycle.monitoring.fingerprint import Fingerprinter
from mlcycle.monitoring.profile import read_profile
from mlcycle.monitoring.tally import Tally

log = logging.getLogger(__name__)

# The signals every profile has, listed as unavailable for a version without one.
BASE_SIGNALS = (SCORE, POSITIVE_RATE, LENGTH, OOV_SHARE, NGRAMS)


@dataclass(eq=False)
class Watch:
    """What the monitor holds for one model version: its profile's tools, or why it has none."""

    name: str
    version: int
    fingerprinter: Fingerprinter | None = None
    detector: Detector | None = None
    reason: str | None = None
    pending: Tally = field(default_factory=Tally)
    exported: set[str] = field(default_factory=set)  # signals with gauges set
    quality_exported: bool = False  # its quality gauges are set
    warmed: bool = False  # the detector's thresholds for full windows are computed

    @property
    def monitored(self) -> bool:
        return self.detector is not None


def watch_version(served: ServedModel, model: ModelVersion, config: MonitoringSettings) -> Watch:
    """The version's watch: its profile, fingerprinter and detector, or the reason it has none."""
    watch = Watch(model.name, model.version)
    what = f"model {model.name} version {model.version}"
    try:
        profile = read_profile(served.version_dir(model.version))
        if profile is None:
            watch.reason = (
                f"{what} has no {PROFILE_FILE} beside its SavedModel (exported before reference "
                "profiles): it is not monitored"
            )
            return watch
        # A profile made without the transform (the encoder's) counts words as it did.
        transform = None if profile.transform is None else model.transform
        watch.fingerprinter = Fingerprinter(profile, transform)
        watch.detector = Detector(profile, config)
    except MlcycleError as exc:
        watch.reason = f"{what} is not monitored: {exc.message}"
    except OSError as exc:
        watch.reason = f"{what} is not monitored: cannot read its {PROFILE_FILE}: {exc}"
    if watch.reason is not None:
        log.warning("model version not monitored: %s", watch.reason)
    return watch


def next_states(
    model: str,
    version: int,
    window: ClosedWindow,
    results: Sequence[WindowResult],
    previous: Mapping[str, SignalState],
    reasons: Mapping[str, str] | None = None,
) -> tuple[dict[str, SignalState], list[MonitoringEvent]]:
    """The signals' states after ``window`` and an event per signal whose alarm changed
    (``reasons``: why each unavailable signal is)."""
    states: dict[str, SignalState] = {}
    events: list[MonitoringEvent] = []
    for result in results:
        before = previous.get(result.signal)
        was = before.alarm if before is not None else False
        changed = result.alarm != was
        states[result.signal] = SignalState(
            model=model,
            model_version=version,
            signal=result.signal,
            status=result.status,
            alarm=result.alarm,
            since=result.closed_at if changed else (before.since if before else None),
            windows=(before.windows if before else 0) + 1,
            last=result,
            reason=(reasons or {}).get(result.signal) if result.status == "unavailable" else None,
        )
        if changed:
            events.append(
                MonitoringEvent(
                    id=f"{model}:{version}:{result.signal}:{window.number}",
                    kind="alarm_raised" if result.alarm else "alarm_cleared",
                    at=result.closed_at,
                    result=result,
                )
            )
    return states, events


def unavailable(model: str, version: int, reason: str | None) -> list[SignalState]:
    """The base signals of a version that is not monitored, and why."""
    return [
        SignalState(
            model=model,
            model_version=version,
            signal=signal,
            status="unavailable",
            alarm=False,
            since=None,
            windows=0,
            last=None,
            reason=reason,
        )
        for signal in BASE_SIGNALS
    ]
