"""What every command shares: the console, settings read once with logging set up, the client
of the service it asks, and errors.

A command reads its settings here (from ``MLCYCLE_*``, once) and ends on a
:class:`~mlcycle.common.errors.MlcycleError` by printing its message and
exiting with code 2, never with a traceback.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Literal, NoReturn, overload

import typer
from rich.console import Console

from mlcycle.common.errors import MlcycleError
from mlcycle.common.logging import configure_logging
from mlcycle.common.settings import Settings, load_settings

if TYPE_CHECKING:
    from mlcycle.clients import InferenceClient, TrainerClient
    from mlcycle.clients.base import ServiceClient

console = Console(stderr=True)

# The option of the commands that ask the trainer service (it hosts the registry).
TrainerUrl = Annotated[
    str | None, typer.Option("--url", help="The trainer service (default from settings).")
]


def settings_for(service: str, *, interactive: bool = False) -> Settings:
    """Settings from the environment, and logging configured for ``service``.

    Commands a person runs in a terminal log plain text unless
    MLCYCLE_LOG_FORMAT says otherwise; services log JSON lines.
    """
    settings = load_settings()
    fmt = settings.log_format
    if interactive and "log_format" not in settings.model_fields_set:
        fmt = "text"
    configure_logging(settings.log_level, fmt, service=service)
    return settings


def fail(exc: MlcycleError) -> NoReturn:
    """End the command on ``exc``: its message on stderr, exit code 2."""
    console.print(f"[bold red]error:[/] {exc.message}")
    raise typer.Exit(code=2)


@overload
def service_client(
    settings: Settings, service: Literal["trainer"], url: str | None, api_key: str | None
) -> TrainerClient: ...


@overload
def service_client(
    settings: Settings, service: Literal["inference"], url: str | None, api_key: str | None
) -> InferenceClient: ...


def service_client(
    settings: Settings,
    service: Literal["trainer", "inference"],
    url: str | None,
    api_key: str | None,
) -> ServiceClient:
    """The client of ``service`` at ``url`` (default: the settings' host and port), sending
    ``api_key`` (default: the configured key, see
    :func:`~mlcycle.clients.services.default_api_key`)."""
    # Imported here: the clients are only loaded by the commands that call a service.
    from mlcycle.clients import InferenceClient, TrainerClient, clients_for, default_api_key

    if url is None:
        clients = clients_for(settings, api_key=api_key)
        return clients.trainer if service == "trainer" else clients.inference
    key = api_key if api_key is not None else default_api_key(settings.edge)
    kind = TrainerClient if service == "trainer" else InferenceClient
    return kind(url, api_key=key)
