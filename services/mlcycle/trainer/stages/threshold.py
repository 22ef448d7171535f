"""The ``threshold`` stage: calibrate the winner on dev, move it to the traffic's prior, pick
the served threshold (:mod:`mlcycle.trainer.thresholds`)."""

from __future__ import annotations

import dataclasses

from mlcycle.trainer.data import TrainingData
from mlcycle.trainer.search import SearchOutcome
from mlcycle.trainer.stages.context import JobContext
from mlcycle.trainer.thresholds import choose_threshold


def threshold(ctx: JobContext, outcome: SearchOutcome, data: TrainingData) -> SearchOutcome:
    """The winner with its scores corrected for the job's threshold policy."""
    ctx.recorder.stage("threshold")
    chosen = choose_threshold(outcome.best, data, ctx.config.threshold_policy)
    return dataclasses.replace(outcome, best=chosen)
