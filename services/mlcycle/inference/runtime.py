"""The inference service's parts wired from settings: model client, versions, cache, predictor.

This is the service's composition root: it alone reads the whole ``Settings``
and hands each part the section (or the few values of other sections) it uses.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from pathlib import Path

from mlcycle.common.errors import MlcycleError
from mlcycle.common.infra.redis import EmbeddedRedis
from mlcycle.common.redis_connection import connection_options
from mlcycle.common.settings import CacheSettings, Settings
from mlcycle.featurization.store import TransformStore
from mlcycle.inference.cache import NoCache, ScoreCache
from mlcycle.inference.client import GrpcModelClient, ModelClient
from mlcycle.inference.evidence import EvidenceBook, open_evidence_store
from mlcycle.inference.metadata import ServedModel
from mlcycle.inference.monitor import LiveMonitor
from mlcycle.inference.monitor_events import KafkaEvents
from mlcycle.inference.offpath import OFFPATH_BATCHES, OffPathScorer
from mlcycle.inference.predictor import Predictor
from mlcycle.inference.routing import RoutingWatcher
from mlcycle.inference.versions import VersionTracker
from mlcycle.monitoring.aggregate import Aggregate, LocalAggregate
from mlcycle.monitoring.redis_aggregate import RedisAggregate

log = logging.getLogger(__name__)


@dataclass
class InferenceRuntime:
    """Everything a predicting process holds; :meth:`close` releases it all."""

    client: ModelClient
    tracker: VersionTracker
    cache: ScoreCache | NoCache
    predictor: Predictor
    embedded_redis: EmbeddedRedis | None = None
    monitor: LiveMonitor | None = None
    evidence: EvidenceBook | None = None
    offpath: OffPathScorer | None = None

    @classmethod
    def open(
        cls,
        settings: Settings,
        *,
        client: ModelClient | None = None,
        start_embedded_redis: bool = False,
    ) -> InferenceRuntime:
        """Connect to the model server, start following its versions, open the cache.

        Without ``settings.cache.redis_url`` the cache is an embedded redis-server when
        ``start_embedded_redis`` (the API process), else there is none. Nothing here
        needs the model server to be up: predictions answer 503 until it is.
        """
        config = settings.inference
        client = client or GrpcModelClient.for_target(
            settings.modelserver.target, config, service_key=settings.edge.service_key
        )
        model = served_model(settings)
        transforms = TransformStore(model.artifacts_dir).transform
        routing = RoutingWatcher(model.models_dir, model.name, settings.rollouts.routing_refresh_s)
        tracker = VersionTracker(model, config, client, transforms, routing=routing).start()
        cache, embedded = open_cache(
            settings.cache,
            ttl_s=config.cache_ttl_s,
            redis_dir=settings.data_dir / "redis-inference",
            start_embedded=start_embedded_redis,
        )
        monitor = open_monitor(settings, model, tracker, embedded)
        predictor = Predictor(config, client=client, tracker=tracker, cache=cache, monitor=monitor)
        evidence, offpath = open_rollouts(settings, predictor, embedded)
        return cls(client, tracker, cache, predictor, embedded, monitor, evidence, offpath)

    def run_blocking_predictions_on(self, loop: asyncio.AbstractEventLoop) -> None:
        """Blocking Predict calls (lineage's) run on ``loop``, the API's event loop.

        ``grpc.aio`` wakes every loop it is bound to on every completion, so a private
        loop of the blocking client would slow each of the API's own calls.
        """
        if isinstance(self.client, GrpcModelClient):
            self.client.run_predictions_on(loop)

    async def stop_blocking_predictions(self) -> None:
        """Undo :meth:`run_blocking_predictions_on`, on that loop, before it stops."""
        if isinstance(self.client, GrpcModelClient):
            await self.client.stop_predictions_on_loop()

    def ready_checks(self) -> dict[str, bool]:
        """Hard dependencies: the model server answers and serves a usable version."""
        model = self.tracker.refresh()
        return {"model_server": self.tracker.server_up, "model": model is not None}

    def degraded_checks(self) -> dict[str, bool]:
        """Soft dependencies: without Redis predictions go on, uncached."""
        return {"redis": self.cache.ping()}

    def close(self) -> None:
        """Score the off-path work queued and share the rollout evidence, stop the monitor
        (its last records shared), stop following versions, close the connections, stop an
        embedded Redis."""
        if self.offpath is not None:
            self.offpath.stop()
        if self.evidence is not None:
            self.evidence.stop()
        if self.monitor is not None:
            self.monitor.stop()
        self.tracker.stop()
        self.client.close()
        self.cache.close()
        if self.embedded_redis is not None:
            self.embedded_redis.stop()


def served_model(settings: Settings) -> ServedModel:
    """The trainer's model name and models volume, and the featurizer's artifact store."""
    return ServedModel(
        settings.trainer.model_name, settings.trainer.models_dir, settings.featurizer.artifacts_dir
    )


def open_rollouts(
    settings: Settings, predictor: Predictor, embedded: EmbeddedRedis | None
) -> tuple[EvidenceBook, OffPathScorer]:
    """The process's rollout evidence (flushed to the cache's Redis when there is one) and
    off-path scorer, both started and handed to ``predictor``."""
    url = settings.cache.redis_url or (embedded.url if embedded is not None else "")
    config = settings.rollouts
    evidence = EvidenceBook(open_evidence_store(settings, url), config.evidence_flush_s).start()
    offpath = OffPathScorer(
        predictor.offpath_scores,
        evidence,
        capacity=config.offpath_queue_records,
        batch_rows=OFFPATH_BATCHES * settings.inference.predict_batch_size,
        monitor=predictor.monitor,
        on_failure=predictor.tracker.refresh_soon,
    ).start()
    predictor.evidence = evidence
    predictor.offpath = offpath
    return evidence, offpath


def open_monitor(
    settings: Settings,
    model: ServedModel,
    tracker: VersionTracker,
    embedded: EmbeddedRedis | None,
) -> LiveMonitor | None:
    """The process's live monitor (started), over the cache's Redis when there is one.

    Without Redis the windows are this process's alone: fine for a single process,
    but replicas and the stream scorer would each judge their own share.
    """
    if not settings.monitoring.enabled:
        return None
    aggregate: Aggregate
    url = settings.cache.redis_url or (embedded.url if embedded is not None else "")
    if url:
        aggregate = RedisAggregate(url, **connection_options(settings.cache))
    else:
        log.info("no MLCYCLE_REDIS_URL: the monitor's windows are this process's alone")
        aggregate = LocalAggregate()
    events = KafkaEvents(settings.kafka, settings.kafka.topics.monitoring)
    return LiveMonitor(
        settings.monitoring, model, aggregate, events, loaded=tracker.loaded_versions
    ).start()


def open_cache(
    cache: CacheSettings, *, ttl_s: int, redis_dir: Path, start_embedded: bool
) -> tuple[ScoreCache | NoCache, EmbeddedRedis | None]:
    """The score cache (and the embedded Redis started for it in ``redis_dir``, if any)."""
    connection = connection_options(cache)
    if cache.redis_url:
        return ScoreCache(cache.redis_url, ttl_s, connection=connection), None
    if not start_embedded:
        log.info("no MLCYCLE_REDIS_URL: scores are not cached")
        return NoCache(), None
    # MLCYCLE_REDIS_PASSWORD without a URL: the embedded server requires it too.
    embedded = EmbeddedRedis(port=0, data_dir=redis_dir, password=cache.redis_password)
    try:
        embedded.start()
    except MlcycleError as exc:
        log.warning("embedded Redis did not start; scores are not cached: %s", exc.message)
        return NoCache(), None
    return ScoreCache(embedded.url, ttl_s, connection=connection), embedded
