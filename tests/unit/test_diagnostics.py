"""Label-run diagnostics on small hand-computed vote matrices, plus one size check."""

from __future__ import annotations

import json
import math
import time

import numpy as np
import pytest

from mlcycle.common.errors import InvalidInput
from mlcycle.contracts.label_diagnostics import VoterStats, WrongSample
from mlcycle.labeler.diagnostics import (
    conflict_matrix,
    gold_labels,
    run_diagnostics,
    voter_stats,
    wrong_samples,
)
from mlcycle.labeler.votes import VoteMatrix

# Five items a..e, two classes. Crowd w1..w4, functions lf:x and lf:y, reviewer human:h.
#   a: w1=1 w2=1 w3=0 | x=1 y=0 | h=1   -> 3 crowd votes, 2 to 1: gold 1
#   b: w1=0 w2=1      | x=0             -> 2 crowd votes: no gold (min_votes=3)
#   c: w1=0 w2=1 w3=0 w4=1              -> 2 to 2: a tie, no gold
#   d: w2=0 w3=0 w4=0 | x=1 y=1         -> gold 0
#   e:                | x=0             -> no crowd vote
TRIPLETS = [
    ("a", "w1", 1), ("a", "w2", 1), ("a", "w3", 0), ("a", "lf:x", 1), ("a", "lf:y", 0),
    ("a", "human:h", 1),
    ("b", "w1", 0), ("b", "w2", 1), ("b", "lf:x", 0),
    ("c", "w1", 0), ("c", "w2", 1), ("c", "w3", 0), ("c", "w4", 1),
    ("d", "w2", 0), ("d", "w3", 0), ("d", "w4", 0), ("d", "lf:x", 1), ("d", "lf:y", 1),
    ("e", "lf:x", 0),
]  # fmt: skip
GOLD = [1, -1, -1, 0, -1]


@pytest.fixture
def votes() -> VoteMatrix:
    return VoteMatrix.from_triplets(TRIPLETS, 2, item_ids=["a", "b", "c", "d", "e"])


def by_id(stats: list[VoterStats]) -> dict[str, dict]:
    return {s.voter_id: s.model_dump() for s in stats}


def index(votes: VoteMatrix, voter_id: str) -> int:
    return votes.voter_ids.index(voter_id)


# --------------------------------------------------------------------------- gold


def test_gold_is_the_crowd_majority_with_enough_votes_and_no_tie(votes: VoteMatrix) -> None:
    assert gold_labels(votes, min_votes=3).tolist() == GOLD
    # b has 3 votes with lf:x, but functions and reviewers are not the crowd.
    assert gold_labels(votes, min_votes=2).tolist() == [1, -1, -1, 0, -1]
    assert gold_labels(votes, min_votes=4).tolist() == [-1, -1, -1, -1, -1]


def test_gold_of_a_single_vote_and_of_no_vote() -> None:
    matrix = VoteMatrix.from_triplets([("a", "w1", 2)], 3, item_ids=["a", "b"])
    assert gold_labels(matrix, min_votes=1).tolist() == [2, -1]
    with pytest.raises(InvalidInput):
        gold_labels(matrix, min_votes=0)


# --------------------------------------------------------------------------- voter stats


def test_labeling_function_and_human_stats(votes: VoteMatrix) -> None:
    stats = by_id(voter_stats(votes, np.array(GOLD)))
    x, y, h = stats["lf:x"], stats["lf:y"], stats["human:h"]
    assert (x["kind"], x["name"], y["kind"], h["kind"], h["name"]) == (
        "lf",
        "x",
        "lf",
        "human",
        "h",
    )
    # x votes a, b, d, e: others voted on a, b, d; someone chose another class on a, b, d.
    assert (x["n_votes"], x["coverage"], x["overlap"], x["conflict"]) == (4, 0.8, 0.75, 0.75)
    # Gold items a (1 == 1) and d (1 != 0).
    assert (x["accuracy"], x["n_gold"], x["class_counts"]) == (0.5, 2, [2, 2])
    assert (y["n_votes"], y["coverage"], y["overlap"], y["conflict"]) == (2, 0.4, 1.0, 1.0)
    assert (y["accuracy"], y["n_gold"], y["class_counts"]) == (0.0, 2, [1, 1])
    assert (h["coverage"], h["overlap"], h["conflict"], h["accuracy"], h["n_gold"]) == (
        0.2,
        1.0,
        1.0,
        1.0,
        1,
    )


