"""The live monitor over the in-memory predictor: drift raises alarm events, clean traffic
clears them, a full queue skips records instead of waiting, versions without a profile are
unavailable, and the shared previous alarm states are what each window is judged from."""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
from prometheus_client import REGISTRY

from mlcycle.common.errors import Unavailable
from mlcycle.contracts.monitoring import (
    NGRAMS,
    OOV_SHARE,
    SCORE,
    MonitoringEvent,
    SignalState,
    WindowResult,
)
from mlcycle.featurization.transform import Transform
from mlcycle.inference.monitor import LiveMonitor, text_id
from mlcycle.inference.monitor_events import Publisher
from mlcycle.monitoring.aggregate import LocalAggregate
from mlcycle.monitoring.profile import build_profile, write_profile
from mlcycle.monitoring.tally import Tally
from tests.fixtures.broker import wait_for
from tests.fixtures.inference import NAME, Rig, corpus, small_transform

WINDOW = 300
SETTINGS = {
    "monitor_window_records": WINDOW,
    "monitor_min_window_records": 100,
    "monitor_queue_records": 100_000,
    "monitor_flush_s": 0.05,
}
UNSEEN = ["zorblax", "quintessa", "flumbergast", "vexillary", "sproink", "krumholz", "ombrelle"]


@pytest.fixture(scope="module")
def transform() -> Transform:
    return small_transform()


class Events:
    """An event sink that fails ``failures`` times before it delivers."""

    def __init__(self, failures: int = 0) -> None:
        self.sent: list[MonitoringEvent] = []
        self.failures = failures
        self.attempts = 0

    def send(self, events: Sequence[MonitoringEvent]) -> None:
        self.attempts += 1
        if self.failures:
            self.failures -= 1
            raise Unavailable("the broker is away")
        self.sent.extend(events)

    def close(self) -> None:
        pass


def write_rig_profile(rig: Rig, version: int = 1, *, scores: bool = True) -> None:
    """The profile the trainer would write for the rig's version, from a dev split."""
    texts, metadata, labels = corpus(n=800, seed=1)
    profile = build_profile(
        model=NAME,
        version=version,
        transform=rig.transform,
        texts=texts,
        metadata=metadata,
        scores=rig.expected(texts, version)[:, 1] if scores else None,
        labels=np.array(labels),
        threshold=0.5,
        score_prior=None,
    )
    write_profile(rig.settings.trainer.models_dir / NAME / str(version), profile)


def monitored(
    tmp_path: Path,
    transform: Transform,
    *,
    profile: bool = True,
    events: Events | None = None,
    **overrides: object,
) -> tuple[Rig, LiveMonitor, Events]:
    """A rig whose predictor hands its records to a monitor (its worker not started: each
    test runs its rounds itself)."""
    rig = Rig(tmp_path, transform, **{**SETTINGS, **overrides})
    if profile:
        write_rig_profile(rig)
    events = events or Events()
    monitor = LiveMonitor(
        rig.settings.monitoring,
        rig.model,
        LocalAggregate(),
        events,
        loaded=rig.tracker.loaded_versions,
    )
    rig.predictor.monitor = monitor
    return rig, monitor, events


def serve(rig: Rig, texts: list[str], metadata: list | None = None, **kwargs: object) -> None:
    for start in range(0, len(texts), 50):
        chunk = None if metadata is None else metadata[start : start + 50]
        rig.predictor.predict(texts[start : start + 50], chunk, **kwargs)  # type: ignore[arg-type]


def clean(seed: int, n: int = WINDOW) -> tuple[list[str], list]:
    texts, metadata, _ = corpus(n=n, seed=seed)
    return texts, metadata


def drifted(seed: int, n: int = WINDOW) -> tuple[list[str], list]:
    """Comments full of words the model never saw, and longer."""
    rng = random.Random(seed)
    _, metadata, _ = corpus(n=n, seed=seed)
    texts = [" ".join(rng.choice(UNSEEN) for _ in range(rng.randint(15, 30))) for _ in range(n)]
    return texts, metadata


def states_of(rig: Rig, monitor: LiveMonitor) -> dict[str, SignalState]:
    return {state.signal: state for state in monitor.signals(rig.tracker.current())}


