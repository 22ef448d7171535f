"""The model server's REST API: TensorFlow Serving's, on ``model_server_rest_port``.

Only what the tooling asks: a model's version status (which versions are
AVAILABLE) and where its ``:predict`` lives. Errors there are TF Serving's
``{"error": "..."}``, mapped like every other service's.
"""

from __future__ import annotations

from urllib.parse import quote

import httpx
from pydantic import BaseModel, ConfigDict

from mlcycle.clients.base import DEFAULT_TIMEOUT_S, ServiceClient

AVAILABLE = "AVAILABLE"


class VersionStatus(BaseModel):
    """One version's state as TF Serving reports it (``version`` is a string there)."""

    model_config = ConfigDict(extra="allow")

    version: int
    state: str


class ModelStatus(BaseModel):
    """Every version of a model the server knows of."""

    model_version_status: list[VersionStatus] = []

    def available(self) -> set[int]:
        """The versions that answer requests."""
        return {s.version for s in self.model_version_status if s.state == AVAILABLE}


def model_path(name: str) -> str:
    """TF Serving's REST path of model ``name``."""
    return f"/v1/models/{quote(name, safe='')}"


class ModelServerClient(ServiceClient):
    """TF Serving's REST API of the model server, for the model named ``model_name``."""

    service = "model server"
    start_command = "mlcycle modelserver"

    def __init__(
        self,
        base_url: str,
        *,
        model_name: str,
        api_key: str | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        super().__init__(base_url, api_key=api_key, timeout_s=timeout_s, transport=transport)
        self.model_name = model_name

    def status(self, *, timeout_s: float | None = None) -> ModelStatus:
        """The model's versions and their states."""
        return self.call_record(
            ModelStatus, "GET", model_path(self.model_name), timeout_s=timeout_s
        )

    def available_versions(self, *, timeout_s: float | None = None) -> set[int]:
        """The model's versions that answer requests now."""
        return self.status(timeout_s=timeout_s).available()

    @property
    def predict_url(self) -> str:
        """The model's ``:predict`` URL, for a caller with its own HTTP stack."""
        return self.url(f"{model_path(self.model_name)}:predict")
