"""Dead letters: the value on ``<topic>.dlq`` for every record a service rejected.

A dead letter carries the original record (topic, partition, offset, key,
timestamp, and the value as text when it is UTF-8, else base64), the error, the
service that rejected it and the time::

    {"original": {"topic", "partition", "offset", "key", "timestamp_ms",
                  "value", "value_encoding"},
     "error": "...", "service": "...", "time": "2024-05-01T12:00:00.123Z"}

The shared consumer loop writes them, and it lives in ``mlcycle.common``, which
imports nothing from the contracts; so the types are defined beside the loop
(:mod:`mlcycle.common.kafka.deadletter`) and this module is their public home.
"""

from mlcycle.common.kafka.deadletter import DeadLetter, OriginalRecord

__all__ = ["DeadLetter", "OriginalRecord"]
