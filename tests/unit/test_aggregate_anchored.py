"""Anchored Dawid-Skene and EM's stopping rule: what each buys, and where each falls short."""

from __future__ import annotations

import numpy as np
import pytest

from mlcycle.labeler.aggregate import LEARNING_STRATEGIES, aggregate
from mlcycle.labeler.votes import VoteMatrix
from tests.unit.test_aggregate import build, crowd, matrix


def accuracy(strategy: str, votes: VoteMatrix, truth: np.ndarray, scored=slice(None)) -> float:
    return float((aggregate(votes, strategy).labels[scored] == truth[scored]).mean())


def independent_crowd(seed: int) -> tuple[VoteMatrix, np.ndarray]:
    """label_speed's crowd, small: 15% positive, 85% careful, 10% noisy, 5% adversarial."""
    rng = np.random.default_rng(seed)
    n, n_workers = 3000, 150
    truth = (rng.random(n) < 0.15).astype(int)
    kind = rng.random(n_workers)
    skill = np.where(
        kind < 0.85,
        rng.uniform(0.7, 0.98, n_workers),
        np.where(kind < 0.95, rng.uniform(0.5, 0.7, n_workers), rng.uniform(0.2, 0.4, n_workers)),
    )
    items, workers, labels = crowd(rng, truth, skill, per_item=5)
    return build(items, workers, labels, 2, n, [f"w{w}" for w in range(n_workers)]), truth


def two_minded_crowd(seed: int) -> tuple[VoteMatrix, np.ndarray, np.ndarray]:
    """Six annotators, two of a mind each: three flag borderline items, three do not.

    Each item keeps 2 of its 6 votes; the truth is the majority of all six, and
    the scored items are those where the six do not tie. Dawid-Skene's
    conditional independence does not hold: the groups disagree systematically.
    """
    rng = np.random.default_rng(seed)
    n = 600
    kind = rng.choice(3, n, p=[0.8, 0.12, 0.08])  # clean, borderline, toxic
    sensitive = np.arange(6) < 3
    p_flag = np.select(
        [kind[:, None] == 2, kind[:, None] == 1],
        [np.full((n, 6), 0.95), np.where(sensitive, 0.9, 0.15)],
        0.03,
    )
    votes = (rng.random((n, 6)) < p_flag).astype(int)
    keep = (np.argsort(rng.random((n, 6)), axis=1) < 2).ravel()
    items, voters = np.repeat(np.arange(n), 6), np.tile(np.arange(6), n)
    kept = build(items[keep], voters[keep], votes.ravel()[keep], 2, n, [f"a{a}" for a in range(6)])
    flags = votes.sum(axis=1)
    return kept, (flags > 3).astype(int), flags != 3


def test_one_vote_is_one_em_step_from_the_majority() -> None:
    # With one vote, the majority's label is its shares: one step of either is the same.
    votes = matrix([("a", "w", 1)])
    anchored = aggregate(votes, "anchored_dawid_skene")
    np.testing.assert_allclose(anchored.probs, [[15 / 91, 76 / 91]])  # test_aggregate's hand sum
    assert (anchored.iterations, anchored.converged) == (1, True)


def test_reliabilities_are_measured_against_the_majority_label() -> None:
    # w3 always contradicts the other three: against the majority it is always wrong, so
    # its vote counts for the other class, and it is reported as such.
    triplets = []
    for n in range(40):
        truth = n % 2
        triplets += [(f"i{n}", f"w{w}", truth) for w in range(3)]
        triplets.append((f"i{n}", "w3", 1 - truth))
    result = aggregate(matrix(triplets), "anchored_dawid_skene")
    assert result.labels.tolist() == [n % 2 for n in range(40)]
    assert result.voter_accuracy[3] < 0.15 < 0.85 < result.voter_accuracy[:3].min()
    lone = aggregate(matrix([*triplets, ("lone", "w3", 1)]), "anchored_dawid_skene")
    assert lone.labels[-1] == 0  # w3 alone says 1: it means 0


