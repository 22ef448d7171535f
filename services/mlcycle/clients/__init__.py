"""One small HTTP client per mlcycle service, for the CLI, the local tooling, benchmarks and tests.

Each client holds a base URL, the API key (sent as ``Authorization: Bearer``)
and timeouts, answers with typed records where the API answers with one, and
raises :class:`~mlcycle.common.errors.MlcycleError` subclasses for every
failure. Build them from settings with :func:`clients_for`; wait on a service
with :func:`poll_until`. Services themselves never import this package: it is
for callers from outside.
"""

from mlcycle.clients.base import ServiceClient, ServiceUnreachable, auth_headers, service_url
from mlcycle.clients.collector import CollectorClient
from mlcycle.clients.featurizer import FeaturizerClient
from mlcycle.clients.inference import InferenceClient
from mlcycle.clients.labeler import LabelerClient
from mlcycle.clients.modelserver import ModelServerClient
from mlcycle.clients.polling import DeadlinePassed, poll_until
from mlcycle.clients.services import ServiceClients, clients_for, default_api_key, url_for
from mlcycle.clients.trainer import TrainerClient

__all__ = [
    "CollectorClient",
    "DeadlinePassed",
    "FeaturizerClient",
    "InferenceClient",
    "LabelerClient",
    "ModelServerClient",
    "ServiceClient",
    "ServiceClients",
    "ServiceUnreachable",
    "TrainerClient",
    "auth_headers",
    "clients_for",
    "default_api_key",
    "poll_until",
    "service_url",
    "url_for",
]
