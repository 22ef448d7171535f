"""The live monitor of one predicting process: served records in, shared windows judged, alarms out.

The answer never waits for it. A request only appends a reference to its texts,
metadata, predictions and ids to a bounded queue (:meth:`LiveMonitor.observe`,
a lock and an append: O(1) per request); when the queue holds
``queue_records`` records the request's are counted in
``mlcycle_monitor_skipped_records_total`` and dropped, never waited for. A
daemon thread drains the queue, turns each version's records into a
:class:`~mlcycle.monitoring.tally.Tally` with the version's
:class:`~mlcycle.monitoring.fingerprint.Fingerprinter`, and every ``flush_s``
adds it to the shared :mod:`~mlcycle.monitoring.aggregate` (Redis across
replicas and the stream scorer) and tries to close the window. The process
that takes a window judges it with the version's
:class:`~mlcycle.monitoring.detector.Detector`, records the signals' states
and the results, and publishes an event on the ``monitoring`` topic for each
signal that entered or left alarm. Every process exports the shared states as
gauges, so ``max by (model_version, signal)`` reads the same in PromQL
whichever replica was scraped.

A version is monitored when its folder holds the ``profile.json`` the trainer
wrote beside the SavedModel; without one (a model exported before profiles)
its signals are "unavailable", with the reason. A record's id is the one the
caller gave (the comment's on the stream), else a short hash of its text.

Events go out from their own thread: a producer is made on the first event,
and while the broker is unreachable the events wait and are retried (logged
once), so neither predictions nor windows wait for Kafka.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, overload

import numpy as np

from mlcycle.common.settings import MonitoringSettings
from mlcycle.contracts.monitoring import SignalState, WindowResult
from mlcycle.inference.metadata import ServedModel
from mlcycle.inference.metrics import MONITOR_SKIPPED
from mlcycle.inference.monitor_events import EventSink, Publisher
from mlcycle.inference.monitor_gauges import (
    QualitySource,
    export_quality,
    export_signals,
    forget_gauges,
)
from mlcycle.inference.monitor_watch import Watch, next_states, unavailable, watch_version
from mlcycle.inference.schemas import PredictionRow
from mlcycle.inference.versions import ModelVersion
from mlcycle.monitoring.aggregate import Aggregate, ClosedWindow
from mlcycle.monitoring.fingerprint import Fingerprinter
from mlcycle.monitoring.tally import Tally

log = logging.getLogger(__name__)

Metadata = Sequence[Mapping[str, Any] | None]
# Moderators' quality windows of a model version (the feedback join provides them).
# The worker looks at the queue this often; it drains it when a flush is due or it holds
# DRAIN_AT records, so records are tallied in batches (a batch's fixed costs spread thin).
POLL_S = 0.1
DRAIN_AT = 1024
# Records tallied at once: big enough for numpy to pay off, small enough that the thread
# lets go of the interpreter between chunks and requests are not held up behind it.
TALLY_CHUNK = 256
# Hex digits of a text's hash when its record has no id.
TEXT_ID_CHARS = 12


def text_id(text: str) -> str:
    """A record's id when it was given none: a short hash of its text."""
    return hashlib.blake2b(text.encode("utf-8"), digest_size=TEXT_ID_CHARS // 2).hexdigest()


class RecordIds(Sequence[str]):
    """Records' ids: the given one, else the text's hash, made only when asked for (the
    fingerprinter reads the few ids of its examples, not every record's)."""

    def __init__(self, texts: Sequence[str], given: Sequence[str | None]) -> None:
        self.texts = texts
        self.given = given

    def __len__(self) -> int:
        return len(self.texts)

    @overload
    def __getitem__(self, index: int) -> str: ...

    @overload
    def __getitem__(self, index: slice) -> RecordIds: ...

    def __getitem__(self, index: int | slice) -> str | RecordIds:
        if isinstance(index, slice):
            return RecordIds(self.texts[index], self.given[index])
        given = self.given[index]
        return given if given is not None else text_id(self.texts[index])


# -- the monitor ----------------------------------------------------------------------------------

# One request's records, as queued: the version, texts, metadata, predictions, ids.
_Item = tuple[
    ModelVersion, Sequence[str], Metadata | None, list[PredictionRow], Sequence[str] | None
]


class LiveMonitor:
    """Watches every model version this process serves; :meth:`observe` is the hot path's part."""

    def __init__(
        self,
        config: MonitoringSettings,
        served: ServedModel,
        aggregate: Aggregate,
        events: EventSink,
        *,
        loaded: Callable[[], Iterable[ModelVersion]] = tuple,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        # The feedback join's quality windows per (model, version), for the quality gauges;
        # set by the app that owns the join.
        self.quality_of: QualitySource | None = None
        self.served = served
        self.aggregate = aggregate
        self.loaded = loaded
        self.clock = clock
        self.capacity = config.queue_records
        self._queue: deque[_Item] = deque()
        self._queued = 0
        self._lock = threading.Lock()
        self._watches: dict[int, Watch] = {}
        self._watch_lock = threading.Lock()
        self._publisher = Publisher(events)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._next_flush = 0.0
        self._aggregate_failing = False

    # -- the request's path ---------------------------------------------------------------------

    def observe(
        self,
        model: ModelVersion,
        texts: Sequence[str],
        metadata: Metadata | None,
        predictions: list[PredictionRow],
        ids: Sequence[str] | None = None,
    ) -> None:
        """Queue one answered request's records for the worker, or count them skipped."""
        n = len(texts)
        with self._lock:
            if self._queued + n <= self.capacity:
                self._queue.append((model, texts, metadata, predictions, ids))
                self._queued += n
                return
        MONITOR_SKIPPED.labels(str(model.version)).inc(n)

    # -- the worker -----------------------------------------------------------------------------

    def start(self) -> LiveMonitor:
        """Start the worker thread."""
        self._next_flush = time.monotonic() + self.config.flush_s
        self._thread = threading.Thread(target=self._run, name="monitor", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 10.0) -> None:
        """Tally what is queued, flush it, stop the worker, send the events still kept."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
        else:
            self.run_once(flush=True)
        self._publisher.stop()
        self.aggregate.close()

    def _run(self) -> None:
        wait = min(POLL_S, self.config.flush_s)
        while not self._stop.wait(wait):
            due = time.monotonic() >= self._next_flush
            if due or self._queued >= DRAIN_AT:
                self.run_once(flush=due)
        self.run_once(flush=True)

    def run_once(self, *, flush: bool = True) -> None:
        """Drain the queue into tallies; with ``flush``, share them and judge due windows."""
        try:
            self._drain()
            if flush:
                self._next_flush = time.monotonic() + self.config.flush_s
                self._flush()
        except Exception:  # the worker must outlive any surprise; the next round retries
            log.exception("monitor round failed")

    def _drain(self) -> None:
        with self._lock:
            items, self._queue = self._queue, deque()
            self._queued = 0
        by_version: dict[int, list[_Item]] = {}
        for item in items:
            by_version.setdefault(item[0].version, []).append(item)
        for batch in by_version.values():
            watch = self.watch(batch[0][0])
            if watch.fingerprinter is not None:
                self._tally(watch, watch.fingerprinter, batch)

    def _tally(self, watch: Watch, fingerprinter: Fingerprinter, batch: list[_Item]) -> None:
        texts: list[str] = []
        metadata: list[Mapping[str, Any] | None] = []
        scores: list[float] = []
        ids: list[str | None] = []
        with_metadata = False
        binary = batch[0][0].binary
        for _, item_texts, item_metadata, predictions, item_ids in batch:
            texts.extend(item_texts)
            if item_metadata is None:
                metadata.extend([None] * len(item_texts))
            else:
                with_metadata = True
                metadata.extend(item_metadata)
            if binary:
                scores.extend(prediction["score"] for prediction in predictions)
            ids.extend(item_ids if item_ids is not None else [None] * len(item_texts))
        for start in range(0, len(texts), TALLY_CHUNK):
            stop = start + TALLY_CHUNK
            watch.pending.add(
                fingerprinter.tally(
                    texts[start:stop],
                    metadata[start:stop] if with_metadata else None,
                    np.asarray(scores[start:stop], np.float64) if binary else None,
                    RecordIds(texts[start:stop], ids[start:stop]),
                )
            )
            time.sleep(0)  # let a request's thread have the interpreter between chunks

    def _flush(self) -> None:
        versions = {model.version: model for model in self.loaded()}
        with self._watch_lock:
            known = dict(self._watches)
        for version in versions.keys() - known.keys():
            known[version] = self.watch(versions[version])
        for version, watch in known.items():
            if not watch.monitored:
                continue
            try:
                self._share(watch)
            except Exception as exc:  # Redis away: the tally waits for the next flush
                if not self._aggregate_failing:
                    log.warning(
                        "monitor aggregate unreachable; tallies kept for the next flush",
                        extra={"error": str(exc)},
                    )
                    self._aggregate_failing = True
                return
            if version not in versions and not watch.pending:
                self._forget(watch)
        if self._aggregate_failing:
            log.info("monitor aggregate reachable again")
            self._aggregate_failing = False

    def _share(self, watch: Watch) -> None:
        """Add the watch's tally to the aggregate, judge the window if due, export the states."""
        config, now = self.config, self.clock()
        if not watch.warmed and watch.detector is not None:
            # Thresholds are bootstrapped once per window size: for full windows (which close
            # between their size and about twice it) now, on this thread, rather than when
            # the first ones close.
            watch.detector.warm(config.window_records, up_to=2 * config.window_records)
            watch.warmed = True
        if watch.pending:
            self.aggregate.add(watch.name, watch.version, watch.pending, now)
            watch.pending = Tally()
        window = self.aggregate.close_if_due(
            watch.name,
            watch.version,
            now,
            window_records=config.window_records,
            window_s=config.window_s,
            min_window_records=config.min_window_records,
        )
        if window is not None:
            self._judge(watch, window)
        export_signals(watch, self.aggregate.states(watch.name, watch.version))
        if self.quality_of is not None:
            export_quality(watch, self.quality_of)

    def _judge(self, watch: Watch, window: ClosedWindow) -> None:
        assert watch.detector is not None
        previous = self.aggregate.states(watch.name, watch.version)
        alarms = {signal: state.alarm for signal, state in previous.items()}
        results = watch.detector.evaluate(window.tally, alarms, window.started_at, window.closed_at)
        states, events = next_states(
            watch.name, watch.version, window, results, previous, watch.detector.unavailable
        )
        recorded = self.aggregate.record(
            watch.name, watch.version, window, states, results, keep=self.config.history_windows
        )
        if recorded:
            log.info(
                "monitor window judged",
                extra={
                    "model_version": watch.version,
                    "window": window.number,
                    "records": window.tally.n,
                    "alarms": sorted(s for s, state in states.items() if state.alarm),
                },
            )
            self._publisher.put(events)

    def _forget(self, watch: Watch) -> None:
        """Drop a version no longer served here, and its gauges."""
        with self._watch_lock:
            self._watches.pop(watch.version, None)
        forget_gauges(watch)

    # -- reading ----------------------------------------------------------------------------------

    def watch(self, model: ModelVersion) -> Watch:
        """The version's watch, made (its profile read) on first use."""
        with self._watch_lock:
            watch = self._watches.get(model.version)
        if watch is not None:
            return watch
        made = watch_version(self.served, model, self.config)
        with self._watch_lock:
            return self._watches.setdefault(model.version, made)

    def signals(self, model: ModelVersion) -> list[SignalState]:
        """The version's signal states across every process (blocking: reads the aggregate)."""
        watch = self.watch(model)
        if watch.detector is None:
            return unavailable(model.name, model.version, watch.reason)
        states = self.aggregate.states(model.name, model.version)
        waiting = f"no window of at least {self.config.min_window_records} records has closed yet"
        reasons = watch.detector.unavailable
        out = []
        for signal in watch.detector.signals:
            state = states.get(signal)
            if state is None:
                state = SignalState(
                    model=model.name,
                    model_version=model.version,
                    signal=signal,
                    status="unavailable" if signal in reasons else "insufficient",
                    alarm=False,
                    since=None,
                    windows=0,
                    last=None,
                    reason=reasons.get(signal, waiting),
                )
            out.append(state)
        return out

    def history(
        self,
        model: str,
        version: int,
        *,
        since: datetime | None,
        signal: str | None,
        limit: int,
    ) -> list[WindowResult]:
        """Evaluated windows of a version, oldest first (blocking: reads the aggregate)."""
        return self.aggregate.history(model, version, since=since, signal=signal, limit=limit)

    @property
    def queued(self) -> int:
        """Records waiting for the worker."""
        return self._queued

    @property
    def events_pending(self) -> int:
        """Events waiting to be delivered."""
        return self._publisher.pending
