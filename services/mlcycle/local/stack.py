"""The local stack: embedded infrastructure plus every service that exists, each in its own process.

``mlcycle up`` runs it in the foreground; ``mlcycle demo``, the benchmarks and
the end-to-end tests start it the same way, so what they measure is what a
user runs. Services are separate processes (as in a cluster) so that one can be
killed and restarted without the others noticing more than a pause.

When the user configures API keys but no ``MLCYCLE_SERVICE_KEY``, the stack makes
one for the services' calls to each other (the inference service's to the model
server): a fresh secret at every start, added to every process's keys as
``mlcycle-stack:predict:<secret>`` and handed to each as its service key. It lives
only in the children's environment, so it is never written anywhere and dies with
the stack. Without keys nothing is added: the stack stays open on loopback.
"""

from __future__ import annotations

import logging
import os
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from mlcycle.clients import ServiceClient, poll_until, url_for
from mlcycle.clients.base import HEALTHZ, READYZ
from mlcycle.common.errors import InvalidInput, Unavailable
from mlcycle.common.settings import ENV_PREFIX, Settings, settings_to_env
from mlcycle.contracts.serving import ensure_serving_config, serving_config_path

log = logging.getLogger(__name__)

# The key the stack makes for its services' own calls, and what it may do: the inference
# service asks the model server for predictions and status (the only call between them).
STACK_KEY_NAME = "mlcycle-stack"
STACK_KEY_SCOPES = "predict"

# name -> the CLI words that run it in the foreground
SERVICE_COMMANDS: dict[str, tuple[str, ...]] = {
    "collector-api": ("collector", "api"),
    "collector-indexer": ("collector", "indexer"),
    "labeler-api": ("labeler", "api"),
    "labeler-stream": ("labeler", "stream"),
    "featurizer-api": ("featurizer", "api"),
    "featurizer-batch": ("featurizer", "batch"),
    "trainer-api": ("trainer", "api"),
    "modelserver": ("modelserver",),
    "inference-api": ("inference", "api"),
    "inference-stream": ("inference", "stream"),
    "inference-feedback": ("inference", "feedback"),
}


@dataclass(frozen=True)
class Probe:
    """Where a service says it is ready: ``GET <path>`` on ``port`` answers 200."""

    port: int
    path: str


@dataclass(frozen=True)
class ServiceSpec:
    """How to start one service process and how to tell it is ready."""

    name: str
    argv: tuple[str, ...]
    ready: Probe


