"""``mlcycle modelserver``'s command line: ``tensorflow_model_server``'s own flags.

A command line written for TF Serving works unchanged: the flags this server
implements behave as documented for ``tensorflow_model_server``, the others it
recognises are accepted with one warning each saying they are ignored, and a
flag TF Serving does not have is refused (exit code 2). Both ``--flag=value``
and ``--flag value`` work; booleans are ``--flag``, ``--flag=true`` or
``--flag=false``.

Defaults that differ from TF Serving's, because they come from mlcycle's
settings: ``--rest_api_port`` (8501, not 0), ``--model_name``
(``MLCYCLE_MODEL_NAME``), ``--file_system_poll_wait_seconds``
(``MLCYCLE_MODEL_SERVER_POLL_S``); and ``--grpc_max_threads`` (0: 4 worker
threads, more with batching; see :mod:`mlcycle.modelserver.server`).
``--host`` is mlcycle's own: the address to listen on.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NoReturn

from mlcycle.common.settings import ModelServerSettings

log = logging.getLogger(__name__)

# tensorflow_model_server flags accepted for compatibility but not implemented.
IGNORED_FLAGS = (
    "enable_per_model_batching_parameters",
    "enable_profiler",
    "enable_signature_method_name_check",
    "flush_filesystem_caches",
    "grpc_channel_arguments",
    "grpc_socket_path",
    "load_retry_interval_micros",
    "max_num_load_retries",
    "num_load_threads",
    "num_request_iterations_for_warmup",
    "num_tflite_interpreters_per_pool",
    "num_tflite_pools",
    "num_unload_threads",
    "per_process_gpu_memory_fraction",
    "platform_config_file",
    "prefer_tflite_model",
    "remove_unused_fields_from_bundle_metagraph",
    "rest_api_enable_cors_support",
    "rest_api_num_threads",
    "ssl_config_file",
    "tensorflow_session_config_file",
    "tensorflow_session_parallelism",
    "thread_pool_factory_config_file",
    "use_alts_credentials",
    "xla_cpu_compilation_enabled",
)
_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


@dataclass(frozen=True)
class ModelServerOptions:
    """What the model server runs with: its flags, parsed. Build one directly in code."""

    host: str = "127.0.0.1"
    # gRPC port; 0 picks a free one.
    port: int = 8500
    # REST port; 0 picks a free one and None serves no REST (--rest_api_port=0 means None).
    rest_api_port: int | None = 8501
    model_name: str = "toxicity"
    model_base_path: str | None = None
    model_config_file: str | None = None
    # None: TF Serving's default (0, read once) for an explicit --model_config_file.
    model_config_file_poll_wait_seconds: float | None = None
    file_system_poll_wait_seconds: float = 1.0
    enable_batching: bool = False
    batching_parameters_file: str | None = None
    rest_api_timeout_in_ms: int = 30_000
    monitoring_config_file: str | None = None
    enable_model_warmup: bool = True
    saved_model_tags: tuple[str, ...] = ("serve",)
    # gRPC worker threads; 0: the server's choice (ModelServer._grpc_workers).
    grpc_max_threads: int = 0
    # TensorFlow's thread pools (mlcycle.modelserver.threads); 0: TensorFlow's choice.
    tensorflow_intra_op_parallelism: int = 0
    tensorflow_inter_op_parallelism: int = 0
    show_version: bool = False
    # A new version label may point at a version not AVAILABLE yet (TF Serving's flag).
    allow_version_labels_for_unavailable_models: bool = False

    @classmethod
    def from_settings(
        cls, settings: ModelServerSettings, *, host: str, model_name: str, **overrides: object
    ) -> ModelServerOptions:
        """Options with mlcycle's defaults, then ``overrides``.

        The ports and poll period are the model server's section's; ``host`` is the
        interface every mlcycle server binds, ``model_name`` the name the trainer serves.
        """
        defaults: dict[str, object] = {
            "host": host,
            "port": settings.port,
            "rest_api_port": settings.rest_port,
            "model_name": model_name,
            "file_system_poll_wait_seconds": settings.poll_s,
        }
        return cls(**{**defaults, **overrides})  # type: ignore[arg-type]


def parse_bool(value: str) -> bool:
    """``true``/``false`` (also 1/0, yes/no, on/off), as TF Serving's boolean flags."""
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, not {value!r}")


def _non_negative(value: str) -> float:
    number = float(value)
    if number < 0:
        raise argparse.ArgumentTypeError(f"must not be negative, not {value}")
    return number


def _threads(value: str) -> int:
    number = int(value)
    if number < 0:
        raise argparse.ArgumentTypeError(f"must not be negative, not {value}")
    return number


def _port(value: str) -> int:
    port = int(value)
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"not a TCP port: {value}")
    return port


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        hint = ""
        if "unrecognized arguments" in message:
            hint = " (not a tensorflow_model_server flag; see --help)"
        self.exit(2, f"{self.prog}: error: {message}{hint}\n")


