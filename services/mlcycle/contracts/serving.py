"""The serving config and the routing table: files the registry writes on the models volume.

The serving config is TF Serving's ``--model_config_file`` (a ``ModelServerConfig``
text proto) at ``<models_path>/models.config``: every model name with the versions
it serves (``specific`` policy) and the labels ``stable``, ``canary`` and ``shadow``.
The routing table (``<models_path>/routing.json``, a
:class:`~mlcycle.contracts.rollouts.RoutingTable`) tells the inference replicas
which share of traffic each labelled version takes. Whoever starts a model server
before the trainer has run (the local stack) writes an empty config first, because
TF Serving refuses to start without its config file; the trainer rewrites both
files when it starts.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import ValidationError

from mlcycle.common.files import write_atomically
from mlcycle.contracts.rollouts import RoutingTable

SERVING_CONFIG_FILE = "models.config"
ROUTING_FILE = "routing.json"
# A ModelServerConfig that serves nothing: an empty list still names the list.
EMPTY_SERVING_CONFIG = "model_config_list {\n}\n"


def serving_config_path(models_path: Path) -> Path:
    """Where the serving config of the model base path ``models_path`` lives."""
    return models_path / SERVING_CONFIG_FILE


def ensure_serving_config(models_path: Path) -> Path:
    """Write an empty serving config unless one exists; returns its path."""
    path = serving_config_path(models_path)
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(path, EMPTY_SERVING_CONFIG.encode())
    return path


def routing_path(models_path: Path) -> Path:
    """Where the routing table of the model base path ``models_path`` lives."""
    return models_path / ROUTING_FILE


def write_routing_table(models_path: Path, table: RoutingTable) -> Path:
    """Replace the routing table atomically; returns its path."""
    path = routing_path(models_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, table.model_dump_json(indent=1).encode())
    return path


def read_routing_table(models_path: Path) -> RoutingTable | None:
    """The routing table, or None when there is none or it cannot be read (route as before)."""
    try:
        return RoutingTable.model_validate_json(routing_path(models_path).read_bytes())
    except (OSError, ValidationError):
        return None
