"""A consumer service process: one ConsumerLoop, plus /healthz, /readyz and /metrics on a port.

The indexer and the label stream are both this shape; only the topics, the
group and the handler differ.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from fastapi import FastAPI

from mlcycle.common.http import (
    BackgroundServer,
    add_health_routes,
    install_edge,
)
from mlcycle.common.kafka.admin import ensure_topics
from mlcycle.common.kafka.consumer import ConsumerLoop, Handler
from mlcycle.common.kafka.producer import RecordProducer
from mlcycle.common.settings import Settings
from mlcycle.common.store import Store, open_store

log = logging.getLogger(__name__)

HandlerFactory = Callable[[Store, RecordProducer], Handler]


def health_app(service: str, store: Store, loop: ConsumerLoop | None = None) -> FastAPI:
    """``/healthz``, ``/readyz`` and ``/metrics`` of a consumer process.

    A consumer that cannot write its store (or keeps failing a batch) is
    degraded, not unready: it stays up, retries with backoff and loses nothing,
    and ``/readyz`` says why.
    """
    app = FastAPI(title=f"mlcycle {service}", docs_url=None, redoc_url=None)
    # Its routes take no body, so none is accepted.
    install_edge(app, service=service, max_body_bytes=0)
    add_health_routes(
        app,
        lambda: {},
        degraded_check=lambda: {"store": store.ping()},
        degraded_reasons=loop.degraded_reasons if loop is not None else None,
    )
    return app


def run_consumer_service(
    settings: Settings,
    *,
    service: str,
    topics: list[str],
    group_id: str,
    metrics_port: int,
    handler: HandlerFactory,
) -> None:
    """Consume ``topics`` until SIGINT/SIGTERM, then commit and close everything.

    A consumer process's entry: it takes the whole ``settings`` and hands the
    broker, the store and the health server their own parts of it.
    """
    ensure_topics(settings.kafka)
    store = open_store(settings.store)
    producer = RecordProducer(settings.kafka, client_id=service)
    loop = ConsumerLoop(
        settings.kafka,
        topics=topics,
        group_id=group_id,
        handler=handler(store, producer),
        service=service,
        producer=producer,
    )
    health = BackgroundServer(health_app(service, store, loop), settings.host, metrics_port)
    try:
        health.start()
        log.info("%s started", service, extra={"group": group_id, "topics": topics})
        loop.run(install_signal_handlers=True)
    finally:
        health.stop()
        producer.close()
        store.close()