def gauge(name: str, signal: str, version: str = "1") -> float | None:
    return REGISTRY.get_sample_value(name, {"model_version": version, "signal": signal})


def test_drift_raises_alarms_with_movers_and_clean_traffic_clears_them(
    tmp_path: Path, transform: Transform
) -> None:
    rig, monitor, events = monitored(tmp_path, transform)
    before = states_of(rig, monitor)
    assert {s.status for s in before.values()} == {"insufficient"}

    serve(rig, *clean(seed=7))
    monitor.run_once()
    first = states_of(rig, monitor)
    assert all(state.windows == 1 for state in first.values())
    assert not [s for s, state in first.items() if state.alarm]
    assert first[NGRAMS].status == "ok"
    assert first[NGRAMS].last is not None and first[NGRAMS].last.window == WINDOW

    serve(rig, *drifted(seed=8))
    monitor.run_once()
    wait_for(lambda: bool(events.sent), timeout_s=5)
    raised = {e.result.signal: e for e in events.sent if e.kind == "alarm_raised"}
    assert {NGRAMS, OOV_SHARE} <= set(raised)
    event = raised[NGRAMS]
    assert event.id == f"{NAME}:1:{NGRAMS}:2"
    assert event.result.statistic is not None and event.result.threshold is not None
    assert event.result.statistic > event.result.threshold
    assert event.result.movers
    assert any(m.ids for e in events.sent for m in e.result.movers)  # texts that moved
    second = states_of(rig, monitor)
    assert second[NGRAMS].alarm and second[NGRAMS].status == "alarm"
    assert second[NGRAMS].since == event.result.closed_at
    assert gauge("mlcycle_monitor_alarm", NGRAMS) == 1.0
    assert gauge("mlcycle_monitor_statistic", NGRAMS) == event.result.statistic
    assert gauge("mlcycle_monitor_threshold", NGRAMS) == event.result.threshold
    assert gauge("mlcycle_monitor_window_records", NGRAMS) == WINDOW

    for seed in range(20, 25):  # clean windows until every alarm cleared (hysteresis: soon)
        serve(rig, *clean(seed=seed))
        monitor.run_once()
        if not [s for s, state in states_of(rig, monitor).items() if state.alarm]:
            break

    def cleared() -> set[str]:
        return {e.result.signal for e in events.sent if e.kind == "alarm_cleared"}

    wait_for(lambda: cleared() >= set(raised), timeout_s=5)
    assert gauge("mlcycle_monitor_alarm", NGRAMS) == 0.0
    history = monitor.history(NAME, 1, since=None, signal=NGRAMS, limit=100)
    assert [r.alarm for r in history][:2] == [False, True]
    assert not history[-1].alarm


def test_the_records_ids_are_the_callers_or_a_hash_of_the_text(
    tmp_path: Path, transform: Transform
) -> None:
    rig, monitor, events = monitored(tmp_path, transform)
    serve(rig, *clean(seed=7))
    monitor.run_once()
    texts, metadata = drifted(seed=8)
    ids = [f"comment-{i}" for i in range(len(texts))]
    serve_with_ids(rig, texts, metadata, ids)
    monitor.run_once()
    wait_for(lambda: bool(events.sent), timeout_s=5)
    named = {i for e in events.sent for mover in e.result.movers for i in mover.ids}
    assert named and named <= set(ids)
    # The clean window had no ids: its movers name texts by their hash.
    (first,) = [r for r in monitor.history(NAME, 1, since=None, signal=NGRAMS, limit=1)]
    hashed = {i for mover in first.movers for i in mover.ids}
    assert hashed <= {text_id(t) for t in clean(seed=7)[0]}


def serve_with_ids(rig: Rig, texts: list[str], metadata: list, ids: list[str]) -> None:
    for start in range(0, len(texts), 50):
        stop = start + 50
        rig.predictor.predict(texts[start:stop], metadata[start:stop], ids=ids[start:stop])


