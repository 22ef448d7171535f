"""The settings of the production loop: drift windows, their false-alarm budget, feedback.

Its own module beside :mod:`.sections`, which lists it among the sections.
"""

from __future__ import annotations

from pydantic import Field

from mlcycle.common.settings.base import Section


class MonitoringSettings(Section):
    """The live model's watch: drift windows, their false-alarm budget, moderators' feedback."""

    enabled: bool = Field(True, validation_alias="monitor_enabled")
    # A window closes after this many records, or this many seconds once it holds at least
    # min_window_records; below that minimum nothing is claimed and the window stays open.
    window_records: int = Field(1000, ge=10, validation_alias="monitor_window_records")
    window_s: float = Field(300.0, gt=0, validation_alias="monitor_window_s")
    min_window_records: int = Field(200, ge=10, validation_alias="monitor_min_window_records")
    # Expected records between two false alarms of one signal when nothing drifted.
    false_alarm_budget_records: int = Field(
        100_000, ge=1000, validation_alias="monitor_false_alarm_budget_records"
    )
    # Each process adds its tallies to the shared aggregate this often.
    flush_s: float = Field(1.0, gt=0, validation_alias="monitor_flush_s")
    # Records waiting for the monitor's worker; beyond it records are counted and skipped,
    # so a burst never slows an answer.
    queue_records: int = Field(20_000, ge=100, validation_alias="monitor_queue_records")
    # Evaluated windows kept per model version for GET /v1/monitoring/history.
    history_windows: int = Field(10_000, ge=10, validation_alias="monitor_history_windows")
    # How long a served score stays joinable with a moderator's decision (and a decision
    # waits for its score).
    feedback_retention_s: int = Field(
        30 * 24 * 3600, ge=60, validation_alias="feedback_retention_s"
    )
    # Joined decisions per realized-quality window.
    quality_window_decisions: int = Field(
        500, ge=10, validation_alias="feedback_quality_window"
    )
    # The inference-feedback process: the feedback topic's consumer group, and the port of its
    # health and metrics.
    feedback_group_id: str = Field("inference-feedback", validation_alias="feedback_group_id")
    feedback_metrics_port: int = Field(9406, validation_alias="feedback_metrics_port")
