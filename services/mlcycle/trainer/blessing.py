"""The blessing decision: may a candidate replace the production model? Figures in, verdict out.

A candidate is blessed when the model server served it and answered like
training did (infra-validation), and when its dev metric beats production's
on the same dev items by more than the margin — strictly, so a tie at the
margin is not enough. With no production model there is nothing to beat.
This module only decides; measuring (the model server check, re-scoring
production) and acting on the verdict (registry, serving) are the job's stages.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


class MetricMissing(ValueError):
    """The candidate has no value of the metric it is judged on."""


@dataclass(frozen=True)
class InfraCheck:
    """What serving the candidate in a model server found."""

    passed: bool
    message: str


@dataclass(frozen=True)
class ProductionScore:
    """Production's metric on the candidate's dev items, and how it was obtained."""

    version: int
    value: float
    measured: str


@dataclass(frozen=True)
class BlessingFacts:
    """The figures a verdict rests on, kept in the registry and in ``metadata.json``."""

    metric: str
    candidate: float
    margin: float
    infra_validation: str
    compared_to: int | None = None
    production: float | None = None
    measured: str | None = None

    def as_dict(self) -> dict[str, str | float | int]:
        """The facts as recorded: the production ones only when there was a production model."""
        facts: dict[str, str | float | int] = {
            "metric": self.metric,
            "candidate": self.candidate,
            "margin": self.margin,
            "infra_validation": self.infra_validation,
        }
        if self.compared_to is not None:
            facts["compared_to"] = self.compared_to
        if self.production is not None:
            facts["production"] = self.production
        if self.measured is not None:
            facts["measured"] = self.measured
        return facts


@dataclass(frozen=True)
class BlessingDecision:
    """Blessed or not, the one-line reason, and the facts behind it."""

    blessed: bool
    reason: str
    facts: BlessingFacts


def decide(
    metric: str,
    candidate: float | None,
    margin: float,
    infra: InfraCheck,
    production: ProductionScore | None,
) -> BlessingDecision:
    """Judge a candidate whose dev ``metric`` is ``candidate``.

    Raises :class:`MetricMissing` when ``candidate`` is None: a model cannot be
    judged on a figure it does not have.
    """
    if candidate is None:
        raise MetricMissing(f"the candidate has no dev {metric} to be judged on")
    facts = BlessingFacts(
        metric=metric, candidate=candidate, margin=margin, infra_validation=infra.message
    )
    if not infra.passed:
        return BlessingDecision(False, f"infra-validation failed: {infra.message}", facts)
    if production is None:
        reason = f"no production model to beat; dev {metric} {candidate:.4f}"
        return BlessingDecision(True, reason, facts)
    facts = BlessingFacts(
        metric=metric,
        candidate=candidate,
        margin=margin,
        infra_validation=infra.message,
        compared_to=production.version,
        production=production.value,
        measured=production.measured,
    )
    blessed = candidate > production.value + margin
    verdict = "beats" if blessed else "does not beat"
    reason = (
        f"dev {metric} {candidate:.4f} {verdict} production v{production.version}'s "
        f"{production.value:.4f} by more than {margin:g} ({production.measured})"
    )
    return BlessingDecision(blessed, reason, facts)


def recorded_metric(metrics: Mapping[str, Any], metric: str) -> float:
    """The dev ``metric`` a model version recorded on its own dev split; 0.0 when it has none.

    The fallback when production cannot be re-scored on the candidate's items:
    a production model without the figure is held to nothing.
    """
    return float((metrics.get("dev") or {}).get(metric) or 0.0)
