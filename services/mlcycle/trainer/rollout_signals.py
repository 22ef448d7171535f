"""What the rollout controller reads to decide: pooled evidence, drift, realized quality, liveness.

Everything here comes from places every inference replica writes to (the shared
Redis) or from the model server itself, never from one process's memory, so the
registry decides on the whole deployment's traffic. Each reader fails closed: a
source it cannot reach yields "no data", and no data is never evidence for
promotion (the policy holds on it).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

import grpc
import redis
from tensorflow_serving.apis import get_model_status_pb2, model_pb2, model_service_pb2_grpc

from mlcycle.common.errors import InvalidInput
from mlcycle.common.grpc import channel
from mlcycle.common.grpc_auth import bearer_metadata
from mlcycle.common.redis_connection import connection_options
from mlcycle.common.settings import RolloutSettings, Settings
from mlcycle.contracts.monitoring import QualityWindow
from mlcycle.contracts.rollouts import RolloutPolicy
from mlcycle.monitoring.feedback_redis import RedisFeedbackStore
from mlcycle.monitoring.redis_aggregate import RedisAggregate
from mlcycle.rollouts.evidence import EvidenceStore, RedisEvidenceStore, RolloutEvidence

log = logging.getLogger(__name__)

# TF Serving's ModelVersionStatus.State.AVAILABLE.
_AVAILABLE = 30
STATUS_DEADLINE_S = 2.0


class LiveSignals(Protocol):
    """The controller's view of live traffic (one implementation per deployment shape)."""

    def evidence(self, rollout: str) -> RolloutEvidence:
        """The evidence every replica pooled for ``rollout``."""
        ...

    def forget(self, rollout: str) -> None:
        """Drop ``rollout``'s evidence (it finished long ago)."""
        ...

    def drift_alarms(self, name: str, version: int) -> list[str]:
        """The monitor's signals in alarm on ``version``'s traffic."""
        ...

    def decisions(self, name: str, version: int, since: datetime) -> tuple[int, int]:
        """(decisions, correct) joined with ``version``'s answers since ``since``."""
        ...

    def model_server_up(self, name: str, versions: Sequence[int]) -> bool:
        """Whether the model server serves every one of ``versions`` right now."""
        ...


class NoSignals:
    """:class:`LiveSignals` that report nothing: no evidence, no drift alarm, no decision and no
    model server. A controller on them (no shared Redis, or an app built without live
    signals) holds every rollout on missing data, so it never promotes on what it cannot
    see."""

    def evidence(self, rollout: str) -> RolloutEvidence:
        return RolloutEvidence()

    def forget(self, rollout: str) -> None:
        return None

    def drift_alarms(self, name: str, version: int) -> list[str]:
        return []

    def decisions(self, name: str, version: int, since: datetime) -> tuple[int, int]:
        return 0, 0

    def model_server_up(self, name: str, versions: Sequence[int]) -> bool:
        return False

    def close(self) -> None:
        """Nothing to close."""


def correct_since(windows: Sequence[QualityWindow], since: datetime) -> tuple[int, int]:
    """(decisions, correct) over the quality windows still open at ``since``.

    A window holds ~500 decisions, so the first one may reach a little before the
    rollout began; both sides of a comparison are counted the same way.
    """
    decisions = correct = 0
    for window in windows:
        if window.closed_at is not None and window.closed_at < since:
            continue
        realized = window.realized
        if realized is None or realized.accuracy is None or not realized.comments:
            continue
        decisions += realized.comments
        correct += round(realized.accuracy * realized.comments)
    return decisions, correct


