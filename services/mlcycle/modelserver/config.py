"""The model server's configuration files, read as TF Serving reads them.

- ``--model_config_file``: a ``ModelServerConfig`` in protobuf text format
  (TF Serving's own message from tensorflow-serving-api), one ``config { ... }``
  per model with its name, base path, version policy and version labels.
- ``--batching_parameters_file``: a ``BatchingParameters`` text proto.
- ``--monitoring_config_file``: a ``MonitoringConfig`` text proto (where the
  Prometheus page is served).

Every error names the file and what is wrong with it.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from google.protobuf import text_format
from google.protobuf.message import Message
from tensorflow_serving.config import model_server_config_pb2

from mlcycle.common.errors import Forbidden, InvalidInput
from mlcycle.modelserver.versions import VersionPolicy
from mlcycle.protos.mlcycle.v1 import modelserver_pb2

log = logging.getLogger(__name__)

ModelServerConfig = model_server_config_pb2.ModelServerConfig
TENSORFLOW_PLATFORM = "tensorflow"
PROMETHEUS_PATH = "/monitoring/prometheus/metrics"
# TF Serving's batching defaults (its SharedBatchScheduler queue options).
DEFAULT_MAX_BATCH_SIZE = 1000
DEFAULT_MAX_ENQUEUED_BATCHES = 10


@dataclass(frozen=True)
class ModelSettings:
    """One model of the config: where its versions live and which ones to serve."""

    name: str
    base_path: Path
    policy: VersionPolicy = field(default_factory=VersionPolicy)
    labels: Mapping[str, int] = field(default_factory=dict)


# -- ModelServerConfig ------------------------------------------------------------------------


def single_model_config(name: str, base_path: str | Path) -> ModelServerConfig:
    """The config ``--model_name`` and ``--model_base_path`` stand for."""
    config = ModelServerConfig()
    model = config.model_config_list.config.add()
    model.name = name
    model.base_path = str(base_path)
    model.model_platform = TENSORFLOW_PLATFORM
    return config


def parse_model_server_config(text: str, source: str) -> ModelServerConfig:
    """A ModelServerConfig from its text form; ``source`` names it in errors."""
    config = ModelServerConfig()
    try:
        text_format.Parse(text, config)
    except text_format.ParseError as exc:
        raise InvalidInput(f"{source}: not a valid ModelServerConfig: {exc}") from None
    model_settings(config, source)  # validate now, so a bad file never half-applies
    return config


def read_model_server_config(path: str | Path) -> ModelServerConfig:
    """The ModelServerConfig in the file at ``path``."""
    return parse_model_server_config(read_file(path, "model config file"), str(path))


def model_settings(config: ModelServerConfig, source: str) -> list[ModelSettings]:
    """The models a ModelServerConfig serves, validated."""
    kind = config.WhichOneof("config")
    if kind == "custom_model_config":
        raise InvalidInput(f"{source}: custom_model_config is not supported; use model_config_list")
    models: list[ModelSettings] = []
    seen: set[str] = set()
    for position, model in enumerate(config.model_config_list.config):
        where = f"{source}: config #{position + 1}"
        if not model.name:
            raise InvalidInput(f"{where} has no name")
        if model.name in seen:
            raise InvalidInput(f"{where}: model name {model.name!r} appears twice")
        seen.add(model.name)
        if not model.base_path:
            raise InvalidInput(f"{where} ({model.name}) has no base_path")
        if model.model_platform not in ("", TENSORFLOW_PLATFORM):
            raise InvalidInput(
                f"{where} ({model.name}): model_platform {model.model_platform!r} is not "
                f"supported; only {TENSORFLOW_PLATFORM!r}"
            )
        models.append(
            ModelSettings(
                name=model.name,
                base_path=Path(model.base_path),
                policy=_policy(model.model_version_policy, f"{where} ({model.name})"),
                labels=dict(model.version_labels),
            )
        )
    return models


def confine_base_paths(models: list[ModelSettings], base_dirs: Sequence[Path], source: str) -> None:
    """Forbidden, naming the path, unless every model's base path lies inside ``base_dirs``.

    Both sides are resolved first (symlinks followed, ``..`` collapsed), so neither a
    link nor a ``..`` leads out of a base directory. No base directory: nothing is allowed.
    """
    allowed = [Path(d).resolve() for d in base_dirs]
    for model in models:
        resolved = model.base_path.resolve()
        if not any(resolved.is_relative_to(d) for d in allowed):
            where = ", ".join(str(d) for d in allowed) or "none configured"
            raise Forbidden(
                f"{source}: model {model.name!r} has base_path {str(model.base_path)!r} "
                f"(resolved: {resolved}), outside the model base directories ({where})",
                details={
                    "model": model.name,
                    "base_path": str(model.base_path),
                    "resolved": str(resolved),
                    "base_dirs": [str(d) for d in allowed],
                },
            )


def _policy(policy: Message, where: str) -> VersionPolicy:
    kind = policy.WhichOneof("policy_choice")
    if kind == "all":
        return VersionPolicy("all")
    if kind == "specific":
        versions = frozenset(int(v) for v in policy.specific.versions)
        if not versions:
            raise InvalidInput(f"{where}: the specific version policy lists no versions")
        return VersionPolicy("specific", versions=versions)
    if kind == "latest":
        return VersionPolicy("latest", num_versions=max(1, int(policy.latest.num_versions)))
    return VersionPolicy()


# -- BatchingParameters -----------------------------------------------------------------------


@dataclass(frozen=True)
class BatchOptions:
    """Server-side batching, with TF Serving's defaults for everything the file leaves out."""

    max_batch_size: int = DEFAULT_MAX_BATCH_SIZE
    batch_timeout_s: float = 0.0
    max_enqueued_batches: int = DEFAULT_MAX_ENQUEUED_BATCHES
    num_batch_threads: int = field(default_factory=lambda: os.cpu_count() or 1)
    allowed_batch_sizes: tuple[int, ...] = ()
    pad_variable_length_inputs: bool = False


