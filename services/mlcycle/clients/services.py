"""Every service's client, built from settings: where each listens, and the key to send."""

from __future__ import annotations

from dataclasses import dataclass, fields
from types import TracebackType

from mlcycle.clients.base import ServiceClient, dialable_host, service_url
from mlcycle.clients.collector import CollectorClient
from mlcycle.clients.featurizer import FeaturizerClient
from mlcycle.clients.inference import InferenceClient
from mlcycle.clients.labeler import LabelerClient
from mlcycle.clients.modelserver import ModelServerClient
from mlcycle.clients.trainer import TrainerClient
from mlcycle.common.keys import DIGEST_PREFIX
from mlcycle.common.settings import EdgeSettings, Settings


def url_for(host: str, port: int) -> str:
    """The URL a client dials for a service bound to ``host`` (the settings' host), ``port``."""
    return service_url(dialable_host(host), port)


def default_api_key(edge: EdgeSettings) -> str | None:
    """The secret tools send: ``MLCYCLE_SERVICE_KEY``, else the first key given in plain.

    The first entry of ``MLCYCLE_API_KEYS`` whose secret is written out (a bare legacy
    key, or ``NAME:SCOPES:SECRET`` without ``sha256:``) is the one the CLI, the demo and
    the load test use when no service key is set; none without keys.
    """
    if edge.service_key:
        return edge.service_key
    for entry in edge.api_keys:
        secret = plain_secret(entry)
        if secret is not None:
            return secret
    return None


def plain_secret(entry: str) -> str | None:
    """The secret of one ``MLCYCLE_API_KEYS`` entry, None when only its digest is given."""
    entry = entry.strip()
    if ":" not in entry:
        return entry or None  # a bare legacy key is its own secret
    parts = entry.split(":", 2)
    if len(parts) != 3 or not parts[2] or parts[2].startswith(DIGEST_PREFIX):
        return None
    return parts[2]


@dataclass(frozen=True)
class ServiceClients:
    """One client per service of a stack; close them together (or use ``with``)."""

    collector: CollectorClient
    labeler: LabelerClient
    featurizer: FeaturizerClient
    trainer: TrainerClient
    inference: InferenceClient
    modelserver: ModelServerClient

    def close(self) -> None:
        """Close every client's connections."""
        for field in fields(self):
            client: ServiceClient = getattr(self, field.name)
            client.close()

    def __enter__(self) -> ServiceClients:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def clients_for(settings: Settings, *, api_key: str | None = None) -> ServiceClients:
    """The clients of the services ``settings`` describe (host, ports, the key to send).

    ``api_key`` overrides the configured key. No connection opens before the first call.
    """
    key = api_key if api_key is not None else default_api_key(settings.edge)
    host = settings.host
    return ServiceClients(
        collector=CollectorClient(url_for(host, settings.collector.port), api_key=key),
        labeler=LabelerClient(url_for(host, settings.labeler.port), api_key=key),
        featurizer=FeaturizerClient(url_for(host, settings.featurizer.port), api_key=key),
        trainer=TrainerClient(url_for(host, settings.trainer.port), api_key=key),
        inference=InferenceClient(url_for(host, settings.inference.port), api_key=key),
        modelserver=ModelServerClient(
            url_for(host, settings.modelserver.rest_port),
            model_name=settings.trainer.model_name,
            api_key=key,
        ),
    )
