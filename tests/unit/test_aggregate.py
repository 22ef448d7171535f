"""Vote aggregation: hand-computed cases, ties, smoothing, and seeded synthetic crowds."""

from __future__ import annotations

import numpy as np
import pytest

from mlcycle.common.errors import InvalidInput
from mlcycle.labeler.aggregate import STRATEGIES, aggregate
from mlcycle.labeler.votes import VoteMatrix


def matrix(triplets: list[tuple[str, str, int]], k: int = 2, items: tuple = ()) -> VoteMatrix:
    return VoteMatrix.from_triplets(triplets, k, item_ids=items)


def crowd(
    rng: np.random.Generator,
    truth: np.ndarray,
    accuracy: np.ndarray,
    per_item: int,
    k: int = 2,
    flip: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``per_item`` distinct workers per item; a wrong vote is a uniformly other class.

    With ``flip``, a worker below 1/k accuracy is adversarial in a fixed way:
    a wrong vote is always ``(true + 1) % k``.
    """
    n, n_workers = len(truth), len(accuracy)
    workers = np.argsort(rng.random((n, n_workers)), axis=1)[:, :per_item].ravel()
    items = np.repeat(np.arange(n), per_item)
    right = rng.random(len(items)) < accuracy[workers]
    shift = np.ones(len(items), int) if flip else rng.integers(1, k, len(items))
    labels = np.where(right, truth[items], (truth[items] + shift) % k)
    return items, workers, labels


def build(items, voters, labels, k, n_items, voter_ids) -> VoteMatrix:
    return VoteMatrix.from_arrays(
        items, voters, labels, k, item_ids=[f"i{i}" for i in range(n_items)], voter_ids=voter_ids
    )


# --- strategies and arguments -------------------------------------------------------------


def test_unknown_strategy_names_the_known_ones() -> None:
    with pytest.raises(InvalidInput) as caught:
        aggregate(matrix([("a", "w", 1)]), "median")
    for name in STRATEGIES:
        assert name in caught.value.message


def test_mean_threshold_refuses_more_than_two_classes() -> None:
    with pytest.raises(InvalidInput, match="binary"):
        aggregate(matrix([("a", "w", 2)], k=3), "mean_threshold")


@pytest.mark.parametrize(
    "options",
    [{"threshold": 1.5}, {"threshold": -0.1}],
)
def test_mean_threshold_checks_the_threshold(options: dict) -> None:
    with pytest.raises(InvalidInput):
        aggregate(matrix([("a", "w", 1)]), "mean_threshold", **options)


@pytest.mark.parametrize("options", [{"max_iter": 0}, {"tol": 0.0}])
def test_dawid_skene_checks_its_iteration_limits(options: dict) -> None:
    with pytest.raises(InvalidInput):
        aggregate(matrix([("a", "w", 1)]), "dawid_skene", **options)


# --- mean threshold and majority, by hand ---------------------------------------------------

VOTES = [
    ("a", "w1", 1), ("a", "w2", 1), ("a", "w3", 0),  # 2/3 toxic
    ("b", "w1", 1), ("b", "w2", 0),  # exactly half
    ("c", "w3", 0),  # one vote
]  # fmt: skip


def test_mean_threshold_is_strictly_more_than_the_threshold() -> None:
    result = aggregate(matrix(VOTES, items=("a", "b", "c", "d")), "mean_threshold")
    np.testing.assert_allclose(result.probs[:3], [[1 / 3, 2 / 3], [0.5, 0.5], [1.0, 0.0]])
    # "more than 50%": a 1-1 split is not toxic.
    assert result.labels.tolist() == [1, 0, 0, -1]
    assert result.labels.dtype == np.int16
    assert result.n_votes.tolist() == [3, 2, 1, 0]
    assert result.n_votes.dtype == np.int32
    prior = [(1 / 3 + 0.5 + 1) / 3, (2 / 3 + 0.5) / 3]
    np.testing.assert_allclose(result.class_prior, prior)
    np.testing.assert_allclose(result.probs[3], prior)  # no votes: the prior
    assert result.voter_confusion is None and result.voter_accuracy is None
    assert (result.iterations, result.converged) == (0, True)


def test_mean_threshold_moves_with_the_threshold() -> None:
    votes = matrix(VOTES)
    assert aggregate(votes, "mean_threshold", threshold=0.4).labels.tolist() == [1, 1, 0]
    assert aggregate(votes, "mean_threshold", threshold=0.7).labels.tolist() == [0, 0, 0]


def test_majority_shares_and_argmax() -> None:
    result = aggregate(matrix(VOTES), "majority")
    np.testing.assert_allclose(result.probs, [[1 / 3, 2 / 3], [0.5, 0.5], [1.0, 0.0]])
    # b is a tie; class 0 has the larger prior (mean soft label 0.61), so it wins.
    assert result.labels.tolist() == [1, 0, 0]


def test_majority_breaks_ties_toward_the_more_frequent_class() -> None:
    # Three classes; class 2 dominates elsewhere, so the 0-vs-2 tie on "t" goes to 2 ...
    votes = [("t", "x", 0), ("t", "y", 2)] + [(f"o{i}", "z", 2) for i in range(3)]
    assert aggregate(matrix(votes, k=3), "majority").labels[0] == 2
    # ... and to 0 when class 0 dominates instead.
    votes = [("t", "x", 0), ("t", "y", 2)] + [(f"o{i}", "z", 0) for i in range(3)]
    assert aggregate(matrix(votes, k=3), "majority").labels[0] == 0
    # With equal priors, the lower class index wins.
    assert aggregate(matrix([("t", "x", 1), ("t", "y", 0)]), "majority").labels[0] == 0


def test_majority_with_three_classes() -> None:
    votes = [("a", "p", 2), ("a", "q", 2), ("a", "r", 1), ("b", "p", 1)]
    result = aggregate(matrix(votes, k=3), "majority")
    np.testing.assert_allclose(result.probs, [[0, 1 / 3, 2 / 3], [0, 1, 0]])
    assert result.labels.tolist() == [2, 1]


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_items_without_votes_get_the_prior_and_no_label(strategy: str) -> None:
    result = aggregate(matrix(VOTES, items=("z", "a", "y")), strategy)
    assert result.labels[[0, 2]].tolist() == [-1, -1]
    assert result.n_votes[[0, 2]].tolist() == [0, 0]
    np.testing.assert_allclose(result.probs[[0, 2]], [result.class_prior] * 2)
    np.testing.assert_allclose(result.probs.sum(axis=1), 1.0)
    assert result.labels[1] == 1  # "a" is still labeled


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_a_matrix_without_any_vote(strategy: str) -> None:
    result = aggregate(VoteMatrix.from_triplets([], 2, item_ids=("a", "b")), strategy)
    assert result.labels.tolist() == [-1, -1]
    np.testing.assert_allclose(result.probs, [[0.5, 0.5]] * 2)


# --- Dawid-Skene, by hand -------------------------------------------------------------------


def test_dawid_skene_one_vote_worker_is_neither_perfect_nor_useless() -> None:
    # One EM step from the majority start [0, 1]: prior (0+1, 1+1)/(1+2) = (1/3, 2/3).
    # Base prior rows (4 votes, 70% diagonal): (2.8, 1.2) and (1.2, 2.8). The pooled crowd
    # (this one worker) adds its vote to row 1, (1.2, 3.8), rescaled to 4 votes: (0.96, 3.04).
    # The worker's counts are row 0 = (2.8, 1.2), row 1 = (0.96, 1 + 3.04); its vote is
    # scored without itself: P(1 | 0) = 1.2/4 = 0.3, P(1 | 1) = 3.04/4 = 0.76; so the
    # posterior ∝ (1/3 * 0.3, 2/3 * 0.76) = (15, 76)/91.
    result = aggregate(matrix([("a", "w", 1)]), "dawid_skene", max_iter=1)
    np.testing.assert_allclose(result.probs, [[15 / 91, 76 / 91]])
    assert (result.iterations, result.converged) == (1, False)
    final = aggregate(matrix([("a", "w", 1)]), "dawid_skene")
    assert final.converged and final.labels.tolist() == [1]
    assert 0.6 < final.probs[0, 1] < 0.95
    assert 0.6 < final.voter_accuracy[0] < 0.95


def test_dawid_skene_with_fixed_voters_is_bayes_rule() -> None:
    # Mirror-image items keep the prior at 1/2; the fixed confusions then give
    # P(1 | h1 says 1, h2 says 0) = 0.9 * 0.4 / (0.9 * 0.4 + 0.1 * 0.6) = 6/7.
    votes = matrix([("a", "h1", 1), ("a", "h2", 0), ("b", "h1", 0), ("b", "h2", 1)])
    result = aggregate(votes, "dawid_skene", fixed_voters={0: 0.9, 1: 0.6})
    np.testing.assert_allclose(result.probs, [[1 / 7, 6 / 7], [6 / 7, 1 / 7]])
    np.testing.assert_allclose(result.class_prior, [0.5, 0.5])
    np.testing.assert_allclose(result.voter_confusion[0], [[0.9, 0.1], [0.1, 0.9]])
    np.testing.assert_allclose(result.voter_confusion[1], [[0.6, 0.4], [0.4, 0.6]])
    np.testing.assert_allclose(result.voter_accuracy, [0.9, 0.6])
    assert result.converged and result.iterations == 2  # the second step changes nothing


def test_fixed_three_class_confusion_spreads_the_rest_evenly() -> None:
    votes = matrix([("a", "h", 0), ("b", "h", 1), ("c", "h", 2)], k=3)
    result = aggregate(votes, "dawid_skene", fixed_voters={0: 0.8})
    np.testing.assert_allclose(result.voter_confusion[0], np.where(np.eye(3), 0.8, 0.1))


@pytest.mark.parametrize("fixed", [{5: 0.9}, {-1: 0.9}, {0: 1.5}, {0: -0.1}])
def test_bad_fixed_voters_are_refused(fixed: dict) -> None:
    with pytest.raises(InvalidInput):
        aggregate(matrix([("a", "w", 1)]), "dawid_skene", fixed_voters=fixed)


def test_a_trusted_reviewer_outweighs_two_noisy_workers() -> None:
    rng = np.random.default_rng(3)
    truth = rng.integers(0, 2, 400)
    items, workers, labels = crowd(rng, truth, np.full(20, 0.7), per_item=3)
    ids = [f"w{w}" for w in range(20)] + ["human:ann"]
    # The reviewer contradicts both workers of item 0 ("x"), who agree with each other.
    extra_items = np.array([400, 400, 400])
    extra_voters = np.array([0, 1, 20])
    extra_labels = np.array([0, 0, 1])
    votes = build(
        np.r_[items, extra_items],
        np.r_[workers, extra_voters],
        np.r_[labels, extra_labels],
        2,
        401,
        ids,
    )
    result = aggregate(votes, "dawid_skene", fixed_voters={20: 0.99})
    assert result.labels[400] == 1
    np.testing.assert_allclose(result.voter_confusion[20], [[0.99, 0.01], [0.01, 0.99]])
    plain = aggregate(votes, "dawid_skene")
    assert plain.labels[400] == 0  # learned from one vote, the reviewer is just another voter


# --- Dawid-Skene on synthetic crowds ---------------------------------------------------------


def test_dawid_skene_beats_majority_with_a_few_good_and_many_bad_workers() -> None:
    rng = np.random.default_rng(42)
    n = 3000
    truth = (rng.random(n) < 0.3).astype(int)
    # 5 careful, 25 noisy, 10 adversarial workers.
    accuracy = np.r_[np.full(5, 0.95), np.full(25, 0.6), np.full(10, 0.25)]
    items, workers, labels = crowd(rng, truth, accuracy, per_item=5)
    votes = build(items, workers, labels, 2, n, [f"w{w}" for w in range(40)])
    majority = aggregate(votes, "majority")
    ds = aggregate(votes, "dawid_skene", max_iter=500)
    acc_majority = (majority.labels == truth).mean()
    acc_ds = (ds.labels == truth).mean()
    assert acc_ds > acc_majority + 0.1, (acc_ds, acc_majority)
    assert acc_ds > 0.85
    assert ds.converged
    # The learned accuracies rank the workers as generated.
    learned = ds.voter_accuracy
    assert learned[:5].min() > learned[5:30].max()
    assert learned[5:30].min() > learned[30:].max()
    assert learned[30:].max() < 0.4
    np.testing.assert_allclose(learned, accuracy, atol=0.08)
    np.testing.assert_allclose(ds.class_prior, [0.7, 0.3], atol=0.03)
    np.testing.assert_allclose(ds.voter_confusion.sum(axis=2), 1.0)


def test_dawid_skene_with_three_classes_and_a_biased_crowd() -> None:
    rng = np.random.default_rng(7)
    n = 2000
    truth = rng.choice(3, size=n, p=[0.5, 0.3, 0.2])
    # A few careful workers and many who systematically mistake class c for c + 1.
    accuracy = np.r_[np.full(10, 0.9), np.full(20, 0.4)]
    items, workers, labels = crowd(rng, truth, accuracy, per_item=5, k=3, flip=True)
    votes = build(items, workers, labels, 3, n, [f"w{w}" for w in range(30)])
    acc_majority = (aggregate(votes, "majority").labels == truth).mean()
    ds = aggregate(votes, "dawid_skene")
    acc_ds = (ds.labels == truth).mean()
    assert acc_ds > acc_majority + 0.2, (acc_ds, acc_majority)
    assert acc_ds > 0.85
    # A biased worker's confusion puts most of true class 0 on vote 1.
    assert ds.voter_confusion[10, 0, 1] > 0.5
    assert ds.voter_confusion[0, 0, 0] > 0.8
    assert ds.probs.shape == (n, 3)
    np.testing.assert_allclose(ds.probs.sum(axis=1), 1.0)


def test_single_vote_items_follow_their_worker_softly() -> None:
    rng = np.random.default_rng(5)
    truth = rng.integers(0, 2, 500)
    items, workers, labels = crowd(rng, truth, np.full(10, 0.85), per_item=3)
    # 50 more items, one vote each from worker 0.
    lone = np.arange(500, 550)
    votes = build(
        np.r_[items, lone],
        np.r_[workers, np.zeros(50, int)],
        np.r_[labels, lone % 2],
        2,
        550,
        [f"w{w}" for w in range(10)],
    )
    ds = aggregate(votes, "dawid_skene")
    assert ds.labels[lone].tolist() == (lone % 2).tolist()
    confidence = ds.probs[lone, lone % 2]
    assert np.all((confidence > 0.7) & (confidence < 0.95))


def test_one_vote_workers_do_not_collapse_to_the_prior() -> None:
    # Every vote from a different worker (as in sources that publish only vote counts) and
    # an imbalanced task: per-worker confusions could explain every dissenting vote as that
    # worker's error and call everything positive. Pooling toward the crowd prevents it.
    rng = np.random.default_rng(17)
    n = 2000
    truth = (rng.random(n) < 0.8).astype(int)
    items = np.repeat(np.arange(n), 3)
    right = rng.random(items.size) < 0.8
    labels = np.where(right, truth[items], 1 - truth[items])
    votes = build(items, np.arange(items.size), labels, 2, n, [f"w{w}" for w in range(items.size)])
    acc_majority = (aggregate(votes, "majority").labels == truth).mean()
    ds = aggregate(votes, "dawid_skene")
    assert (ds.labels == truth).mean() >= acc_majority - 0.01
    assert (ds.labels == 0).sum() > 0.1 * n
    np.testing.assert_allclose(ds.class_prior, [0.2, 0.8], atol=0.05)


def test_dawid_skene_is_deterministic() -> None:
    rng = np.random.default_rng(11)
    truth = rng.integers(0, 2, 300)
    votes = build(*crowd(rng, truth, rng.uniform(0.5, 0.9, 15), 3), 2, 300, list("abcdefghijklmno"))
    first, second = aggregate(votes, "dawid_skene"), aggregate(votes, "dawid_skene")
    np.testing.assert_array_equal(first.probs, second.probs)
    np.testing.assert_array_equal(first.labels, second.labels)


# --- the label model: crowd and labeling functions together --------------------------------


def lf_votes(rng, truth, specs, first_voter):
    """Votes of labeling functions given as (fire rate if 0, fire rate if 1, class voted)."""
    items, voters, labels = [], [], []
    for j, (rate0, rate1, vote) in enumerate(specs):
        fired = np.flatnonzero(rng.random(len(truth)) < np.where(truth == 1, rate1, rate0))
        items.append(fired)
        voters.append(np.full(len(fired), first_voter + j))
        labels.append(np.full(len(fired), vote))
    return np.concatenate(items), np.concatenate(voters), np.concatenate(labels)


# (fire rate if non-toxic, fire rate if toxic, class voted): two "toxic" detectors that only
# ever vote toxic, two "clearly fine" ones that only vote non-toxic, and a useless one.
LFS = [(0.02, 0.6, 1), (0.05, 0.4, 1), (0.5, 0.1, 0), (0.3, 0.05, 0), (0.3, 0.3, 1)]
LF_IDS = ["lf:profanity", "lf:insult", "lf:polite", "lf:thanks", "lf:useless"]


def test_one_class_labeling_function_carries_evidence() -> None:
    rng = np.random.default_rng(9)
    n = 4000
    truth = (rng.random(n) < 0.2).astype(int)
    c_items, c_workers, c_labels = crowd(rng, truth, np.full(30, 0.7), per_item=1)
    l_items, l_voters, l_labels = lf_votes(rng, truth, LFS, first_voter=30)
    ids = [f"w{w}" for w in range(30)] + LF_IDS
    crowd_only = build(c_items, c_workers, c_labels, 2, n, ids)
    mixed = build(
        np.r_[c_items, l_items], np.r_[c_workers, l_voters], np.r_[c_labels, l_labels], 2, n, ids
    )
    alone = aggregate(crowd_only, "dawid_skene", max_iter=500)
    model = aggregate(mixed, "dawid_skene", max_iter=500)
    assert model.converged
    fired = np.unique(l_items[l_voters == 30])
    # The profanity function only ever votes "toxic", yet where it fires P(toxic) goes up.
    assert model.probs[fired, 1].mean() > alone.probs[fired, 1].mean() + 0.2
    # A function's learned accuracy is its precision: 0.2*0.6 / (0.2*0.6 + 0.8*0.02) = 0.88
    # for profanity; the useless function's is the base rate of toxic items.
    precision = [
        (truth[l_items[l_voters == 30 + j]] == spec[2]).mean() for j, spec in enumerate(LFS)
    ]
    np.testing.assert_allclose(model.voter_accuracy[30:], precision, atol=0.08)
    assert model.voter_accuracy[34] < 0.3
    acc_alone = (alone.labels == truth).mean()
    acc_model = (model.labels == truth).mean()
    assert acc_model > acc_alone + 0.1, (acc_model, acc_alone)
    np.testing.assert_allclose(model.class_prior, [0.8, 0.2], atol=0.04)


def test_labeling_functions_alone_make_a_label_model() -> None:
    rng = np.random.default_rng(13)
    n = 3000
    truth = (rng.random(n) < 0.2).astype(int)
    votes = build(*lf_votes(rng, truth, LFS, 0), 2, n, LF_IDS)
    majority = aggregate(votes, "majority")
    model = aggregate(votes, "dawid_skene", max_iter=500)
    covered = model.n_votes > 0
    acc_model = (model.labels[covered] == truth[covered]).mean()
    acc_majority = (majority.labels[covered] == truth[covered]).mean()
    assert acc_model > 0.9 and acc_model > acc_majority + 0.05, (acc_model, acc_majority)
    np.testing.assert_allclose(model.class_prior, [0.8, 0.2], atol=0.04)
    # Items where every function abstained: the prior, and no label.
    assert 0 < (~covered).sum() < n
    assert np.all(model.labels[~covered] == -1)
    np.testing.assert_allclose(model.probs[~covered], [model.class_prior] * (~covered).sum())


# --- building the matrix fast ----------------------------------------------------------------


def test_from_arrays_matches_from_triplets() -> None:
    triplets = [("a", "x", 1), ("b", "x", 0), ("a", "y", 0), ("a", "x", 0), ("c", "y", 1)]
    slow = VoteMatrix.from_triplets(triplets, 2)
    item_ids, voter_ids = ("a", "b", "c"), ("x", "y")
    fast = VoteMatrix.from_arrays(
        [item_ids.index(t[0]) for t in triplets],
        [voter_ids.index(t[1]) for t in triplets],
        [t[2] for t in triplets],
        2,
        item_ids=item_ids,
        voter_ids=voter_ids,
    )
    assert fast.n_votes == 4  # ("a", "x") voted twice: the last vote counts
    for name in ("items", "voters", "labels"):
        np.testing.assert_array_equal(getattr(fast, name), getattr(slow, name))
        assert getattr(fast, name).dtype == getattr(slow, name).dtype
    assert (fast.item_ids, fast.voter_ids) == (slow.item_ids, slow.voter_ids)


@pytest.mark.parametrize(
    "arrays",
    [
        ([0], [0], [2]),  # no class 2 in a binary task
        ([3], [0], [1]),  # no item 3
        ([0], [-1], [1]),
        ([0, 1], [0], [1]),  # lengths differ
        ([0], [0], [0.5]),  # not a class index
    ],
)
def test_from_arrays_checks_its_input(arrays: tuple) -> None:
    with pytest.raises(InvalidInput):
        VoteMatrix.from_arrays(*arrays, 2, item_ids=("a", "b"), voter_ids=("x",))


def test_from_arrays_with_no_votes() -> None:
    votes = VoteMatrix.from_arrays([], [], [], 2, item_ids=("a",), voter_ids=())
    assert (votes.n_votes, votes.n_items) == (0, 1)
    assert aggregate(votes, "dawid_skene").labels.tolist() == [-1]