def build_parser(defaults: ModelServerOptions) -> argparse.ArgumentParser:
    """The argparse parser of ``mlcycle modelserver``, with ``defaults``' values."""
    p = _Parser(
        prog="mlcycle modelserver",
        description="A TensorFlow-Serving-compatible model server (gRPC and REST) for "
        "SavedModels laid out as <base_path>/<version>/.",
        allow_abbrev=False,
    )
    p.add_argument("--host", default=defaults.host, help="address to listen on (mlcycle's own)")
    p.add_argument("--port", type=_port, default=defaults.port, help="gRPC port (0: a free one)")
    p.add_argument(
        "--rest_api_port", type=_port, default=defaults.rest_api_port, help="REST port; 0: no REST"
    )
    p.add_argument("--model_name", default=defaults.model_name, help="name of the model")
    p.add_argument("--model_base_path", help="folder holding the <version>/ SavedModels")
    p.add_argument("--model_config_file", help="a ModelServerConfig text proto (many models)")
    p.add_argument(
        "--model_config_file_poll_wait_seconds",
        type=_non_negative,
        help="re-read --model_config_file this often; 0: never (the default)",
    )
    p.add_argument(
        "--file_system_poll_wait_seconds",
        type=_non_negative,
        default=defaults.file_system_poll_wait_seconds,
        help="look for new versions this often; 0: only at start",
    )
    _bool(p, "--enable_batching", False, "batch concurrent requests server-side")
    p.add_argument("--batching_parameters_file", help="a BatchingParameters text proto")
    p.add_argument(
        "--rest_api_timeout_in_ms", type=int, default=30_000, help="time limit of REST calls"
    )
    p.add_argument("--monitoring_config_file", help="a MonitoringConfig text proto")
    _bool(p, "--enable_model_warmup", True, "replay assets.extra/tf_serving_warmup_requests")
    p.add_argument("--saved_model_tags", default="serve", help="tags of the MetaGraphDef to load")
    p.add_argument(
        "--grpc_max_threads",
        type=_threads,
        default=0,
        help="gRPC worker threads; 0: 4, or more with --enable_batching",
    )
    p.add_argument(
        "--tensorflow_intra_op_parallelism",
        type=_threads,
        default=0,
        help="threads that parallelize one op; 0: TensorFlow's choice",
    )
    p.add_argument(
        "--tensorflow_inter_op_parallelism",
        type=_threads,
        default=0,
        help="threads that run independent ops at once; 0: TensorFlow's choice",
    )
    _bool(
        p,
        "--allow_version_labels_for_unavailable_models",
        False,
        "let a new version label point at a version that is not available yet",
    )
    _bool(p, "--version", False, "print the version and exit")
    for name in IGNORED_FLAGS:
        p.add_argument(
            f"--{name}", nargs="?", const="", default=argparse.SUPPRESS, help=argparse.SUPPRESS
        )
    return p


def _bool(parser: argparse.ArgumentParser, flag: str, default: bool, help_text: str) -> None:
    parser.add_argument(
        flag,
        nargs="?",
        const=True,
        default=default,
        type=parse_bool,
        metavar="true|false",
        help=help_text,
    )


def parse_flags(argv: Sequence[str], defaults: ModelServerOptions) -> ModelServerOptions:
    """Options from a command line over ``defaults``; exits 2 on a bad one, 0 after ``--help``.

    ``defaults`` gives the flags that default to mlcycle's settings (see the module doc).
    """
    args = build_parser(defaults).parse_args(list(argv))
    for name in IGNORED_FLAGS:
        if hasattr(args, name):
            log.warning("--%s is not implemented by this model server; it is ignored", name)
    tags = tuple(tag.strip() for tag in args.saved_model_tags.split(",") if tag.strip())
    return ModelServerOptions(
        host=args.host,
        port=args.port,
        rest_api_port=args.rest_api_port or None,  # 0 disables REST, as in TF Serving
        model_name=args.model_name,
        model_base_path=args.model_base_path,
        model_config_file=args.model_config_file,
        model_config_file_poll_wait_seconds=args.model_config_file_poll_wait_seconds,
        file_system_poll_wait_seconds=args.file_system_poll_wait_seconds,
        enable_batching=args.enable_batching,
        batching_parameters_file=args.batching_parameters_file,
        rest_api_timeout_in_ms=args.rest_api_timeout_in_ms,
        monitoring_config_file=args.monitoring_config_file,
        enable_model_warmup=args.enable_model_warmup,
        saved_model_tags=tags or ("serve",),
        grpc_max_threads=args.grpc_max_threads,
        tensorflow_intra_op_parallelism=args.tensorflow_intra_op_parallelism,
        tensorflow_inter_op_parallelism=args.tensorflow_inter_op_parallelism,
        show_version=args.version,
        allow_version_labels_for_unavailable_models=args.allow_version_labels_for_unavailable_models,
    )
