"""Running an app: in the foreground until a stop signal, or on a background thread."""

from __future__ import annotations

import logging
import signal
import threading
import time
from typing import Any

import uvicorn
from starlette.types import ASGIApp

from mlcycle.common.errors import Unavailable
from mlcycle.common.heap import freeze_heap

log = logging.getLogger(__name__)


class BackgroundServer:
    """A uvicorn server on a daemon thread.

    For the side endpoints of worker processes (an indexer's ``/healthz`` and
    ``/metrics`` while its main thread runs the consumer loop) and for tests that
    need real HTTP. Port 0 picks a free port; read it from :attr:`port`.
    """

    def __init__(self, app: ASGIApp, host: str, port: int, **config: Any) -> None:
        self._server = uvicorn.Server(
            uvicorn.Config(app, host=host, port=port, log_config=None, access_log=False, **config)
        )
        self._thread = threading.Thread(target=self._server.run, name=f"http-{port}", daemon=True)

    def start(self, timeout_s: float = 10.0) -> BackgroundServer:
        """Start serving; returns once the socket accepts connections."""
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise Unavailable("the HTTP server did not start (is the port free?)")
            time.sleep(0.01)
        return self

    @property
    def port(self) -> int:
        """The port actually bound."""
        return int(self._server.servers[0].sockets[0].getsockname()[1])

    def stop(self, timeout_s: float = 5.0) -> None:
        """Finish in-flight requests and stop."""
        self._server.should_exit = True
        self._thread.join(timeout_s)


def serve_app(app: ASGIApp, host: str, port: int, *, service: str) -> None:
    """Run ``app`` in the foreground until SIGINT/SIGTERM, then return normally.

    uvicorn shuts down gracefully on SIGINT/SIGTERM, then re-raises the signal
    under the handlers it found; with these in place that re-raise is
    harmless, so the caller's ``finally`` closes its backends and the process
    exits 0.
    """

    def stopped(signum: int, frame: object) -> None:
        log.info("%s stopping", service, extra={"signal": signal.Signals(signum).name})

    previous = {sig: signal.signal(sig, stopped) for sig in (signal.SIGINT, signal.SIGTERM)}
    # Everything imported and opened so far lives as long as the server: later
    # collections leave it alone (mlcycle.common.heap says why).
    objects, seconds = freeze_heap()
    log.debug("heap frozen", extra={"objects": objects, "seconds": round(seconds, 3)})
    try:
        log.info("%s listening", service, extra={"host": host, "port": port})
        uvicorn.run(
            app,
            host=host,
            port=port,
            loop="uvloop",
            http="httptools",
            log_config=None,  # logging is configured once by the entry point
            access_log=False,  # the metrics middleware counts requests
        )
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
