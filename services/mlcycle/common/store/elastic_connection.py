"""How the store reaches Elasticsearch: hosts, credentials and the CA, in one place.

Every Elasticsearch client mlcycle builds comes from :func:`elastic_client`, so an
API key, a user and password or a CA file set in the settings is used by all of them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, TypedDict

from elasticsearch import Elasticsearch

if TYPE_CHECKING:
    from mlcycle.common.settings import StoreSettings


class ClientOptions(TypedDict, total=False):
    """The ``Elasticsearch(...)`` arguments mlcycle sets."""

    hosts: list[str]
    request_timeout: float
    max_retries: int
    retry_on_timeout: bool
    api_key: str
    basic_auth: tuple[str, str]
    ca_certs: str


def client_options(store: StoreSettings) -> ClientOptions:
    """``Elasticsearch(...)`` keyword arguments for the settings' hosts, login and CA."""
    store.check_login()
    options = ClientOptions(
        hosts=[h.strip() for h in store.es_url.split(",") if h.strip()],
        request_timeout=30,
        max_retries=3,
        retry_on_timeout=True,
    )
    if store.es_api_key:
        options["api_key"] = store.es_api_key
    if store.es_username:
        options["basic_auth"] = (store.es_username, store.es_password)
    if store.es_ca_certs is not None:
        # With https:// and no CA file the client verifies against the system's CAs.
        options["ca_certs"] = str(store.es_ca_certs)
    return options


def elastic_client(store: StoreSettings) -> Elasticsearch:
    """The official client for the settings' cluster."""
    return Elasticsearch(**client_options(store))
