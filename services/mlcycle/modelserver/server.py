"""The model server as one object: manager, watcher, gRPC server and REST server together.

:class:`ModelServer` runs in-process: in tests and tools, and behind the
``mlcycle modelserver`` command (:mod:`mlcycle.modelserver.cli`).

Both ports listen at once, before any model is loaded, so liveness probes
answer while a large model loads; readiness follows the models: ``/readyz``
and the gRPC health status are SERVING once every configured model has an
AVAILABLE version.

Where the models come from, in order: ``--model_config_file``;
``--model_base_path`` (one model, ``--model_name``); otherwise
``<models_path>/models.config`` when the trainer's registry has written it
(re-read every ``MLCYCLE_MODEL_SERVER_POLL_S`` unless
``--model_config_file_poll_wait_seconds`` says otherwise); otherwise the model
``--model_name`` under ``<models_path>/<model_name>``.
"""

from __future__ import annotations

import logging
import socket
from pathlib import Path
from types import TracebackType

from fastapi import FastAPI

from mlcycle.common.errors import Unavailable
from mlcycle.common.grpc import GrpcServer
from mlcycle.common.http import BackgroundServer, key_ring
from mlcycle.common.keys import check_exposure
from mlcycle.common.settings import EdgeSettings, ModelServerSettings, load_settings
from mlcycle.modelserver import prediction, threads
from mlcycle.modelserver.batching import Batcher
from mlcycle.modelserver.config import (
    PROMETHEUS_PATH,
    ModelSettings,
    model_settings,
    read_batching_parameters,
    read_monitoring_config,
    single_model_config,
)
from mlcycle.modelserver.flags import ModelServerOptions
from mlcycle.modelserver.grpc_api import PREDICTION_SERVICE, build_grpc_server
from mlcycle.modelserver.manager import ModelManager
from mlcycle.modelserver.rest_api import build_app
from mlcycle.modelserver.watcher import ConfigFile, Watcher

log = logging.getLogger(__name__)

REGISTRY_CONFIG = "models.config"  # what the trainer's registry writes under models_path
# gRPC worker threads without batching (--grpc_max_threads overrides). Python runs one
# thread at a time: more workers only queue for the GIL, and the thread polling gRPC's
# completion queue, which every call needs twice, waits behind all of them. With 16 workers
# and 64 concurrent callers p99 was 4-6 times p50; with 4 it is under twice, at the same
# throughput, and the model calls of different requests still overlap.
GRPC_WORKERS = 4
# With batching every waiting request holds a worker, so more are allowed (see _grpc_workers).
BATCHING_GRPC_WORKERS = 16
MAX_GRPC_WORKERS = 256


def model_source(
    options: ModelServerOptions, *, models_dir: Path, poll_s: float
) -> tuple[list[ModelSettings], ConfigFile | None, float]:
    """The models to serve, the config file to watch (if any) and how often to re-read it.

    Without a config file or base path in ``options``, the models are the trainer's under
    ``models_dir``; a registry config there is re-read every ``poll_s`` seconds.
    """
    explicit_poll = options.model_config_file_poll_wait_seconds
    if options.model_config_file:
        config_file = ConfigFile(Path(options.model_config_file))
        models = model_settings(config_file.read(), str(config_file.path))
        return models, config_file, explicit_poll or 0.0
    if options.model_base_path:
        config = single_model_config(options.model_name, options.model_base_path)
        return model_settings(config, "--model_base_path"), None, 0.0
    registry = models_dir / REGISTRY_CONFIG
    if registry.is_file():
        config_file = ConfigFile(registry)
        models = model_settings(config_file.read(), str(registry))
        poll = explicit_poll if explicit_poll is not None else poll_s
        return models, config_file, poll
    base = models_dir / options.model_name
    return model_settings(single_model_config(options.model_name, base), str(base)), None, 0.0


