"""Logging configured once, at the entry point: JSON lines by default, plain text on request."""

from __future__ import annotations

import logging
import sys

from pythonjsonlogger.json import JsonFormatter

_TEXT_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


def configure_logging(level: str = "INFO", fmt: str = "json", service: str = "mlcycle") -> None:
    """Install one stderr handler on the root logger; calling it again replaces it."""
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(
            JsonFormatter(
                "%(asctime)s %(levelname)s %(name)s %(message)s",
                rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
                static_fields={"service": service},
            )
        )
    else:
        handler.setFormatter(logging.Formatter(_TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # The Kafka client is chatty at INFO about every connection it makes, httpx
    # about every request a CLI command sends.
    for chatty in ("kafka", "httpx"):
        logging.getLogger(chatty).setLevel(max(logging.WARNING, root.level))
