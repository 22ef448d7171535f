"""What every command shares: the console, settings read once with logging set up, and errors.

A command reads its settings here (from ``MLCYCLE_*``, once) and ends on a
:class:`~mlcycle.common.errors.MlcycleError` by printing its message and
exiting with code 2, never with a traceback.
"""

from __future__ import annotations

from typing import NoReturn

import typer
from rich.console import Console

from mlcycle.common.errors import MlcycleError
from mlcycle.common.logging import configure_logging
from mlcycle.common.settings import Settings, load_settings

console = Console(stderr=True)


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
