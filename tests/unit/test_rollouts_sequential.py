"""The sequential quality test, in simulation: peeking keeps its error rate, and it has power."""

from __future__ import annotations

import numpy as np
import pytest

from mlcycle.rollouts.sequential import MIN_DECISIONS, quality_test

ALPHA = 0.05
MARGIN = 0.05
# Runs per scenario; the Monte-Carlo allowance is about two standard errors at ALPHA.
RUNS = 400
ALLOWANCE = 0.025
# Peeks: every STEP candidate decisions up to HORIZON; production gets twice as many
# (the canary answers the smaller share).
STEP, HORIZON = 50, 3000


def peek(accuracy_production: float, accuracy_candidate: float, seed: int) -> list[set[str]]:
    """The verdicts each simulated run gave at any peek."""
    rng = np.random.default_rng(seed)
    peeks = np.arange(STEP, HORIZON + 1, STEP)
    production = np.cumsum(rng.random((RUNS, 2 * HORIZON)) < accuracy_production, axis=1)
    candidate = np.cumsum(rng.random((RUNS, HORIZON)) < accuracy_candidate, axis=1)
    seen: list[set[str]] = []
    for run in range(RUNS):
        verdicts = set()
        for n in peeks:
            test = quality_test(
                (2 * n, int(production[run, 2 * n - 1])),
                (n, int(candidate[run, n - 1])),
                margin=MARGIN,
                alpha=ALPHA,
            )
            verdicts.add(test.verdict)
        seen.append(verdicts)
    return seen


def share(seen: list[set[str]], verdict: str) -> float:
    return sum(verdict in verdicts for verdicts in seen) / len(seen)


def test_peeking_at_the_margin_rarely_declares_not_worse() -> None:
    # The candidate is worse by exactly the margin: "not_worse" is the error.
    seen = peek(0.85, 0.85 - MARGIN, seed=11)
    assert share(seen, "not_worse") <= ALPHA + ALLOWANCE
    # Near the boundary of the accuracies too.
    seen = peek(0.97, 0.97 - MARGIN, seed=12)
    assert share(seen, "not_worse") <= ALPHA + ALLOWANCE


def test_an_equal_candidate_is_declared_not_worse_and_never_worse() -> None:
    seen = peek(0.85, 0.85, seed=13)
    assert share(seen, "not_worse") >= 0.9
    assert share(seen, "worse") <= ALPHA


def test_a_clearly_worse_candidate_is_declared_worse() -> None:
    seen = peek(0.85, 0.7, seed=14)
    assert share(seen, "worse") >= 0.95
    assert share(seen, "not_worse") <= ALPHA


def test_the_sequence_is_around_the_difference_and_narrows() -> None:
    small = quality_test((200, 170), (100, 80), margin=0.02, alpha=ALPHA)
    large = quality_test((20_000, 17_000), (10_000, 8_000), margin=0.02, alpha=ALPHA)
    for test in (small, large):
        assert test.difference == pytest.approx(0.8 - 0.85)
        assert test.lower < test.difference < test.upper
    assert large.upper - large.lower < (small.upper - small.lower) / 5
    assert large.verdict == "worse" and small.verdict == "undecided"
    assert quality_test((10_000, 10_000), (10_000, 10_000), margin=0.02, alpha=ALPHA).verdict == (
        "not_worse"
    )


def test_no_decisions_or_too_few_decide_nothing() -> None:
    empty = quality_test((0, 0), (50, 40), margin=0.02, alpha=ALPHA)
    assert (empty.difference, empty.lower, empty.upper, empty.verdict) == (
        None, None, None, "undecided",
    )  # fmt: skip
    few = quality_test((MIN_DECISIONS - 1, 0), (MIN_DECISIONS - 1, MIN_DECISIONS - 1),
                       margin=0.02, alpha=ALPHA)  # fmt: skip
    assert few.verdict == "undecided" and few.lower is not None
    assert (few.margin, few.alpha) == (0.02, ALPHA)
    with pytest.raises(ValueError, match="candidate"):
        quality_test((10, 5), (10, 11), margin=0.02, alpha=ALPHA)
