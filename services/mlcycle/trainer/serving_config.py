"""Writing TF Serving's model config file from the registry's state: what the model server loads.

A ``ModelServerConfig`` in text format pins each served name to its
production version, at :func:`~mlcycle.contracts.serving.serving_config_path`.
The model server, run with ``--model_config_file`` and
``--model_config_file_poll_wait_seconds``, picks a change up by itself. The
file is derived from the registry's state in the store and only ever written
whole (write to a temporary file, then rename), so the model server never
reads half of it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2

from mlcycle.common.errors import InvalidInput
from mlcycle.common.files import write_atomically
from mlcycle.common.settings import TrainerSettings
from mlcycle.contracts.serving import serving_config_path

log = logging.getLogger(__name__)


def write_serving_config(settings: TrainerSettings, served: Mapping[str, int]) -> Path:
    """Replace the config file atomically: each name in ``served`` pinned to its version.

    Model folders are named under ``settings.model_server_base_path`` (the path the
    model server sees, e.g. in its container), else under the local models path.
    """
    base = settings.model_server_base_path or str(settings.models_dir.resolve())
    path = serving_config_path(settings.models_dir)
    write_atomically(path, render_serving_config(served, base).encode())
    log.info("serving config written", extra={"path": str(path), "models": dict(served)})
    return path


def render_serving_config(served: Mapping[str, int], base_path: str) -> str:
    """A ``ModelServerConfig`` text proto serving each name at exactly its given version."""
    config = model_server_config_pb2.ModelServerConfig()
    for name in sorted(served):
        model = config.model_config_list.config.add()
        model.name = name
        model.base_path = base_path.rstrip("/") + "/" + name
        model.model_platform = "tensorflow"
        model.model_version_policy.specific.versions.append(int(served[name]))
    if not served:
        # An empty list still names the list, so the model server reads "serve nothing".
        config.model_config_list.SetInParent()
    return text_format.MessageToString(config)


def parse_serving_config(text: str) -> dict[str, int | None]:
    """Name → pinned version of every model in a ``ModelServerConfig`` text proto.

    None when the version policy is ``latest``, ``all`` or absent (TF Serving's
    default is the latest version). With several ``specific`` versions, the highest.
    """
    config = model_server_config_pb2.ModelServerConfig()
    try:
        text_format.Parse(text, config)
    except text_format.ParseError as exc:
        raise InvalidInput(f"not a text-format serving config: {exc}") from None
    served: dict[str, int | None] = {}
    for model in config.model_config_list.config:
        versions = list(model.model_version_policy.specific.versions)
        served[model.name] = max(versions) if versions else None
    return served