class LocalStack:
    """Start the embedded broker and Redis (unless external ones are configured) and the services.

    ``start()`` returns the resolved settings: the ones the services were given,
    with the real broker and Redis addresses filled in. Use it as a context
    manager so every child is stopped, even on error.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        services: tuple[str, ...] = tuple(SERVICE_COMMANDS),
        log_dir: Path | None = None,
        with_redis: bool = True,
    ) -> None:
        self.requested = settings
        self.settings = settings
        self.service_names = services
        self.log_dir = log_dir
        self.with_redis = with_redis
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self._service_key_env = service_key_env(settings)
        self._broker = None
        self._redis = None
        self._log_files: list[object] = []

    # -- lifecycle -------------------------------------------------------------------------

    def start(self, timeout_s: float = 60.0) -> Settings:
        """Bring everything up and wait until each service answers its readiness check."""
        self.settings.data_dir.mkdir(parents=True, exist_ok=True)
        self.settings = self._start_infrastructure(self.settings)
        from mlcycle.common.kafka.admin import ensure_topics

        ensure_topics(self.settings.kafka)
        ensure_serving_config(self.settings.trainer.models_dir)
        for name in self.service_names:
            self.start_service(name)
        for name in self.service_names:
            self.wait_ready(name, timeout_s)
        return self.settings

    def stop(self, grace_s: float = 15.0) -> None:
        """SIGTERM every service, wait for a clean exit (kill after ``grace_s``), stop infra."""
        for proc in self.processes.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        for name, proc in self.processes.items():
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("service did not stop in time; killing it", extra={"service": name})
                proc.kill()
                proc.wait()
        self.processes.clear()
        if self._redis is not None:
            self._redis.stop()
            self._redis = None
        if self._broker is not None:
            self._broker.stop()
            self._broker = None
        for handle in self._log_files:
            handle.close()  # type: ignore[attr-defined]
        self._log_files.clear()

    def __enter__(self) -> LocalStack:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- services ----------------------------------------------------------------------------

    def spec(self, name: str) -> ServiceSpec:
        """The command line and readiness probe of service ``name``."""
        s = self.settings
        ready = {
            "collector-api": Probe(s.collector.port, READYZ),
            "collector-indexer": Probe(s.collector.indexer_metrics_port, HEALTHZ),
            "labeler-api": Probe(s.labeler.port, READYZ),
            "labeler-stream": Probe(s.labeler.stream_metrics_port, HEALTHZ),
            "featurizer-api": Probe(s.featurizer.port, READYZ),
            "featurizer-batch": Probe(s.featurizer.batch_metrics_port, HEALTHZ),
            "trainer-api": Probe(s.trainer.port, READYZ),
            # Alive is enough at start: both are ready only once a model version is served.
            "modelserver": Probe(s.modelserver.rest_port, HEALTHZ),
            "inference-api": Probe(s.inference.port, HEALTHZ),
            "inference-stream": Probe(s.inference.stream_metrics_port, HEALTHZ),
            "inference-feedback": Probe(s.monitoring.feedback_metrics_port, HEALTHZ),
        }
        argv = (sys.executable, "-m", "mlcycle", *SERVICE_COMMANDS[name])
        if name == "modelserver":
            argv += self._model_server_flags()
        return ServiceSpec(name=name, argv=argv, ready=ready[name])

    def _model_server_flags(self) -> tuple[str, ...]:
        """tensorflow_model_server's flags, as the container runs it: the registry's config."""
        s = self.settings
        return (
            f"--port={s.modelserver.port}",
            f"--rest_api_port={s.modelserver.rest_port}",
            f"--model_config_file={serving_config_path(s.trainer.models_dir)}",
            "--model_config_file_poll_wait_seconds=1",
            f"--file_system_poll_wait_seconds={s.modelserver.poll_s:g}",
            # As the containers run TF Serving: a new canary or shadow label may wait for its
            # version to load.
            "--allow_version_labels_for_unavailable_models=true",
            # mlcycle's model is small: one thread per call beats handing its ops between
            # pool threads, and leaves the other cores to the services beside it
            # (mlcycle.modelserver.threads has the measurements).
            "--tensorflow_intra_op_parallelism=1",
            "--tensorflow_inter_op_parallelism=1",
        )

    def start_service(self, name: str) -> subprocess.Popen[bytes]:
        """Start (or restart) one service process with the resolved settings."""
        spec = self.spec(name)
        env = {**os.environ, **settings_to_env(self.settings), **self._service_key_env}
        stdout = stderr = None
        if self.log_dir is not None:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            handle = open(self.log_dir / f"{name}.log", "ab")  # noqa: SIM115 - closed in stop()
            self._log_files.append(handle)
            stdout = stderr = handle
        proc = subprocess.Popen(spec.argv, env=env, stdout=stdout, stderr=stderr)
        self.processes[name] = proc
        return proc

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` to a service and wait for it to die (used by the no-loss check)."""
        proc = self.processes[name]
        proc.send_signal(sig)
        proc.wait()

    def wait_ready(self, name: str, timeout_s: float = 60.0) -> None:
        """Poll the service's readiness probe; fail fast if the process exits."""
        probe = self.spec(name).ready
        proc = self.processes[name]

        def ready() -> bool:
            if proc.poll() is not None:
                raise Unavailable(f"service {name} exited with code {proc.returncode} at start-up")
            return service.probe(probe.path)

        with ServiceClient(url_for(self.settings.host, probe.port)) as service:
            poll_until(ready, timeout=timeout_s, interval=0.2, what=f"service {name} was not ready")

    def failed_services(self) -> dict[str, int]:
        """Services whose process has exited, with their exit codes."""
        return {n: p.returncode for n, p in self.processes.items() if p.poll() is not None}

    # -- infrastructure ------------------------------------------------------------------------

    def _start_infrastructure(self, settings: Settings) -> Settings:
        updates: dict[str, object] = {}
        if settings.kafka.embedded:
            from mlcycle.common.infra.broker import EmbeddedBroker

            if settings.kafka.security_protocol != "PLAINTEXT":
                raise InvalidInput(
                    f"MLCYCLE_KAFKA_SECURITY_PROTOCOL={settings.kafka.security_protocol} needs "
                    "MLCYCLE_KAFKA_BOOTSTRAP: the embedded broker speaks PLAINTEXT only"
                )

            self._broker = EmbeddedBroker(
                settings.kafka.embedded_port, log_path=settings.data_dir / "logs" / "broker.log"
            )
            self._broker.start()
            updates["kafka_bootstrap"] = self._broker.bootstrap
        if self.with_redis and not settings.cache.redis_url:
            from mlcycle.common.infra.redis import EmbeddedRedis

            self._redis = EmbeddedRedis(
                port=0, data_dir=settings.data_dir / "redis", password=settings.cache.redis_password
            )
            self._redis.start()
            updates["redis_url"] = self._redis.url
        if not self.with_redis:
            updates["embedded_redis"] = False  # and no service starts one of its own
        return settings.replace(**updates)


def service_key_env(settings: Settings) -> dict[str, str]:
    """The variables that give every service of the stack a key for its own calls.

    Empty without keys (everything is open) or when the user set ``MLCYCLE_SERVICE_KEY``
    (theirs is used, and must be one of their keys); otherwise a fresh
    ``mlcycle-stack:predict`` key is added to the configured ones.
    """
    edge = settings.edge
    if edge.service_key or not (edge.api_keys or edge.api_keys_file):
        return {}
    secret = secrets.token_urlsafe(32)
    entries = (*edge.api_keys, f"{STACK_KEY_NAME}:{STACK_KEY_SCOPES}:{secret}")
    return {f"{ENV_PREFIX}API_KEYS": ",".join(entries), f"{ENV_PREFIX}SERVICE_KEY": secret}
