"""``GET /v1/monitoring``, ``GET /v1/monitoring/history`` and ``GET /v1/positive-rate``: what
the live monitor says.

Both read the shared aggregate, so every replica answers the same: the signals'
states across every process that serves the version, and the windows judged.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated

from fastapi import FastAPI, Query
from pydantic import BeforeValidator
from redis.exceptions import RedisError
from starlette.concurrency import run_in_threadpool

from mlcycle.common.errors import NotFound, Unavailable
from mlcycle.common.http import OrjsonResponse, error_responses
from mlcycle.contracts.monitoring import (
    MonitoringHistory,
    MonitoringState,
    VersionMonitoring,
)
from mlcycle.inference.access import CallerGate
from mlcycle.inference.live_rate import LIVE_RATE_DESCRIPTION, LivePositiveRate
from mlcycle.inference.monitor import LiveMonitor
from mlcycle.inference.monitor_gauges import QualitySource
from mlcycle.inference.monitor_watch import unavailable
from mlcycle.inference.versions import ModelVersion, VersionTracker

# Results answered at most per history request.
MAX_HISTORY = 10_000
_NUMBER = re.compile(r"\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*")
DISABLED = "the live monitor is off in this service (MLCYCLE_MONITOR_ENABLED=false)"

MONITORING_DESCRIPTION = (
    "Per model version kept loaded (or the one `version` names), each drift signal's state "
    "across every replica and the stream scorer: `ok`, `alarm`, `insufficient` (no window "
    "of the minimum size closed yet) or `unavailable` (with the reason, e.g. a model "
    "exported without a reference profile), with its last window's statistic and threshold; "
    "and the version's quality windows from moderators' decisions."
)
HISTORY_DESCRIPTION = (
    "The evaluated windows of one model version (default: the serving one), one result per "
    "signal and window, oldest first: those closed after `since` (exclusive; ISO 8601, UTC "
    "when no offset is given), of `signal` when given, at most `limit`. To page, pass the "
    "last result's `closed_at` as the next `since`."
)


def _not_a_number(value: object) -> object:
    # Pydantic would read a bare number as Unix time; the parameter is an ISO 8601 time.
    if isinstance(value, str) and _NUMBER.fullmatch(value):
        raise ValueError("an ISO 8601 time is expected, not a number")
    return value


IsoTime = Annotated[datetime, BeforeValidator(_not_a_number)]


def add_monitoring_routes(
    app: FastAPI,
    tracker: VersionTracker,
    monitor: LiveMonitor | None,
    gate: CallerGate,
    *,
    quality_of: QualitySource | None = None,
) -> None:
    """The monitor's two read routes on ``app`` (``monitor`` None: monitoring is off)."""

    def version_state(model: ModelVersion) -> VersionMonitoring:
        if monitor is None:
            signals = unavailable(model.name, model.version, DISABLED)
        else:
            signals = monitor.signals(model)
        quality = quality_of(model.name, model.version) if quality_of is not None else []
        return VersionMonitoring(model_version=model.version, signals=signals, quality=quality)

    def state(version: int | None) -> MonitoringState:
        if version is None:
            models = tracker.loaded_versions()
        else:
            model = tracker.loaded(version)
            if model is None:
                raise NotFound(
                    f"model {tracker.name} version {version} is not loaded here",
                    details={"model": tracker.name, "version": version},
                )
            models = [model]
        try:
            versions = [version_state(model) for model in models]
        except RedisError as exc:
            raise unreadable(exc) from None
        return MonitoringState(model=tracker.name, versions=versions)

    @app.get(
        "/v1/monitoring",
        response_model=MonitoringState,
        responses=error_responses(401, 403, 404, 422, 429, 503),
        dependencies=gate.dependencies(),
        tags=["monitoring"],
        summary="Each model version's drift signals and quality, across every replica",
        description=MONITORING_DESCRIPTION,
    )
    async def monitoring(
        version: int | None = Query(None, ge=1, description="default: every loaded version"),
    ) -> OrjsonResponse:
        found = await run_in_threadpool(state, version)
        return OrjsonResponse(found.model_dump(mode="json"))

    def history(
        version: int | None, since: datetime | None, signal: str | None, limit: int
    ) -> MonitoringHistory:
        if version is None:
            version = tracker.current().version
        if monitor is None:
            return MonitoringHistory(items=[])
        if since is not None and since.tzinfo is None:
            since = since.replace(tzinfo=UTC)
        try:
            items = monitor.history(tracker.name, version, since=since, signal=signal, limit=limit)
        except RedisError as exc:
            raise unreadable(exc) from None
        return MonitoringHistory(items=items)

    @app.get(
        "/v1/monitoring/history",
        response_model=MonitoringHistory,
        responses=error_responses(401, 403, 422, 429, 503),
        dependencies=gate.dependencies(),
        tags=["monitoring"],
        summary="The windows the monitor judged, oldest first",
        description=HISTORY_DESCRIPTION,
    )
    async def monitoring_history(
        since: IsoTime | None = Query(None, description="only windows closed after this"),
        version: int | None = Query(None, ge=1, description="default: the serving version"),
        signal: str | None = Query(
            None,
            min_length=1,
            max_length=128,
            pattern=r"^[^\x00-\x1f]+$",
            description="e.g. score, ngrams, metadata:<field>",
        ),
        limit: int = Query(1000, ge=1, le=MAX_HISTORY, description="results at most"),
    ) -> OrjsonResponse:
        found = await run_in_threadpool(history, version, since, signal, limit)
        return OrjsonResponse(found.model_dump(mode="json"))


def unreadable(exc: RedisError) -> Unavailable:
    """The 503 of a monitor whose shared state cannot be read now."""
    return Unavailable(f"the monitor's shared state cannot be read now: {exc}")


def add_live_rate_route(app: FastAPI, tracker: VersionTracker, gate: CallerGate) -> None:
    """``GET /v1/positive-rate``: the EM estimate of a version's live positive rate."""

    @app.get(
        "/v1/positive-rate",
        response_model=LivePositiveRate,
        responses=error_responses(401, 403, 404, 422, 429, 503),
        dependencies=gate.dependencies(),
        tags=["monitoring"],
        summary="The positive rate of the recent traffic, estimated from its unlabeled scores",
        description=LIVE_RATE_DESCRIPTION,
    )
    async def positive_rate(
        version: int | None = Query(None, ge=1, description="default: the serving version"),
    ) -> OrjsonResponse:
        model = tracker.current() if version is None else tracker.loaded(version)
        if model is None:
            raise NotFound(
                f"model {tracker.name} version {version} is not loaded here",
                details={"model": tracker.name, "version": version},
            )
        live = model.live_window()
        # The EM over up to a window of scores takes milliseconds: off the event loop.
        found = await run_in_threadpool(live.report, model.name, model.version, model.threshold)
        return OrjsonResponse(found.model_dump())
