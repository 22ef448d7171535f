"""The settings of rollouts (shadow, canary, automatic decisions) and of retraining.

Its own module beside :mod:`.sections`, which lists it among the sections.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from mlcycle.common.settings.base import Section


class RolloutSettings(Section):
    """How rollouts are routed, observed and decided."""

    # The registry looks at every running rollout's evidence this often and decides.
    tick_s: float = Field(2.0, gt=0, validation_alias="rollout_tick_s")
    # A JSON RolloutPolicy used when a rollout is started without one (None: the defaults).
    policy_file: Path | None = Field(None, validation_alias="rollout_policy_file")
    # Each inference process adds its evidence to the shared pool this often.
    evidence_flush_s: float = Field(1.0, gt=0, validation_alias="rollout_evidence_flush_s")
    # Instances waiting to be scored off the answer's path (by the shadow, or by production
    # beside a canary); beyond it they are counted and skipped, so an answer never waits.
    offpath_queue_records: int = Field(
        10_000, ge=10, validation_alias="rollout_offpath_queue_records"
    )
    # The inference processes re-read the routing the registry publishes this often.
    routing_refresh_s: float = Field(1.0, gt=0, validation_alias="rollout_routing_refresh_s")

    # -- continuous training (the trainer enforces the policy; `mlcycle retrain` drives runs)
    # A JSON RetrainingPolicy (None: the defaults): triggers, cooldown, budget, rollout.
    retraining_policy_file: Path | None = None
    # How often `mlcycle retrain watch` checks the triggers (drift alarms, new votes).
    retraining_check_s: float = Field(60.0, gt=0)
    # How often the runner reads a running training job or rollout, and reports it alive.
    retraining_poll_s: float = Field(5.0, gt=0)
    # `mlcycle retrain watch` serves /healthz, /readyz (the trainer answers) and /metrics here.
    retraining_metrics_port: int = Field(9407, ge=1, le=65535)