@pytest.mark.parametrize("seed", range(3))
def test_on_an_independent_crowd_it_beats_the_majority_and_stays_near_full_em(seed: int) -> None:
    votes, truth = independent_crowd(seed)
    majority = accuracy("majority", votes, truth)
    anchored = accuracy("anchored_dawid_skene", votes, truth)
    full_em = accuracy("dawid_skene", votes, truth)
    # Fitted against the vote *shares* instead of the majority label, the one step lands
    # below the majority itself here (the negatives' dissenting votes fill the positive row).
    assert anchored > majority + 0.02, (anchored, majority)
    assert anchored > full_em - 0.012, (anchored, full_em)


@pytest.mark.parametrize("seed", range(4))
def test_where_annotator_groups_disagree_it_drifts_less_than_full_em(seed: int) -> None:
    votes, truth, scored = two_minded_crowd(seed)
    anchored = accuracy("anchored_dawid_skene", votes, truth, scored)
    full_em = accuracy("dawid_skene", votes, truth, scored)
    assert anchored > full_em + 0.004, (anchored, full_em)


def test_where_most_workers_are_wrong_full_em_recovers_and_anchored_cannot() -> None:
    # test_aggregate's crowd: 5 careful, 25 noisy and 10 adversarial workers. The majority is
    # wrong on 39% of the items and the anchor with it; pick dawid_skene for such a crowd.
    rng = np.random.default_rng(42)
    truth = (rng.random(3000) < 0.3).astype(int)
    skill = np.r_[np.full(5, 0.95), np.full(25, 0.6), np.full(10, 0.25)]
    items, workers, labels = crowd(rng, truth, skill, per_item=5)
    votes = build(items, workers, labels, 2, 3000, [f"w{w}" for w in range(40)])
    majority = accuracy("majority", votes, truth)
    anchored = accuracy("anchored_dawid_skene", votes, truth)
    full_em = accuracy("dawid_skene", votes, truth)
    assert majority < 0.65 and majority < anchored < 0.7 and full_em > 0.85


def test_em_stops_once_the_evidence_settles_with_the_labels_it_would_end_with() -> None:
    votes, _ = independent_crowd(0)
    stopped = aggregate(votes, "dawid_skene")
    settled = aggregate(votes, "dawid_skene", max_iter=500, tol=1e-13)
    assert stopped.converged and stopped.iterations < settled.iterations
    np.testing.assert_allclose(stopped.probs, settled.probs, atol=1e-3)
    np.testing.assert_array_equal(stopped.labels, settled.labels)


@pytest.mark.parametrize("strategy", LEARNING_STRATEGIES)
def test_a_fixed_voter_keeps_its_accuracy_under_either_learning_strategy(strategy: str) -> None:
    votes = matrix([("a", "h1", 1), ("a", "h2", 0), ("b", "h1", 0), ("b", "h2", 1)])
    result = aggregate(votes, strategy, fixed_voters={0: 0.9, 1: 0.6})
    np.testing.assert_allclose(result.probs, [[1 / 7, 6 / 7], [6 / 7, 1 / 7]])
    np.testing.assert_allclose(result.voter_accuracy, [0.9, 0.6])


def test_labeling_functions_are_graded_against_people_not_each_other() -> None:
    # One careful vote per item, and two functions that fire together on a random half of
    # the items whatever their class. Graded against every vote's majority, each looks right
    # whenever the pair fires (two votes to one) and together they outvote the crowd.
    rng = np.random.default_rng(3)
    n = 400
    truth = rng.integers(0, 2, n)
    crowd_labels = np.where(rng.random(n) < 0.9, truth, 1 - truth)
    fired = np.flatnonzero(rng.random(n) < 0.5)
    votes = build(
        np.r_[np.arange(n), fired, fired],
        np.r_[rng.integers(0, 20, n), np.full(len(fired), 20), np.full(len(fired), 21)],
        np.r_[crowd_labels, np.ones(2 * len(fired), int)],
        2,
        n,
        [*(f"w{w}" for w in range(20)), "lf:pattern", "lf:same_pattern"],
    )
    result = aggregate(votes, "anchored_dawid_skene")
    assert (result.labels == truth).mean() > 0.85
    assert result.voter_accuracy[20:].max() < 0.65  # right about half the time they fire
