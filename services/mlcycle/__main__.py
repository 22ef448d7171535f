"""``python -m mlcycle`` is the ``mlcycle`` command (the local stack starts services this way)."""

from mlcycle.cli import app

app()
