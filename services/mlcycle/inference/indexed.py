"""How far the collector-indexer has durably stored a topic: its group's committed offsets.

The indexer's consumer loop commits a record's offset only after the record is
stored, and never rewrites a record it has committed. A write that must come
after the indexer's own write of the same record (the stream's scores) waits
until the indexer's committed offset on the record's partition is past it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Protocol

from kafka import KafkaAdminClient, TopicPartition
from kafka.errors import KafkaError

from mlcycle.common.errors import Unavailable
from mlcycle.common.kafka.connection import new_admin
from mlcycle.common.settings import KafkaSettings

log = logging.getLogger(__name__)

POLL_S = 0.05


class IndexerProgress(Protocol):
    """How far the collector-indexer has durably stored a topic."""

    def wait_past(self, needed: Mapping[TopicPartition, int], timeout_s: float) -> None:
        """Return once every partition's committed offset reaches ``needed``; else Unavailable."""
        ...


class CommittedOffsets:
    """:class:`IndexerProgress` from the indexer group's committed offsets (Kafka OffsetFetch)."""

    def __init__(self, kafka: KafkaSettings, indexer_group_id: str) -> None:
        self.group = indexer_group_id
        self.kafka = kafka
        self._admin: KafkaAdminClient | None = None

    def wait_past(self, needed: Mapping[TopicPartition, int], timeout_s: float) -> None:
        """Poll the indexer group's offsets until it committed past ``needed`` (Unavailable)."""
        deadline = time.monotonic() + timeout_s
        while True:
            committed = self._committed(list(needed))
            behind = {tp: off for tp, off in needed.items() if committed.get(tp, -1) < off}
            if not behind:
                return
            if time.monotonic() >= deadline:
                where = ", ".join(f"{tp.topic}/{tp.partition}@{off}" for tp, off in behind.items())
                raise Unavailable(
                    f"the collector-indexer (group {self.group}) has not stored {where} yet; "
                    "scores are written after the comments they belong to",
                    details={"group": self.group},
                )
            time.sleep(POLL_S)

    def _committed(self, partitions: list[TopicPartition]) -> dict[TopicPartition, int]:
        try:
            if self._admin is None:
                self._admin = new_admin(self.kafka, client_id=f"{self.group}-watcher")
            found = self._admin.list_group_offsets({self.group: partitions}).get(self.group, {})
        except KafkaError as exc:
            self.close()
            raise Unavailable(f"cannot read group {self.group}'s offsets: {exc}") from exc
        return {tp: meta.offset for tp, meta in found.items() if meta is not None}

    def close(self) -> None:
        """Close the admin connection (it is reopened when needed)."""
        if self._admin is not None:
            admin, self._admin = self._admin, None
            try:
                admin.close()
            except KafkaError as exc:
                log.debug("admin client close failed", extra={"error": str(exc)})
