"""The live monitor's events on the ``monitoring`` topic, sent from a thread of their own.

A producer is made on the first event (the API process has none otherwise);
while the broker is unreachable the events are kept (the newest
:data:`OUTBOX`), retried with a growing pause and logged once, so neither
predictions nor the monitor's windows ever wait for Kafka.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Sequence
from typing import Protocol

from mlcycle.common.kafka.producer import RecordProducer
from mlcycle.common.settings import KafkaSettings
from mlcycle.contracts.monitoring import MonitoringEvent

log = logging.getLogger(__name__)

# The most events kept while the broker is away (the oldest go first).
OUTBOX = 1000
# Waits between attempts to publish while the broker is away.
RETRY_FIRST_S = 1.0
RETRY_MAX_S = 30.0


class EventSink(Protocol):
    """Where alarm events go; :meth:`send` raises when they could not be delivered."""

    def send(self, events: Sequence[MonitoringEvent]) -> None: ...

    def close(self) -> None: ...


class KafkaEvents:
    """Events on the monitoring topic, keyed by their id, through a producer made on first use."""

    def __init__(self, kafka: KafkaSettings, topic: str, *, timeout_s: float = 10.0) -> None:
        self.kafka = kafka
        self.topic = topic
        self.timeout_s = timeout_s
        self._producer: RecordProducer | None = None

    def send(self, events: Sequence[MonitoringEvent]) -> None:
        if self._producer is None:
            self._producer = RecordProducer(self.kafka, client_id="mlcycle-monitor")
        items = [(event.id, event.model_dump_json().encode("utf-8")) for event in events]
        self._producer.send_batch(self.topic, items, timeout_s=self.timeout_s)

    def close(self) -> None:
        if self._producer is not None:
            self._producer.close(timeout=self.timeout_s)


class Publisher:
    """Sends events from its own thread, keeping them (and retrying) while the sink fails."""

    def __init__(self, sink: EventSink) -> None:
        self.sink = sink
        self._outbox: deque[MonitoringEvent] = deque(maxlen=OUTBOX)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="monitor-events", daemon=True)
        self._failing = False
        self._thread.start()

    def put(self, events: Sequence[MonitoringEvent]) -> None:
        if events:
            self._outbox.extend(events)
            self._wake.set()

    @property
    def pending(self) -> int:
        return len(self._outbox)

    def _run(self) -> None:
        wait = RETRY_FIRST_S
        while not self._stop.is_set():
            self._wake.wait()
            self._wake.clear()
            while self._outbox and not self._stop.is_set():
                if self._send():
                    wait = RETRY_FIRST_S
                    continue
                self._stop.wait(wait)
                wait = min(wait * 2, RETRY_MAX_S)

    def _send(self) -> bool:
        events = list(self._outbox)
        try:
            self.sink.send(events)
        except Exception as exc:  # the broker is away (or anything else): keep them, retry
            if not self._failing:
                log.warning(
                    "monitoring events not delivered; kept and retried",
                    extra={"events": len(events), "error": str(exc)},
                )
                self._failing = True
            return False
        for event in events:  # those sent (the outbox may have moved on meanwhile)
            if self._outbox and self._outbox[0] is event:
                self._outbox.popleft()
        if self._failing:
            log.info("monitoring events delivered again", extra={"events": len(events)})
            self._failing = False
        return True

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop the thread, try once more to send what is kept, close the sink."""
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout_s)
        if self._thread.is_alive():  # stuck in a send to an unreachable broker: leave it
            log.warning("monitoring events not delivered at stop", extra={"events": self.pending})
            return
        if self._outbox:
            self._send()
        self.sink.close()