def test_crowd_workers_are_scored_leave_one_out(votes: VoteMatrix) -> None:
    stats = by_id(voter_stats(votes, np.array(GOLD)))
    # w1's only gold item is a; without its own vote, a is w2=1 against w3=0: a tie, unscored
    # (scored against the full majority it would get a free 1/1).
    assert (stats["w1"]["accuracy"], stats["w1"]["n_gold"]) == (None, 0)
    # w2: a unscored (w1=1, w3=0), d: others say 0, it says 0.
    assert (stats["w2"]["accuracy"], stats["w2"]["n_gold"]) == (1.0, 1)
    # w3: a: others say 1 (w1, w2), it says 0 -> wrong; d right.
    assert (stats["w3"]["accuracy"], stats["w3"]["n_gold"]) == (0.5, 2)
    assert (stats["w4"]["accuracy"], stats["w4"]["n_gold"]) == (1.0, 1)
    assert stats["w2"]["overlap"] == 1.0
    assert stats["w2"]["conflict"] == 1.0  # a: w3 and y say 0; b: w1; c: w1, w3; d: x, y
    assert stats["w4"]["conflict"] == 1.0
    assert stats["w1"]["class_counts"] == [2, 1]


def test_leave_one_out_on_close_majorities() -> None:
    # p: four 1s against w5's 0; q: three 1s against w4 and w5's 0s.
    triplets = [("p", f"w{i}", 0 if i == 5 else 1) for i in range(1, 6)]
    triplets += [("q", f"w{i}", 0 if i >= 4 else 1) for i in range(1, 6)]
    matrix = VoteMatrix.from_triplets(triplets, 2)
    gold = gold_labels(matrix, min_votes=5)
    assert gold.tolist() == [1, 1]
    stats = by_id(voter_stats(matrix, gold))
    # w1 on q: 2 against 2 without it -> unscored; on p: 3 against 1 -> right.
    assert (stats["w1"]["accuracy"], stats["w1"]["n_gold"]) == (1.0, 1)
    assert (stats["w4"]["accuracy"], stats["w4"]["n_gold"]) == (0.5, 2)
    assert (stats["w5"]["accuracy"], stats["w5"]["n_gold"]) == (0.0, 2)


def test_a_voter_without_votes_has_no_shares() -> None:
    matrix = VoteMatrix(
        items=np.array([0], dtype=np.int32),
        voters=np.array([0], dtype=np.int32),
        labels=np.array([1], dtype=np.int16),
        item_ids=("a",),
        voter_ids=("w1", "lf:silent"),
        n_classes=2,
    )
    silent = by_id(voter_stats(matrix, np.array([-1])))["lf:silent"]
    assert silent["n_votes"] == 0 and silent["coverage"] == 0.0
    assert silent["overlap"] is silent["conflict"] is silent["accuracy"] is None
    with pytest.raises(InvalidInput):
        voter_stats(matrix, np.array([-1, -1]))


# --------------------------------------------------------------------------- conflicts


def test_conflict_matrix(votes: VoteMatrix) -> None:
    chosen = [index(votes, v) for v in ("lf:x", "lf:y", "human:h", "w4")]
    values = conflict_matrix(votes, chosen)
    assert values.shape == (4, 4)
    expected = np.array(
        [
            [0.0, 0.5, 0.0, 1.0],  # x-y share a (1/0) and d (1/1); x-w4 share d (1/0)
            [0.5, 0.0, 1.0, 1.0],
            [0.0, 1.0, 0.0, np.nan],  # h and w4 share no item
            [1.0, 1.0, np.nan, 0.0],
        ]
    )
    np.testing.assert_array_equal(values, expected)


def test_conflict_matrix_repeats_and_empties(votes: VoteMatrix) -> None:
    x, y = index(votes, "lf:x"), index(votes, "lf:y")
    expected = [[0.0, 0.5, 0.0], [0.5, 0.0, 0.5], [0.0, 0.5, 0.0]]
    np.testing.assert_array_equal(conflict_matrix(votes, [y, x, y]), expected)
    assert conflict_matrix(votes, []).shape == (0, 0)
    with pytest.raises(InvalidInput):
        conflict_matrix(votes, [votes.n_voters])