@dataclass
class ModelServerProbe:
    """Asks the model server (GetModelStatus) whether versions are AVAILABLE."""

    target: str
    service_key: str = ""

    def __post_init__(self) -> None:
        self._channel = channel(self.target)
        self._status = model_service_pb2_grpc.ModelServiceStub(self._channel).GetModelStatus
        self._metadata = bearer_metadata(self.service_key)

    def up(self, name: str, versions: Sequence[int]) -> bool:
        """True when every one of ``versions`` of ``name`` is AVAILABLE; False on any doubt."""
        request = get_model_status_pb2.GetModelStatusRequest(
            model_spec=model_pb2.ModelSpec(name=name)
        )
        try:
            try:
                response = self._status(
                    request, timeout=STATUS_DEADLINE_S, metadata=self._metadata
                )
            except grpc.RpcError as exc:
                if exc.code() != grpc.StatusCode.UNAVAILABLE:
                    raise
                response = self._status_now(request)
        except grpc.RpcError as exc:
            log.info("model server not answering: %s", exc.code().name)
            return False
        available = {
            s.version for s in response.model_version_status if s.state == _AVAILABLE
        }
        return all(v in available for v in versions)

    def _status_now(
        self, request: get_model_status_pb2.GetModelStatusRequest
    ) -> get_model_status_pb2.GetModelStatusResponse:
        """GetModelStatus over a new connection: after the server was away, the channel's
        reconnect backoff would otherwise hide its return for up to two minutes."""
        options = (("grpc.use_local_subchannel_pool", 1),)
        with channel(self.target, options=options) as fresh:
            stub = model_service_pb2_grpc.ModelServiceStub(fresh)
            return stub.GetModelStatus(request, timeout=STATUS_DEADLINE_S, metadata=self._metadata)

    def close(self) -> None:
        """Close the channel."""
        self._channel.close()


class SharedSignals:
    """:class:`LiveSignals` over the deployment's shared Redis and its model server."""

    def __init__(self, settings: Settings, redis_url: str) -> None:
        options = connection_options(settings.cache)
        self._redis = redis.Redis.from_url(redis_url, socket_timeout=2.0, **options)
        self._evidence: EvidenceStore = RedisEvidenceStore(self._redis)
        self._aggregate = RedisAggregate(redis_url, **options)
        self._feedback = RedisFeedbackStore.from_url(
            redis_url,
            connection=options,
            retention_s=settings.monitoring.feedback_retention_s,
            window_decisions=settings.monitoring.quality_window_decisions,
        )
        self._probe = ModelServerProbe(settings.modelserver.target, settings.edge.service_key)

    def evidence(self, rollout: str) -> RolloutEvidence:
        try:
            return self._evidence.read(rollout)
        except redis.RedisError as exc:
            log.warning("rollout evidence unreadable: %s", exc)
            return RolloutEvidence()

    def forget(self, rollout: str) -> None:
        try:
            self._evidence.forget(rollout)
        except redis.RedisError as exc:
            log.warning("rollout evidence not dropped: %s", exc)

    def drift_alarms(self, name: str, version: int) -> list[str]:
        try:
            states = self._aggregate.states(name, version)
        except redis.RedisError as exc:
            log.warning("monitor states unreadable: %s", exc)
            return []
        return sorted(signal for signal, state in states.items() if state.alarm)

    def decisions(self, name: str, version: int, since: datetime) -> tuple[int, int]:
        try:
            windows = self._feedback.quality_windows(name, version)
        except Exception as exc:  # the feedback store wraps Redis errors as Unavailable
            log.warning("quality windows unreadable: %s", exc)
            return 0, 0
        return correct_since(windows, since)

    def model_server_up(self, name: str, versions: Sequence[int]) -> bool:
        return self._probe.up(name, versions)

    def close(self) -> None:
        """Close every connection."""
        self._probe.close()
        self._aggregate.close()
        self._feedback.close()
        self._redis.close()


def open_signals(settings: Settings) -> SharedSignals | NoSignals:
    """The deployment's live signals, over the shared Redis; :class:`NoSignals` without one.

    Without a shared Redis the replicas cannot pool evidence, so every rollout holds
    (missing data is never evidence) and says so.
    """
    if not settings.cache.redis_url:
        log.warning("no MLCYCLE_REDIS_URL: rollouts will hold, having no pooled evidence")
        return NoSignals()
    return SharedSignals(settings, settings.cache.redis_url)


def default_policy(config: RolloutSettings) -> RolloutPolicy:
    """The policy of rollouts started without one: the policy file's, else the defaults."""
    if config.policy_file is None:
        return RolloutPolicy()
    try:
        return RolloutPolicy.model_validate_json(config.policy_file.read_bytes())
    except (OSError, ValueError) as exc:
        raise InvalidInput(
            f"rollout policy file {config.policy_file}: {exc}",
            details={"path": str(config.policy_file)},
        ) from None