def test_a_full_queue_skips_and_counts_records_and_never_waits(
    tmp_path: Path, transform: Transform
) -> None:
    rig, monitor, _ = monitored(tmp_path, transform, monitor_queue_records=100)
    skipped = "mlcycle_monitor_skipped_records_total"
    before = REGISTRY.get_sample_value(skipped, {"model_version": "1"}) or 0.0
    texts, metadata = clean(seed=3, n=60)
    rig.predictor.predict(texts, metadata)
    started = time.perf_counter()
    rig.predictor.predict(texts, metadata)  # 120 > 100: these 60 are skipped
    assert time.perf_counter() - started < 1.0
    assert monitor.queued == 60
    assert REGISTRY.get_sample_value(skipped, {"model_version": "1"}) == before + 60
    monitor.run_once()  # drained: room again
    assert monitor.queued == 0
    rig.predictor.predict(texts, metadata)
    assert monitor.queued == 60
    assert REGISTRY.get_sample_value(skipped, {"model_version": "1"}) == before + 60


def test_a_version_without_a_profile_is_unavailable_and_says_why(
    tmp_path: Path, transform: Transform
) -> None:
    rig, monitor, events = monitored(tmp_path, transform, profile=False)
    serve(rig, *clean(seed=7))
    monitor.run_once()
    states = monitor.signals(rig.tracker.current())
    assert states and {s.status for s in states} == {"unavailable"}
    assert all("profile.json" in (s.reason or "") for s in states)
    assert monitor.aggregate.states(NAME, 1) == {}
    assert monitor.history(NAME, 1, since=None, signal=None, limit=10) == []
    assert events.sent == []


def test_a_malformed_profile_is_unavailable_with_its_error(
    tmp_path: Path, transform: Transform
) -> None:
    rig, monitor, _ = monitored(tmp_path, transform, profile=False)
    (rig.settings.trainer.models_dir / NAME / "1" / "profile.json").write_text("{}")
    states = monitor.signals(rig.tracker.current())
    assert {s.status for s in states} == {"unavailable"}
    assert all("malformed" in (s.reason or "") for s in states)


class StubDetector:
    """Alarm on the signals named in ``alarming``; records what it was asked."""

    signals = [NGRAMS]

    def __init__(self) -> None:
        self.alarming: set[str] = set()
        self.asked: list[dict[str, bool]] = []

    unavailable: dict[str, str] = {}

    def warm(self, records: int, up_to: int | None = None) -> None:
        pass

    def evaluate(
        self, tally: Tally, previous: dict[str, bool], started: datetime, closed: datetime
    ) -> list[WindowResult]:
        self.asked.append(dict(previous))
        alarm = NGRAMS in self.alarming
        return [
            WindowResult(
                model=NAME, model_version=1, signal=NGRAMS, window=tally.n,
                statistic=0.3 if alarm else 0.01, threshold=0.2, exit_threshold=0.1,
                test="stub", alarm=alarm, status="alarm" if alarm else "ok",
                started_at=started, closed_at=closed,
            )
        ]  # fmt: skip


def test_each_window_is_judged_from_the_shared_previous_alarms(
    tmp_path: Path, transform: Transform
) -> None:
    rig, monitor, events = monitored(tmp_path, transform)
    stub = StubDetector()
    monitor.watch(rig.tracker.current()).detector = stub  # type: ignore[assignment]
    for alarming in (set(), {NGRAMS}, {NGRAMS}, set()):
        stub.alarming = alarming
        serve(rig, *clean(seed=7))
        monitor.run_once()
    assert stub.asked == [{}, {NGRAMS: False}, {NGRAMS: True}, {NGRAMS: True}]
    wait_for(lambda: len(events.sent) == 2, timeout_s=5)
    assert [(e.kind, e.id) for e in events.sent] == [
        ("alarm_raised", f"{NAME}:1:{NGRAMS}:2"),
        ("alarm_cleared", f"{NAME}:1:{NGRAMS}:4"),
    ]
    state = states_of(rig, monitor)[NGRAMS]
    assert state.windows == 4
    assert state.since == events.sent[1].result.closed_at