def test_conflict_matrix_in_chunks_matches_one_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    from mlcycle.labeler import diagnostics

    rng = np.random.default_rng(1)
    triplets = {
        (f"i{i}", f"lf:f{f}", int(rng.integers(3)))
        for i in range(300)
        for f in range(6)
        if rng.random() < 0.5
    }
    matrix = VoteMatrix.from_triplets(sorted(triplets), 3)
    whole = conflict_matrix(matrix, range(6))
    monkeypatch.setattr(diagnostics, "_CHUNK_ELEMENTS", 6 * 3 * 7)  # 7 items per chunk
    np.testing.assert_allclose(conflict_matrix(matrix, range(6)), whole)
    # Against the definition, pair by pair.
    dense = np.full((matrix.n_items, 6), -1)
    dense[matrix.items, matrix.voters] = matrix.labels
    for i in range(6):
        for j in range(6):
            both = (dense[:, i] >= 0) & (dense[:, j] >= 0)
            assert whole[i, j] == pytest.approx(np.mean(dense[both, i] != dense[both, j]))


# --------------------------------------------------------------------------- wrong samples


def test_wrong_samples(votes: VoteMatrix) -> None:
    texts = {"a": "<b>" + "long " * 200, "b": "short"}
    y = index(votes, "lf:y")
    samples = dumped(wrong_samples(votes, np.array(GOLD), y, texts))
    assert [(s["item_id"], s["vote"], s["gold"]) for s in samples] == [("a", 0, 1), ("d", 1, 0)]
    assert samples[0]["text"].startswith("<b>long") and len(samples[0]["text"]) <= 300
    assert samples[1]["text"] == ""  # no text known for d
    one = wrong_samples(votes, np.array(GOLD), y, texts, k=1, seed=3)
    assert len(one) == 1 and one == wrong_samples(votes, np.array(GOLD), y, texts, k=1, seed=3)
    # A worker's wrong items are the ones its leave-one-out accuracy counted as wrong.
    w3 = dumped(wrong_samples(votes, np.array(GOLD), index(votes, "w3"), texts))
    assert [(s["item_id"], s["vote"], s["gold"]) for s in w3] == [("a", 0, 1)]
    assert wrong_samples(votes, np.array(GOLD), index(votes, "human:h"), texts) == []


def dumped(samples: list[WrongSample]) -> list[dict]:
    return [sample.model_dump() for sample in samples]


# --------------------------------------------------------------------------- the report


def test_report_is_strict_json_with_every_section(votes: VoteMatrix) -> None:
    probs = np.array([[0.15, 0.85], [0.5, 0.5], [np.nan, np.nan], [0.35, 0.65], [0.9, 0.1]])
    errors = {
        "x": {"count": 2, "message": "KeyError: 'lang'", "items": [1, 4]},
        "lf:broken": {"count": 5, "message": "ValueError: boom", "items": [0, 1, 2, 3, 4]},
    }
    report = run_diagnostics(
        votes,
        probs=probs,
        gold=np.array(GOLD),
        texts={"a": "A", "d": "D"},
        lf_errors=errors,
        max_workers=2,
        min_votes=3,
    ).model_dump(mode="json")
    text = json.dumps(report, allow_nan=False)  # NaN would raise here
    assert json.loads(text) == report
    assert report["gold"] == {"items": 2, "min_votes": 3}
    assert report["totals"] == {
        "items": 5,
        "votes": len(TRIPLETS),
        "classes": 2,
        "voters": {"lf": 2, "crowd": 4, "human": 1},
    }
    lfs = report["labeling_functions"]
    assert [lf["name"] for lf in lfs] == ["x", "y", "broken"]
    assert lfs[0]["errors"] == errors["x"] and lfs[1]["errors"] is None
    assert lfs[2]["n_votes"] == 0 and lfs[2]["errors"]["count"] == 5
    assert [s["item_id"] for s in lfs[1]["wrong_samples"]] == ["a", "d"]
    assert all("index" not in lf for lf in lfs)
    assert report["conflict_matrix"] == {
        "voters": ["x", "y", "broken"],
        "values": [[0.0, 0.5, None], [0.5, 0.0, None], [None, None, None]],
    }
    assert [h["voter_id"] for h in report["humans"]] == ["human:h"]

    workers = report["workers"]
    assert [w["voter_id"] for w in workers["top"]] == ["w2", "w1"]  # 4 votes, then 3 (w1 < w3)
    assert (workers["count"], workers["votes"], workers["median_votes"]) == (4, 12, 3.0)
    assert (workers["with_gold"], workers["median_accuracy"]) == (3, 1.0)
    assert workers["pooled_accuracy"] == pytest.approx(3 / 4)

    # Gold items a (top 0.85, right) and d (top 0.65, wrong).
    calibration = report["calibration"]
    assert calibration["ece"] == pytest.approx(0.5 * 0.15 + 0.5 * 0.65)
    filled = [b for b in calibration["bins"] if b["count"]]
    assert [(b["count"], b["accuracy"]) for b in filled] == [(1, 0.0), (1, 1.0)]
    assert [b["confidence"] for b in filled] == pytest.approx([0.65, 0.85])


