"""Topic creation and broker reachability, done once at start-up by the stack and the CLI."""

from __future__ import annotations

import logging
import socket
import time

from kafka import KafkaAdminClient
from kafka.errors import KafkaError, TopicAlreadyExistsError, for_code

from mlcycle.common.errors import Unavailable
from mlcycle.common.kafka.connection import new_admin
from mlcycle.common.settings import KafkaSettings

log = logging.getLogger(__name__)

_PROBE_TIMEOUT_MS = 1000


def _admin(
    kafka: KafkaSettings, *, request_timeout_ms: int, bootstrap_timeout_ms: int
) -> KafkaAdminClient:
    return new_admin(
        kafka,
        client_id="mlcycle-admin",
        request_timeout_ms=request_timeout_ms,
        bootstrap_timeout_ms=bootstrap_timeout_ms,
    )


def _listening(bootstrap: str) -> bool:
    """True if any bootstrap address accepts a TCP connection.

    Checked before a Kafka client is built, so that waiting for a broker
    that is still starting does not log a connection error per attempt.
    """
    for address in bootstrap.split(","):
        host, _, port = address.strip().rpartition(":")
        try:
            with socket.create_connection((host.strip("[]") or "localhost", int(port)), 1.0):
                return True
        except (OSError, ValueError):
            continue
    return False


def wait_for_broker(kafka: KafkaSettings, timeout_s: float = 30.0) -> None:
    """Block until a Kafka broker of ``kafka`` answers a metadata request (with its security).

    Raises :class:`~mlcycle.common.errors.Unavailable` after ``timeout_s``.
    """
    bootstrap = kafka.bootstrap_servers
    deadline = time.monotonic() + timeout_s
    last_error: Exception | None = None
    while True:
        try:
            if not _listening(bootstrap):
                raise OSError(f"nothing listens at {bootstrap}")
            admin = _admin(
                kafka,
                request_timeout_ms=_PROBE_TIMEOUT_MS * 2,
                bootstrap_timeout_ms=_PROBE_TIMEOUT_MS,
            )
        except (KafkaError, OSError) as exc:
            last_error = exc
        else:
            admin.close()
            return
        if time.monotonic() >= deadline:
            raise Unavailable(
                f"no Kafka broker answered at {bootstrap} within {timeout_s:.0f} s",
                details={"bootstrap": bootstrap, "error": str(last_error)},
            )
        time.sleep(0.1)


def ensure_topics(kafka: KafkaSettings, topics: list[str] | None = None) -> None:
    """Create ``topics`` (default: every topic mlcycle uses, with dead-letter twins).

    Topics that already exist are left as they are (their partition count is
    not changed). Returns once broker metadata lists every topic with a leader
    for each partition, so producers and consumers can use them at once.
    """
    names = list(dict.fromkeys(topics if topics is not None else kafka.topics.all_with_dlqs()))
    if not names:
        return
    spec = {
        name: {
            "num_partitions": kafka.partitions,
            "replication_factor": kafka.replication_factor,
        }
        for name in names
    }
    try:
        admin = _admin(
            kafka,
            request_timeout_ms=kafka.request_timeout_ms,
            bootstrap_timeout_ms=kafka.request_timeout_ms,
        )
    except KafkaError as exc:
        raise Unavailable(f"cannot reach Kafka at {kafka.bootstrap_servers}: {exc}") from exc
    try:
        response = admin.create_topics(spec, raise_errors=False)
        created = _check_created(response)
        admin.wait_for_topics(names, timeout_ms=kafka.request_timeout_ms)
    except KafkaError as exc:
        raise Unavailable(f"cannot create Kafka topics {names}: {exc}") from exc
    finally:
        admin.close()
    log.info("topics ready", extra={"topics": names, "new_topics": created})


def _check_created(response: dict[str, object]) -> list[str]:
    """Names created by this call; raise on any error other than 'already exists'."""
    created: list[str] = []
    for topic in response.get("topics", []):  # type: ignore[union-attr]
        error = for_code(topic["error_code"])
        if topic["error_code"] == 0:
            created.append(topic["name"])
        elif error is not TopicAlreadyExistsError:
            raise error(f"{topic['name']}: {topic.get('error_message') or error.__name__}")
    return created