def test_events_wait_for_the_broker_and_are_delivered_once(
    tmp_path: Path, transform: Transform
) -> None:
    events = Events(failures=1)
    publisher = Publisher(events)
    event = MonitoringEvent.model_validate(
        {
            "id": f"{NAME}:1:{NGRAMS}:1",
            "kind": "alarm_raised",
            "at": "2026-01-01T00:00:00Z",
            "result": {
                "model": NAME, "model_version": 1, "signal": NGRAMS, "window": 300,
                "statistic": 0.3, "threshold": 0.2, "exit_threshold": 0.1, "test": "t",
                "alarm": True, "status": "alarm",
                "started_at": "2026-01-01T00:00:00Z", "closed_at": "2026-01-01T00:00:00Z",
            },
        }
    )  # fmt: skip
    publisher.put([event])
    wait_for(lambda: events.sent == [event], timeout_s=5)
    assert events.attempts == 2
    assert publisher.pending == 0
    publisher.stop()


def test_tallies_wait_while_the_aggregate_is_unreachable(
    tmp_path: Path, transform: Transform
) -> None:
    rig, monitor, _ = monitored(tmp_path, transform)
    real_add = monitor.aggregate.add
    down = [True]

    def add(*args: object, **kwargs: object) -> None:
        if down[0]:
            raise ConnectionError("redis is away")
        real_add(*args, **kwargs)  # type: ignore[arg-type]

    monitor.aggregate.add = add  # type: ignore[method-assign]
    serve(rig, *clean(seed=7))
    monitor.run_once()
    assert monitor.watch(rig.tracker.current()).pending.n == WINDOW
    down[0] = False
    monitor.run_once()
    assert states_of(rig, monitor)[NGRAMS].windows == 1


def test_stopping_shares_what_was_queued(tmp_path: Path, transform: Transform) -> None:
    rig, monitor, _ = monitored(tmp_path, transform)
    monitor.start()
    serve(rig, *clean(seed=7))
    aggregate = monitor.aggregate
    monitor.stop()
    assert aggregate.states(NAME, 1)[NGRAMS].windows == 1


def test_a_signal_without_a_reference_is_unavailable_and_says_why(
    tmp_path: Path, transform: Transform
) -> None:
    rig, monitor, _ = monitored(tmp_path, transform, profile=False)
    write_rig_profile(rig, scores=False)  # as for a multi-class model: no score reference
    before = states_of(rig, monitor)
    assert before[SCORE].status == "unavailable" and before[SCORE].reason
    assert before[NGRAMS].status == "insufficient"
    serve(rig, *clean(seed=7))
    monitor.run_once()
    after = states_of(rig, monitor)
    assert (after[SCORE].status, after[SCORE].reason) == ("unavailable", before[SCORE].reason)
    assert after[NGRAMS].status == "ok" and after[NGRAMS].reason is None


def test_quality_gauges_show_the_latest_judged_window_realized_beside_its_estimate(
    tmp_path: Path, transform: Transform
) -> None:
    from mlcycle.contracts.monitoring import QualityFigures, QualityWindow

    def figures(f1: float) -> QualityFigures:
        return QualityFigures(comments=500, precision=0.8, recall=0.7, f1=f1, roc_auc=0.9)

    def window(realized: float | None, estimated: float, closed: bool) -> QualityWindow:
        return QualityWindow(
            model=NAME, model_version=1, started_at=datetime(2026, 1, 1),
            closed_at=datetime(2026, 1, 2) if closed else None,
            estimated=figures(estimated),
            realized=None if realized is None else figures(realized),
        )  # fmt: skip

    rig, monitor, _ = monitored(tmp_path, transform)
    windows = [window(0.61, 0.72, True), window(0.55, 0.74, True), window(None, 0.9, False)]
    monitor.quality_of = lambda name, version: windows if (name, version) == (NAME, 1) else []
    serve(rig, *clean(seed=7))
    monitor.run_once()

    def quality(kind: str, figure: str) -> float | None:
        labels = {"model_version": "1", "figure": figure}
        return REGISTRY.get_sample_value(f"mlcycle_quality_{kind}", labels)

    assert quality("realized", "f1") == pytest.approx(0.55)
    assert quality("estimated", "f1") == pytest.approx(0.74)  # the same window's estimate
    assert quality("realized", "roc_auc") == pytest.approx(0.9)
