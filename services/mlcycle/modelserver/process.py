"""The model server as a child process: ``python -m mlcycle modelserver`` on free ports.

For callers that want the real command, isolated in its own process (the
inference service's tests, benchmarks). The ports are picked here, in the
parent, and passed as ``--port`` and ``--rest_api_port``, so they are known
before the child starts; everything else goes in ``args``, exactly as one
would write it for ``tensorflow_model_server``. The child reads ``MLCYCLE_*``
settings from this process's environment.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import httpx

from mlcycle.common.infra.process import EmbeddedServer, ensure_port_free, free_port


class ModelServerProcess(EmbeddedServer):
    """``mlcycle modelserver`` in a child process; ``start()`` returns once it is ready.

    Ready means every configured model has an AVAILABLE version (``/readyz``), or,
    with ``wait_for_models=False``, that it answers at all (``/healthz``).
    ``args`` must not contain ``--port`` or ``--rest_api_port``: pass ``grpc_port``
    and ``rest_port`` (0, the default, picks free ones).
    """

    what = "model server"

    def __init__(
        self,
        args: Sequence[str] = (),
        *,
        grpc_port: int = 0,
        rest_port: int = 0,
        log_path: Path | None = None,
        wait_for_models: bool = True,
        start_timeout_s: float = 120.0,
    ) -> None:
        super().__init__(grpc_port, start_timeout_s=start_timeout_s)
        self.args = tuple(args)
        self.rest_port = rest_port
        self.log_path = log_path
        self.wait_for_models = wait_for_models

    @property
    def grpc_port(self) -> int:
        """The gRPC port (known once started)."""
        return self.port

    @property
    def grpc_address(self) -> str:
        """``host:port`` of the gRPC API."""
        return f"{self.host}:{self.port}"

    @property
    def rest_url(self) -> str:
        """Base URL of the REST API."""
        return f"http://{self.host}:{self.rest_port}"

    def _prepare(self) -> None:
        if self.rest_port == 0:
            self.rest_port = free_port(self.host)
        else:
            ensure_port_free(self.host, self.rest_port, self.what)

    def _argv(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "mlcycle",
            "modelserver",
            f"--host={self.host}",
            f"--port={self.port}",
            f"--rest_api_port={self.rest_port}",
            *self.args,
        ]

    def _log_path(self) -> Path | None:
        return self.log_path

    def _answers(self) -> bool:
        route = "/readyz" if self.wait_for_models else "/healthz"
        try:
            return httpx.get(self.rest_url + route, timeout=1.0).status_code == 200
        except httpx.HTTPError:
            return False