def test_report_without_gold_lfs_or_workers() -> None:
    matrix = VoteMatrix.from_triplets([("a", "human:h", 0)], 2, item_ids=["a", "b"])
    report = run_diagnostics(
        matrix, probs=np.array([0.2, 0.7]), gold=np.array([-1, -1]), texts={}
    ).model_dump(mode="json")
    json.dumps(report, allow_nan=False)
    assert report["labeling_functions"] == []
    assert report["conflict_matrix"] == {"voters": [], "values": []}
    assert report["workers"]["count"] == 0 and report["workers"]["median_accuracy"] is None
    assert report["calibration"]["ece"] is None
    with pytest.raises(InvalidInput):
        run_diagnostics(matrix, probs=np.zeros((2, 3)), gold=np.array([-1, -1]), texts={})


def synthetic(n_items: int, n_workers: int, votes_per_item: int, n_lfs: int) -> VoteMatrix:
    """Crowd workers right 80% of the time and LFs firing on 30% of items, as arrays."""
    rng = np.random.default_rng(0)
    truth = rng.integers(2, size=n_items)
    items = np.repeat(np.arange(n_items), votes_per_item)
    # Distinct workers per item: consecutive ids from a random start.
    start = rng.integers(n_workers, size=n_items)
    workers = np.repeat(start, votes_per_item) + np.tile(np.arange(votes_per_item), n_items)
    workers %= n_workers
    labels = np.where(rng.random(items.size) < 0.8, truth[items], 1 - truth[items])
    lf_items = np.repeat(np.arange(n_items), n_lfs)
    lf_voters = n_workers + np.tile(np.arange(n_lfs), n_items)
    fired = rng.random(lf_items.size) < 0.3
    lf_labels = np.where(rng.random(lf_items.size) < 0.7, truth[lf_items], 1 - truth[lf_items])
    return VoteMatrix(
        items=np.concatenate([items, lf_items[fired]]).astype(np.int32),
        voters=np.concatenate([workers, lf_voters[fired]]).astype(np.int32),
        labels=np.concatenate([labels, lf_labels[fired]]).astype(np.int16),
        item_ids=tuple(f"i{i}" for i in range(n_items)),
        voter_ids=tuple(f"w{w}" for w in range(n_workers))
        + tuple(f"lf:f{f}" for f in range(n_lfs)),
        n_classes=2,
    )


def test_run_diagnostics_is_fast_on_200k_votes() -> None:
    votes = synthetic(n_items=20_000, n_workers=500, votes_per_item=8, n_lfs=10)
    assert votes.n_votes > 200_000
    gold = gold_labels(votes, min_votes=5)
    probs = np.random.default_rng(1).dirichlet([1.0, 1.0], size=votes.n_items)
    texts = {item: f"text {item}" for item in votes.item_ids}
    started = time.perf_counter()
    diagnosed = run_diagnostics(votes, probs=probs, gold=gold, texts=texts)
    elapsed = time.perf_counter() - started
    assert elapsed < 3.0, f"run_diagnostics took {elapsed:.2f} s"
    report = diagnosed.model_dump(mode="json")
    assert report["workers"]["count"] == 500 and len(report["workers"]["top"]) == 50
    assert len(report["labeling_functions"]) == 10
    # Workers right 80% of the time score about that against a leave-one-out majority of 7.
    assert 0.75 < report["workers"]["pooled_accuracy"] < 0.85
    assert all(0.25 < lf["coverage"] < 0.35 for lf in report["labeling_functions"])
    assert not math.isnan(report["calibration"]["ece"])
