"""The blessing decision: may a candidate replace the production model? Figures in, verdict out.

A candidate is blessed when the model server served it and answered like
training did (infra-validation), and when its dev metric beats production's
on the same dev items by more than the margin — strictly, so a tie at the
margin is not enough. A job may give a negative margin, a tolerance: a retrained
candidate within it of production goes on to a rollout, which judges it live. With
no production model there is nothing to beat.
A candidate that passes the behavioural suite less often than production on
any capability, by more than the job's behaviour margin, is refused whatever
its dev metric: held-out figures on one corpus do not show that loss.
This module only decides; measuring (the model server check, re-scoring
production) and acting on the verdict (registry, serving) are the job's stages.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mlcycle.evaluation.behaviour import Regression


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
class BehaviourCheck:
    """The candidate's behavioural pass rates held against production's, or why they were not.

    ``regressions`` is empty when nothing was lost beyond the margin, and when
    the comparison was skipped (``compared`` says why).
    """

    margin: float
    pass_rate: float
    compared: str
    regressions: tuple[Regression, ...] = ()
    production_pass_rate: float | None = None

    def as_fact(self) -> dict[str, object]:
        """What the blessing records of the check."""
        fact: dict[str, object] = {
            "margin": self.margin,
            "pass_rate": round(self.pass_rate, 4),
            "compared": self.compared,
            "regressions": {
                r.capability: {"production": r.production, "candidate": r.candidate}
                for r in self.regressions
            },
        }
        if self.production_pass_rate is not None:
            fact["production_pass_rate"] = round(self.production_pass_rate, 4)
        return fact

    def describe(self) -> str:
        """One clause for the blessing's reason."""
        if self.regressions:
            lost = ", ".join(r.describe() for r in self.regressions)
            return (
                f"behavioural suite: loses more than {self.margin:g} against production on "
                f"{lost} ({self.compared})"
            )
        return f"behavioural suite {self.pass_rate:.1%} passed; {self.compared}"


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
    behaviour: BehaviourCheck | None = None

    def as_dict(self) -> dict[str, object]:
        """The facts as recorded: the production ones only when there was a production model."""
        facts: dict[str, object] = {
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
        if self.behaviour is not None:
            facts["behaviour"] = self.behaviour.as_fact()
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
    behaviour: BehaviourCheck | None = None,
) -> BlessingDecision:
    """Judge a candidate whose dev ``metric`` is ``candidate``.

    ``behaviour`` is the behavioural suite's check, None when no suite was run.
    Raises :class:`MetricMissing` when ``candidate`` is None: a model cannot be
    judged on a figure it does not have.
    """
    if candidate is None:
        raise MetricMissing(f"the candidate has no dev {metric} to be judged on")
    facts = BlessingFacts(
        metric=metric,
        candidate=candidate,
        margin=margin,
        infra_validation=infra.message,
        behaviour=behaviour,
    )
    if not infra.passed:
        return BlessingDecision(False, f"infra-validation failed: {infra.message}", facts)
    suffix = f"; {behaviour.describe()}" if behaviour is not None else ""
    if production is None:
        reason = f"no production model to beat; dev {metric} {candidate:.4f}{suffix}"
        return BlessingDecision(True, reason, facts)
    facts = BlessingFacts(
        metric=metric,
        candidate=candidate,
        margin=margin,
        infra_validation=infra.message,
        compared_to=production.version,
        production=production.value,
        measured=production.measured,
        behaviour=behaviour,
    )
    if behaviour is not None and behaviour.regressions:
        return BlessingDecision(False, behaviour.describe(), facts)
    blessed = candidate > production.value + margin
    theirs = f"production v{production.version}'s {production.value:.4f}"
    if margin >= 0:
        verdict = "beats" if blessed else "does not beat"
        comparison = f"{verdict} {theirs} by more than {margin:g}"
    elif blessed:  # a tolerance: the candidate's rollout judges it on live traffic
        comparison = f"is within {-margin:g} of {theirs}"
    else:
        comparison = f"is more than {-margin:g} below {theirs}"
    reason = f"dev {metric} {candidate:.4f} {comparison} ({production.measured}){suffix}"
    return BlessingDecision(blessed, reason, facts)


def recorded_metric(metrics: Mapping[str, Any], metric: str) -> float:
    """The dev ``metric`` a model version recorded on its own dev split; 0.0 when it has none.

    The fallback when production cannot be re-scored on the candidate's items:
    a production model without the figure is held to nothing.
    """
    return float((metrics.get("dev") or {}).get(metric) or 0.0)
