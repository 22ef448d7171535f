"""The serving config: the file the trainer's registry writes and the model server watches.

It is TF Serving's ``--model_config_file`` (a ``ModelServerConfig`` text
proto) at ``<models_path>/models.config``: every model name pinned to its
production version. Whoever starts a model server before the trainer has run
(the local stack) writes an empty one first, because TF Serving refuses to
start without its config file; the trainer rewrites it when it starts.
"""

from __future__ import annotations

from pathlib import Path

from mlcycle.common.files import write_atomically

SERVING_CONFIG_FILE = "models.config"
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