class ModelServer:
    """gRPC and REST over one ModelManager; ``start()`` returns once both listen.

    ``settings`` is the model server's section (the registry config's poll period),
    ``models_dir`` where the trainer's models are (served when ``options`` name no
    models, and where a ReloadConfigRequest may point), ``edge`` the keys and the
    request limits. Each one not given is read from the
    environment.
    """

    def __init__(
        self,
        options: ModelServerOptions,
        settings: ModelServerSettings | None = None,
        *,
        models_dir: Path | None = None,
        edge: EdgeSettings | None = None,
    ) -> None:
        if settings is None or models_dir is None or edge is None:
            environment = load_settings()
            settings = settings or environment.modelserver
            models_dir = models_dir or environment.trainer.models_dir
            edge = edge or environment.edge
        self.options = options
        self.settings = settings
        self.edge = edge
        self.keys = key_ring(edge)  # one ring for the server's life: MLCYCLE_API_KEYS(_FILE)
        models, self.config_file, self._config_poll_s = model_source(
            options, models_dir=models_dir, poll_s=settings.poll_s
        )
        # Where a ReloadConfigRequest may point: the trainer's models and whatever the
        # operator started the server with, never a path a caller makes up.
        self.base_dirs = (models_dir, *(model.base_path for model in models))
        threads.configure(  # before anything loads: TensorFlow's pools are sized once
            intra_op=options.tensorflow_intra_op_parallelism,
            inter_op=options.tensorflow_inter_op_parallelism,
        )
        self.manager = ModelManager(
            models,
            tags=options.saved_model_tags,
            warmup=options.enable_model_warmup,
            allow_unavailable_labels=options.allow_version_labels_for_unavailable_models,
        )
        self.batcher: Batcher | None = None
        if options.enable_batching:
            self.batcher = Batcher(read_batching_parameters(options.batching_parameters_file))
            self.manager.add_unload_listener(self.batcher.release)
        self._prometheus_path = read_monitoring_config(options.monitoring_config_file)
        self._grpc: GrpcServer | None = None
        self._rest: BackgroundServer | None = None
        self._watcher: Watcher | None = None

    @property
    def grpc_port(self) -> int:
        """The bound gRPC port (after start)."""
        if self._grpc is None:
            raise RuntimeError("the model server is not started")
        return self._grpc.port

    @property
    def rest_port(self) -> int | None:
        """The bound REST port (after start), None when REST is off."""
        return self._rest.port if self._rest is not None else None

    def start(self, *, wait_for_models: bool = True, timeout_s: float = 120.0) -> ModelServer:
        """Listen on both ports and load the models in the background.

        With ``wait_for_models``, return only after the first load pass has looked at
        every model (loaded or failed), as TF Serving starts.
        """
        try:
            self._listen()
        except BaseException:
            self.stop()  # a port in use: release the other one before reporting it
            raise
        log.info(
            "model server listening",
            extra={
                "grpc_port": self.grpc_port,
                "rest_port": self.rest_port,
                "models": [m.name for m in self.manager.models],
            },
        )
        if wait_for_models:
            self.manager.synced.wait(timeout_s)
        return self

    def _listen(self) -> None:
        if self.options.rest_api_port is not None:  # before anything binds
            check_exposure(
                self.options.host, self.keys, auth=self.edge.auth, service="model server REST API"
            )
        run = self.batcher.run if self.batcher is not None else prediction.direct
        self._grpc = build_grpc_server(
            self.manager,
            host=self.options.host,
            port=self.options.port,
            run=run,
            config_file=self.config_file,
            base_dirs=self.base_dirs,
            edge=self.edge,
            max_workers=self._grpc_workers(),
        ).start()
        self._update_health()
        self.manager.add_sync_listener(self._update_health)
        if self.options.rest_api_port is not None:
            _check_bindable(self.options.host, self.options.rest_api_port)
            self._rest = BackgroundServer(
                self._rest_app(run), self.options.host, self.options.rest_api_port
            ).start()
        self._watcher = Watcher(
            self.manager,
            file_system_poll_s=self.options.file_system_poll_wait_seconds,
            config_file=self.config_file,
            config_poll_s=self._config_poll_s,
        ).start()

    def _grpc_workers(self) -> int:
        if self.options.grpc_max_threads > 0:
            return self.options.grpc_max_threads
        if self.batcher is None:
            return GRPC_WORKERS
        # With batching, each waiting request holds a worker: TF Serving's guide asks for
        # twice max_batch_size client threads to fill batches.
        return min(
            MAX_GRPC_WORKERS,
            max(BATCHING_GRPC_WORKERS, 2 * self.batcher.options.max_batch_size),
        )

    def _rest_app(self, run: prediction.Runner) -> FastAPI:
        paths = [PROMETHEUS_PATH]
        if self._prometheus_path:
            paths.append(self._prometheus_path)
        timeout_ms = self.options.rest_api_timeout_in_ms
        return build_app(
            self.manager,
            run=run,
            timeout_s=timeout_ms / 1000 if timeout_ms > 0 else 365 * 24 * 3600.0,
            max_body_bytes=self.edge.max_body_bytes,
            prometheus_paths=paths,
            keys=self.keys,
        )

    def _update_health(self) -> None:
        if self._grpc is None:
            return
        ready = self.manager.synced.is_set() and all(self.manager.readiness().values())
        self._grpc.set_serving("", ready)
        self._grpc.set_serving(PREDICTION_SERVICE, ready)

    def stop(self, grace_s: float = 5.0) -> None:
        """Stop serving: no new calls, running ones get ``grace_s``; then unload everything."""
        if self._watcher is not None:
            self._watcher.stop()
        if self._rest is not None:
            self._rest.stop(grace_s)
        if self._grpc is not None:
            self._grpc.stop(grace_s)
        if self.batcher is not None:
            self.batcher.close()
        self.manager.close()
        log.info("model server stopped")

    def __enter__(self) -> ModelServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _check_bindable(host: str, port: int) -> None:
    """Unavailable, naming the address, when the REST port cannot be listened on."""
    if port == 0:
        return
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            probe.bind((host, port))
        except OSError:
            raise Unavailable(
                f"cannot listen on {host}:{port} (REST API): the address is in use or not local",
                details={"address": f"{host}:{port}"},
            ) from None
