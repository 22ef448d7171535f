"""The sequential test of realized quality: is the candidate's accuracy not worse than production's?

The registry reads it at every tick, as moderators' decisions arrive, and stops
as soon as it is conclusive. A fixed-sample test read that way (peeking) would
reject far more often than its nominal level; an always-valid confidence
sequence does not: with probability at least ``1 - alpha`` it covers the true
difference at every sample size at once, so stopping whenever it is conclusive
keeps the error rate at ``alpha``.

The sequence is the asymptotic confidence sequence (AsympCS, two-sided, normal
mixture) of Waudby-Smith, Arbour, Sinha, Kennedy and Ramdas, "Time-uniform central
limit theory and asymptotic confidence sequences", Annals of Statistics (2023/2024),
Theorem 2.2, which rests on Robbins' normal-mixture boundary (Robbins 1970,
"Statistical methods related to the law of the iterated logarithm"). For an
estimate ``d`` whose variance is ``v``, in information time ``I = 1 / v``::

    d ± sqrt( (I ρ² + 1) / (I² ρ²) · 2 log( sqrt(I ρ² + 1) / alpha ) )

which is the paper's ``σ̂ · sqrt(2(tρ² + 1) / (t²ρ²) · log(sqrt(tρ² + 1) / α))`` with
``t / σ̂² = I``. Here ``d`` is the candidate's accuracy minus production's, taken
as two independent proportions, so
``v = p_c (1 - p_c) / n_c + p_p (1 - p_p) / n_p``. The samples are chosen by a hash
that does not look at outcomes, but they overlap: the feedback join keeps each
version's score of a comment, so in shadow both versions are judged on the same
comments and in canary production's comments (its answers and its scores beside
the canary's) include the canary's. Two versions of one model are right on mostly
the same comments, so the covariance this ignores is positive, the true variance
of ``d`` is below ``v``, and the sequence is conservative, never too narrow. The
proportions inside ``v``
are shrunk as ``(correct + 1) / (decisions + 2)`` so that a run of all-right or
all-wrong answers does not claim zero variance. The difference process is then
asymptotically a Brownian motion in information time whatever the two sample
sizes, which is what the boundary needs.

``ρ`` sets where the sequence is tightest: it is tuned (the paper's
``ρ² = (2 log(1/α) + log(1 + 2 log(1/α))) / I*``) for the information of
:data:`PLANNED_DECISIONS` decisions per version at :data:`PLANNED_ACCURACY`; it
stays valid, only a little wider, everywhere else. Being asymptotic, no verdict
is given before :data:`MIN_DECISIONS` decisions per version.

Verdict: ``worse`` when the whole sequence is below ``-margin`` (upper < -margin),
``not_worse`` when it is above (lower > -margin), else ``undecided``.

No well-kept Python package offers this for Python 3.11 wheels: ``confseq`` ships
no wheels, ``savvi`` pulls in cvxpy and matplotlib, so the few lines are here.
"""

from __future__ import annotations

import math

from mlcycle.contracts.rollouts import QualityTest, Verdict

PLANNED_DECISIONS = 2000
PLANNED_ACCURACY = 0.85
MIN_DECISIONS = 30


def mixture_rho2(alpha: float, planned_information: float) -> float:
    """The mixture's ``ρ²`` that makes the sequence tightest at ``planned_information``."""
    log_term = 2.0 * math.log(1.0 / alpha)
    return (log_term + math.log(1.0 + log_term)) / planned_information


def planned_information() -> float:
    """``1 / v`` of the difference with PLANNED_DECISIONS per version at PLANNED_ACCURACY."""
    p = PLANNED_ACCURACY
    return PLANNED_DECISIONS / (2.0 * p * (1.0 - p))


def half_width(information: float, alpha: float) -> float:
    """The confidence sequence's half-width at ``information`` (``1 / variance``)."""
    rho2 = mixture_rho2(alpha, planned_information())
    grown = information * rho2 + 1.0
    return math.sqrt(grown / (information**2 * rho2) * 2.0 * math.log(math.sqrt(grown) / alpha))


def _counts(name: str, counts: tuple[int, int]) -> tuple[int, int]:
    decisions, correct = (int(c) for c in counts)
    if decisions < 0 or not 0 <= correct <= decisions:
        raise ValueError(f"{name}: need 0 <= correct <= decisions, got {counts}")
    return decisions, correct


def _shrunk_variance(decisions: int, correct: int) -> float:
    p = (correct + 1.0) / (decisions + 2.0)
    return p * (1.0 - p) / decisions


def quality_test(
    production: tuple[int, int], candidate: tuple[int, int], *, margin: float, alpha: float
) -> QualityTest:
    """The test on ``(decisions, correct)`` of each version; see the module for how."""
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), not {alpha}")
    n_p, x_p = _counts("production", production)
    n_c, x_c = _counts("candidate", candidate)
    if not n_p or not n_c:
        return QualityTest(margin=margin, alpha=alpha)
    difference = x_c / n_c - x_p / n_p
    variance = _shrunk_variance(n_p, x_p) + _shrunk_variance(n_c, x_c)
    width = half_width(1.0 / variance, alpha)
    lower, upper = difference - width, difference + width
    verdict: Verdict = "undecided"
    if min(n_p, n_c) >= MIN_DECISIONS:
        if upper < -margin:
            verdict = "worse"
        elif lower > -margin:
            verdict = "not_worse"
    return QualityTest(
        difference=difference, lower=lower, upper=upper, margin=margin, alpha=alpha,
        verdict=verdict,
    )  # fmt: skip
