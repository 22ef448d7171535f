"""The store: one interface, an embedded SQLite backend and an Elasticsearch backend."""

from __future__ import annotations

from mlcycle.common.settings import StoreSettings
from mlcycle.common.store.base import (
    COLLECTIONS,
    COMMENTS,
    LABELS,
    MODELS,
    RUNS,
    VOTES,
    Document,
    Page,
    Store,
)

__all__ = [
    "COLLECTIONS",
    "COMMENTS",
    "LABELS",
    "MODELS",
    "RUNS",
    "VOTES",
    "Document",
    "Page",
    "Store",
    "open_store",
]


def open_store(settings: StoreSettings) -> Store:
    """The store the settings ask for: Elasticsearch when ``es_url`` is set, else SQLite."""
    if settings.es_url:
        from mlcycle.common.store.elastic import ElasticStore

        return ElasticStore.from_settings(settings)
    from mlcycle.common.store.sqlite import SqliteStore

    return SqliteStore(settings.sqlite_path)
