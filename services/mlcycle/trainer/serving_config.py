"""Writing TF Serving's model config file from the registry's state: what the model server loads.

A ``ModelServerConfig`` in text format, at
:func:`~mlcycle.contracts.serving.serving_config_path`, gives each served name the
``specific`` version policy listing :meth:`ServingPointer.loaded_versions` (production,
the running rollout's canary and shadow, and the head of the rollback stack) and the
``version_labels`` of :meth:`ServingPointer.labels` (``stable``, ``canary``,
``shadow``). The model server, run with ``--model_config_file`` and
``--model_config_file_poll_wait_seconds``, picks a change up by itself. The file is
derived from the registry's state in the store and only ever written whole (write
to a temporary file, then rename), so the model server never reads half of it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2

from mlcycle.common.errors import InvalidInput
from mlcycle.common.files import write_atomically
from mlcycle.common.settings import TrainerSettings
from mlcycle.contracts.models import ServingPointer, pointer_id
from mlcycle.contracts.serving import serving_config_path

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServedModel:
    """One name of a serving config: its ``specific`` versions (empty: not pinned) and labels."""

    versions: tuple[int, ...] = ()
    labels: Mapping[str, int] = field(default_factory=dict)

    @property
    def stable(self) -> int | None:
        """The version labelled ``stable``, else the highest pinned one (None: not pinned)."""
        if "stable" in self.labels:
            return self.labels["stable"]
        return max(self.versions) if self.versions else None


def write_serving_config(
    settings: TrainerSettings, served: Mapping[str, int] | Iterable[ServingPointer]
) -> Path:
    """Replace the config file atomically with ``served`` (pointers, or name → version).

    Model folders are named under ``settings.model_server_base_path`` (the path the
    model server sees, e.g. in its container), else under the local models path.
    """
    base = settings.model_server_base_path or str(settings.models_dir.resolve())
    path = serving_config_path(settings.models_dir)
    pointers = _pointers(served)
    write_atomically(path, render_serving_config(pointers, base).encode())
    log.info(
        "serving config written",
        extra={"path": str(path), "models": {p.name: p.labels() for p in pointers}},
    )
    return path


def render_serving_config(
    served: Mapping[str, int] | Iterable[ServingPointer], base_path: str
) -> str:
    """A ``ModelServerConfig`` text proto: each name's loaded versions and version labels.

    ``served`` is the registry's pointers, or (name → production version) for a config
    without a rollout. A name with nothing to load is left out.
    """
    config = model_server_config_pb2.ModelServerConfig()
    for pointer in sorted(_pointers(served), key=lambda p: p.name):
        versions = pointer.loaded_versions()
        if not versions:
            continue
        model = config.model_config_list.config.add()
        model.name = pointer.name
        model.base_path = base_path.rstrip("/") + "/" + pointer.name
        model.model_platform = "tensorflow"
        model.model_version_policy.specific.versions.extend(versions)
        for label, version in sorted(pointer.labels().items()):
            model.version_labels[label] = version
    if not config.model_config_list.config:
        # An empty list still names the list, so the model server reads "serve nothing".
        config.model_config_list.SetInParent()
    return text_format.MessageToString(config)


def parse_serving_config(text: str) -> dict[str, ServedModel]:
    """Name → pinned versions and labels of every model in a ``ModelServerConfig`` text proto.

    The versions are empty when the version policy is ``latest``, ``all`` or absent
    (TF Serving's default is the latest version).
    """
    config = model_server_config_pb2.ModelServerConfig()
    try:
        text_format.Parse(text, config)
    except text_format.ParseError as exc:
        raise InvalidInput(f"not a text-format serving config: {exc}") from None
    return {
        model.name: ServedModel(
            versions=tuple(sorted(model.model_version_policy.specific.versions)),
            labels=dict(model.version_labels),
        )
        for model in config.model_config_list.config
    }


def _pointers(served: Mapping[str, int] | Iterable[ServingPointer]) -> list[ServingPointer]:
    if isinstance(served, Mapping):
        return [
            ServingPointer(id=pointer_id(name), name=name, version=int(version))
            for name, version in served.items()
        ]
    return list(served)
