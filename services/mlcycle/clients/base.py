"""What every service client shares: base URL, API key, timeouts, and errors as MlcycleError.

A client sends its API key's secret as ``Authorization: Bearer <secret>`` on every
call (when keys are configured, each route needs a key with its scope), and
turns every failure into the :mod:`mlcycle.common.errors` class that says what
went wrong: a refused connection is :class:`Unavailable`, an answer in the
shared ``{"error": {"code", "message", "details"}}`` shape (or TF Serving's
``{"error": "..."}``) is the class of its code and status. The message names the
service and the status, so a command can print it as it is.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import TracebackType
from typing import Any, ClassVar, TypeVar

import httpx
from pydantic import BaseModel, ValidationError

from mlcycle.common.addresses import (  # re-exported: the clients' callers dial with them
    auth_headers as auth_headers,
)
from mlcycle.common.addresses import (
    dialable_host as dialable_host,
)
from mlcycle.common.addresses import (
    service_url as service_url,
)
from mlcycle.common.errors import (
    Forbidden,
    InvalidInput,
    MlcycleError,
    NotFound,
    PayloadTooLarge,
    TooManyRequests,
    Unauthenticated,
    Unavailable,
    UnsupportedMediaType,
    ValidationFailed,
)

M = TypeVar("M", bound=BaseModel)
QueryValue = str | int | float | bool

DEFAULT_TIMEOUT_S = 30.0
HEALTHZ, READYZ = "/healthz", "/readyz"
# Timeout of a health probe: a service that takes longer is not ready yet.
PROBE_TIMEOUT_S = 1.0
_ERRORS_BY_STATUS: dict[int, type[MlcycleError]] = {
    cls.http_status: cls
    for cls in (
        InvalidInput,
        ValidationFailed,
        Unauthenticated,
        Forbidden,
        NotFound,
        PayloadTooLarge,
        UnsupportedMediaType,
        TooManyRequests,
        Unavailable,
    )
}
# A gateway that could not reach the service behind it: as good as unreachable.
_GATEWAY_STATUSES = (502, 504)


class ServiceUnreachable(Unavailable):
    """Nothing answered at the service's address (refused, unresolvable): it is not running."""


class Readiness(BaseModel):
    """A ready service's ``/readyz``: ``ready``, or ``degraded`` without an optional dependency."""

    status: str
    checks: dict[str, bool] = {}


def error_from_response(service: str, response: httpx.Response) -> MlcycleError:
    """The MlcycleError a failed answer of ``service`` stands for, its message naming both.

    ``service`` is how the message names it, e.g. "inference service".
    """
    status = response.status_code
    try:
        error = response.json().get("error")
    except (ValueError, AttributeError):
        error = None
    details = None
    if isinstance(error, dict):
        message = f"{error.get('code', 'error')}: {error.get('message', '')}"
        details = error.get("details")
    elif isinstance(error, str):  # TF Serving's REST shape
        message = error
    else:
        message = response.text.strip()[:500] or response.reason_phrase
    text = f"the {service} answered {status}: {message}"
    return _error_class(status)(text, details=details)


def _error_class(status: int) -> type[MlcycleError]:
    if status in _ERRORS_BY_STATUS:
        return _ERRORS_BY_STATUS[status]
    if status in _GATEWAY_STATUSES:
        return Unavailable
    return InvalidInput if status < 500 else MlcycleError


class ServiceClient:
    """A blocking HTTP client of one mlcycle service; subclasses list its endpoints.

    The connection pool opens on the first call; use the client as a context
    manager (or call :meth:`close`) to release it.
    """

    #: How error messages name the service.
    service: ClassVar[str] = "mlcycle service"
    #: The command that runs the service alone, suggested when it cannot be reached.
    start_command: ClassVar[str] = "mlcycle up"

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.timeout_s = timeout_s
        # Tests put an in-process app or a mock here; None is plain TCP.
        self.transport = transport
        self._http: httpx.Client | None = None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.base_url}>"

    @property
    def headers(self) -> dict[str, str]:
        """The headers every call carries (the API key); for callers with their own HTTP stack."""
        return auth_headers(self.api_key)

    def url(self, path: str) -> str:
        """The absolute URL of ``path`` on this service."""
        return f"{self.base_url}{path}"

    # -- lifecycle ---------------------------------------------------------------------------

    def close(self) -> None:
        """Close the connection pool (the client opens a new one if used again)."""
        if self._http is not None:
            self._http.close()
            self._http = None

    def __enter__(self) -> ServiceClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- health ------------------------------------------------------------------------------

    def alive(self, *, timeout_s: float = PROBE_TIMEOUT_S) -> bool:
        """Whether ``GET /healthz`` answers 200 (False when unreachable)."""
        return self.probe(HEALTHZ, timeout_s=timeout_s)

    def ready(self, *, timeout_s: float = PROBE_TIMEOUT_S) -> bool:
        """Whether ``GET /readyz`` answers 200 (False when unreachable or not ready)."""
        return self.probe(READYZ, timeout_s=timeout_s)

    def readiness(self, *, timeout_s: float | None = None) -> Readiness:
        """``GET /readyz``; a dependency down is Unavailable, its details naming each check."""
        return self.call_record(Readiness, "GET", READYZ, timeout_s=timeout_s)

    def probe(self, path: str, *, timeout_s: float = PROBE_TIMEOUT_S) -> bool:
        """Whether ``GET path`` answers 200 within ``timeout_s``; never raises."""
        try:
            return self._client().get(path, timeout=timeout_s).status_code == 200
        except httpx.HTTPError:
            return False

    # -- calls -------------------------------------------------------------------------------

    def call(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, QueryValue] | None = None,
        json: Any = None,
        content: bytes | None = None,
        headers: dict[str, str] | None = None,
        timeout_s: float | None = None,
    ) -> httpx.Response:
        """``method path``'s successful answer; any failure as the MlcycleError it stands for."""
        try:
            response = self._client().request(
                method,
                path,
                params=params,
                json=json,
                content=content,
                headers=headers,
                timeout=self.timeout_s if timeout_s is None else timeout_s,
            )
        except httpx.ConnectError as exc:
            raise ServiceUnreachable(
                f"cannot reach the {self.service} at {self.base_url} ({exc}); "
                f"is `mlcycle up` (or `{self.start_command}`) running?"
            ) from None
        except httpx.HTTPError as exc:
            raise Unavailable(f"the request to {self.url(path)} failed: {exc}") from None
        if response.status_code >= 400:
            raise error_from_response(self.service, response)
        return response

    def call_json(self, method: str, path: str, **kwargs: Any) -> Any:
        """The JSON of ``method path``'s answer (a free-form document)."""
        response = self.call(method, path, **kwargs)
        try:
            return response.json()
        except ValueError:
            raise Unavailable(f"{self.url(path)} answered something that is not JSON") from None

    def call_record(self, model: type[M], method: str, path: str, **kwargs: Any) -> M:
        """``method path``'s answer read as a ``model`` record."""
        response = self.call(method, path, **kwargs)
        try:
            return model.model_validate_json(response.content)
        except ValidationError as exc:
            raise MlcycleError(
                f"{self.url(path)} answered a body that is not a {model.__name__}: "
                f"{exc.error_count()} error(s), first: {exc.errors()[0]['msg']}"
            ) from None

    def _client(self) -> httpx.Client:
        if self._http is None:
            self._http = httpx.Client(
                base_url=self.base_url,
                headers=self.headers,
                timeout=self.timeout_s,
                transport=self.transport,
            )
        return self._http
