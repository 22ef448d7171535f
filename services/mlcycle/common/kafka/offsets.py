"""Which offsets a consumer may commit: those of batches handled, and nothing else.

A batch's next offsets become pending once its handler returned; they are
committed at once and, after a transient broker error, on the next chance.
"""

from __future__ import annotations

import logging

from kafka import KafkaConsumer, OffsetAndMetadata, TopicPartition
from kafka.errors import CommitFailedError, KafkaError, RebalanceInProgressError

from mlcycle.common.kafka.records import ConsumedRecord

log = logging.getLogger(__name__)


def batch_bounds(
    batch: list[ConsumedRecord],
) -> tuple[dict[TopicPartition, int], dict[TopicPartition, int]]:
    """First offset and next offset (last + 1) of each partition in ``batch``."""
    first: dict[TopicPartition, int] = {}
    after: dict[TopicPartition, int] = {}
    for record in batch:
        tp = TopicPartition(record.topic, record.partition)
        first[tp] = min(first.get(tp, record.offset), record.offset)
        after[tp] = max(after.get(tp, 0), record.offset + 1)
    return first, after


class PendingCommits:
    """The next offset of each partition whose handled records are not committed yet."""

    def __init__(self) -> None:
        self._pending: dict[TopicPartition, OffsetAndMetadata] = {}

    def handled(self, batch: list[ConsumedRecord]) -> None:
        """Every record of ``batch`` is handled: its partitions may be committed past it."""
        _, after = batch_bounds(batch)
        self._pending.update({tp: OffsetAndMetadata(off, "", -1) for tp, off in after.items()})

    def commit(self, consumer: KafkaConsumer) -> bool:
        """Commit what is pending; True when the broker took it.

        On a transient error the offsets stay pending for the next call; after a
        rebalance they are dropped, since the partitions' new owners redeliver from
        the last commit and the upserts make that harmless.
        """
        if not self._pending:
            return False
        offsets = dict(self._pending)
        try:
            consumer.commit(offsets)
        except (CommitFailedError, RebalanceInProgressError) as exc:
            log.warning("commit rejected after a rebalance", extra={"error": str(exc)})
            self._pending.clear()
            return False
        except KafkaError as exc:
            log.warning("commit failed; will retry", extra={"error": str(exc)})
            return False
        for tp, meta in offsets.items():
            if self._pending.get(tp) == meta:
                del self._pending[tp]
        return True
