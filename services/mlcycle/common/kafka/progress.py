"""How far a consumer group has durably handled a topic: its committed offsets.

The collector-indexer's consumer loop commits a record's offset only after the
record is stored, and never rewrites a record it has committed. A process whose
work must see what the indexer stored (the stream's scores, written onto stored
comments; the live labels, computed from stored votes) waits until the
indexer's committed offset on each partition it depends on is past the records
it acts on.
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

Offsets = dict[TopicPartition, int]


class IndexerProgress(Protocol):
    """How far the collector-indexer has durably stored the raw topics."""

    def wait_past(self, needed: Mapping[TopicPartition, int], timeout_s: float) -> None:
        """Return once every partition's committed offset reaches ``needed``; else Unavailable."""
        ...

    def committed_by(self, group_id: str) -> Offsets:
        """Every offset ``group_id`` has committed (its position on each partition it read)."""
        ...


class CommittedOffsets:
    """:class:`IndexerProgress` from the indexer group's committed offsets (Kafka OffsetFetch).

    ``waiting_for`` completes the Unavailable message: why the caller waits.
    """

    def __init__(
        self,
        kafka: KafkaSettings,
        indexer_group_id: str,
        *,
        waiting_for: str = "the caller acts on records only once they are stored",
    ) -> None:
        self.group = indexer_group_id
        self.kafka = kafka
        self.waiting_for = waiting_for
        self._admin: KafkaAdminClient | None = None

    def wait_past(self, needed: Mapping[TopicPartition, int], timeout_s: float) -> None:
        """Poll the indexer group's offsets until it committed past ``needed`` (Unavailable)."""
        deadline = time.monotonic() + timeout_s
        while True:
            committed = self._fetch(self.group, list(needed))
            behind = {tp: off for tp, off in needed.items() if committed.get(tp, -1) < off}
            if not behind:
                return
            if time.monotonic() >= deadline:
                where = ", ".join(f"{tp.topic}/{tp.partition}@{off}" for tp, off in behind.items())
                raise Unavailable(
                    f"the collector-indexer (group {self.group}) has not stored {where} yet; "
                    f"{self.waiting_for}",
                    details={"group": self.group},
                )
            time.sleep(POLL_S)

    def committed_by(self, group_id: str) -> Offsets:
        """Every offset ``group_id`` has committed, by partition (empty for a new group)."""
        return self._fetch(group_id, None)

    def _fetch(self, group_id: str, partitions: list[TopicPartition] | None) -> Offsets:
        try:
            if self._admin is None:
                self._admin = new_admin(self.kafka, client_id=f"{self.group}-watcher")
            found = self._admin.list_group_offsets({group_id: partitions}).get(group_id, {})
        except KafkaError as exc:
            self.close()
            raise Unavailable(f"cannot read group {group_id}'s offsets: {exc}") from exc
        return {
            tp: meta.offset for tp, meta in found.items() if meta is not None and meta.offset >= 0
        }

    def close(self) -> None:
        """Close the admin connection (it is reopened when needed)."""
        if self._admin is not None:
            admin, self._admin = self._admin, None
            try:
                admin.close()
            except KafkaError as exc:
                log.debug("admin client close failed", extra={"error": str(exc)})