def parse_batching_parameters(text: str, source: str) -> BatchOptions:
    """BatchOptions from a BatchingParameters text proto; ``source`` names it in errors.

    Fields newer TF Serving releases added (``enable_large_batch_splitting``, ...)
    are accepted and ignored with a warning, so such a file still starts the server.
    """
    params = modelserver_pb2.BatchingParameters()
    known = set(params.DESCRIPTOR.fields_by_name)
    for name in sorted(_top_level_fields(text) - known):
        log.warning("%s: batching parameter %s is not supported; it is ignored", source, name)
    try:
        text_format.Parse(text, params, allow_unknown_field=True)
    except text_format.ParseError as exc:
        raise InvalidInput(f"{source}: not valid BatchingParameters: {exc}") from None
    options = BatchOptions(
        max_batch_size=_positive(params, "max_batch_size", DEFAULT_MAX_BATCH_SIZE, source),
        batch_timeout_s=params.batch_timeout_micros.value / 1e6,
        max_enqueued_batches=_positive(
            params, "max_enqueued_batches", DEFAULT_MAX_ENQUEUED_BATCHES, source
        ),
        num_batch_threads=_positive(params, "num_batch_threads", os.cpu_count() or 1, source),
        allowed_batch_sizes=tuple(int(size) for size in params.allowed_batch_sizes),
        pad_variable_length_inputs=params.pad_variable_length_inputs,
    )
    if params.batch_timeout_micros.value < 0:
        raise InvalidInput(f"{source}: batch_timeout_micros must not be negative")
    _check_allowed_sizes(options, source)
    return options


_TEXT_TOKEN = re.compile(
    r""""(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*'|\#[^\n]*|[{<}>]|([A-Za-z_]\w*)(?=\s*[:{<])"""
)


def _top_level_fields(text: str) -> set[str]:
    """Names of the fields set at the top level of a text proto (nested ones skipped)."""
    depth = 0
    names: set[str] = set()
    for match in _TEXT_TOKEN.finditer(text):
        token = match.group(0)
        if token in ("{", "<"):
            depth += 1
        elif token in ("}", ">"):
            depth -= 1
        elif match.group(1) and depth == 0:
            names.add(match.group(1))
    return names


def read_batching_parameters(path: str | Path | None) -> BatchOptions:
    """BatchOptions from ``--batching_parameters_file``, or TF Serving's defaults without one."""
    if not path:
        return BatchOptions()
    return parse_batching_parameters(read_file(path, "batching parameters file"), str(path))


def _positive(params: Message, name: str, default: int, source: str) -> int:
    if not params.HasField(name):
        return default
    value = int(getattr(params, name).value)
    if value < 1:
        raise InvalidInput(f"{source}: {name} must be at least 1, not {value}")
    return value


def _check_allowed_sizes(options: BatchOptions, source: str) -> None:
    sizes = options.allowed_batch_sizes
    if not sizes:
        return
    if any(b <= a for a, b in zip(sizes, sizes[1:], strict=False)) or sizes[0] < 1:
        raise InvalidInput(f"{source}: allowed_batch_sizes must be increasing positive numbers")
    if sizes[-1] != options.max_batch_size:
        raise InvalidInput(
            f"{source}: the last of allowed_batch_sizes ({sizes[-1]}) must equal "
            f"max_batch_size ({options.max_batch_size})"
        )


# -- MonitoringConfig -------------------------------------------------------------------------


def read_monitoring_config(path: str | Path | None) -> str | None:
    """The path of the Prometheus page a ``--monitoring_config_file`` asks for, if enabled."""
    if not path:
        return None
    config = modelserver_pb2.MonitoringConfig()
    try:
        text_format.Parse(read_file(path, "monitoring config file"), config)
    except text_format.ParseError as exc:
        raise InvalidInput(f"{path}: not a valid MonitoringConfig: {exc}") from None
    prometheus = config.prometheus_config
    if not prometheus.enable:
        return None
    route = prometheus.path or PROMETHEUS_PATH
    if not route.startswith("/"):
        raise InvalidInput(f"{path}: prometheus_config.path must start with '/', not {route!r}")
    return route


def read_file(path: str | Path, what: str) -> str:
    """The text of a config file; InvalidInput naming it when it cannot be read."""
    try:
        return Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InvalidInput(f"{path}: the {what} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"{path}: cannot read the {what}: {exc}") from None
