"""How far a consumer group is behind: the signal that a topic has been fully handled."""

from __future__ import annotations

from kafka import TopicPartition

from mlcycle.common.kafka.connection import new_admin, new_consumer
from mlcycle.common.settings import KafkaSettings


def end_offsets(kafka: KafkaSettings, topics: list[str]) -> dict[TopicPartition, int]:
    """The next offset to be written, per partition of ``topics``.

    Some Kafka-protocol brokers (Tansu among them) answer ListOffsets(latest)
    with the base offset of the last record batch rather than the high
    watermark, so the reported end is only a starting point: the tail after it
    is read (at most one batch per partition) to find the true end.
    """
    consumer = new_consumer(
        kafka,
        enable_auto_commit=False,
        fetch_max_wait_ms=100,
    )
    try:
        partitions = [
            TopicPartition(topic, p)
            for topic in topics
            for p in sorted(consumer.partitions_for_topic(topic) or ())
        ]
        if not partitions:
            return {}
        ends = dict(consumer.end_offsets(partitions))
        consumer.assign(partitions)
        for tp in partitions:
            consumer.seek(tp, ends[tp])
        while True:
            polled = consumer.poll(timeout_ms=300)
            if not polled:
                return ends
            for tp, records in polled.items():
                ends[tp] = max(ends[tp], records[-1].offset + 1)
    finally:
        consumer.close()


def topic_sizes(kafka: KafkaSettings, topics: list[str]) -> dict[str, int]:
    """Records ever written to each topic (end offsets summed; nothing is compacted here)."""
    sizes = dict.fromkeys(topics, 0)
    for tp, offset in end_offsets(kafka, topics).items():
        sizes[tp.topic] += offset
    return sizes


def group_lag(kafka: KafkaSettings, group_id: str, topics: list[str]) -> int:
    """Records in ``topics`` not yet committed by ``group_id`` (0 means caught up)."""
    admin = new_admin(kafka)
    try:
        committed = admin.list_group_offsets(group_id).get(group_id, {})
    finally:
        admin.close()
    lag = 0
    for tp, end in end_offsets(kafka, topics).items():
        meta = committed.get(tp)
        done = meta.offset if meta is not None and meta.offset >= 0 else 0
        lag += max(0, end - done)
    return lag
