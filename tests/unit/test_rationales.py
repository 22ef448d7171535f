"""ERASER / HateXplain rationale metrics on small posts whose answers are worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from mlcycle.evaluation.rationales import (
    auprc,
    faithfulness,
    iou_f1,
    plausibility,
    post_auprc,
    scores_on_tokens,
    spans_of,
    token_f1,
    top_k,
    union_mask,
)


def mask(*bits: int) -> np.ndarray:
    return np.array(bits, bool)


def scores(*values: float) -> np.ndarray:
    return np.array(values, np.float64)


# -- ground truth and hard rationales ------------------------------------------------------------


def test_union_of_annotators_and_its_spans() -> None:
    union = union_mask([[0, 1, 0, 0, 1], [0, 0, 1, 0, 1]], 5)
    assert union.tolist() == [False, True, True, False, True]
    assert spans_of(union) == [(1, 3), (4, 5)]
    assert spans_of(mask(1, 1, 1)) == [(0, 3)]
    assert spans_of(mask(0, 0)) == []
    assert not union_mask([], 3).any()


def test_a_mask_of_another_length_is_an_error() -> None:
    with pytest.raises(ValueError, match="3 entries for 4 tokens"):
        union_mask([[0, 1, 0]], 4)


def test_top_k_takes_the_later_of_tied_scores_as_hatexplain_did() -> None:
    assert top_k(scores(1, 1, 1, 0), 2).tolist() == [1, 2]
    assert top_k(scores(0, 3, 1, 2), 2).tolist() == [1, 3]
    assert top_k(scores(0.5, 0.1), 5).tolist() == [0, 1]  # a short post: every token


# -- plausibility --------------------------------------------------------------------------------


def test_perfect_agreement() -> None:
    # Rationale tokens 0 and 2 (two one-token spans), and they are the top two.
    result = plausibility([mask(1, 0, 1, 0)], [scores(3, 0, 2, 0)], k=2)
    assert (result.token_f1, result.iou_f1, result.auprc) == (1.0, 1.0, 1.0)
    assert result.posts == 1


def test_disjoint() -> None:
    truth, soft = mask(1, 1, 0, 0), scores(0, 0, 1, 2)
    result = plausibility([truth], [soft], k=2)
    assert result.token_f1 == 0.0
    assert result.iou_f1 == 0.0
    # The curve: everything selected gives precision 1/2 at recall 1; any higher threshold
    # selects only the two wrong tokens, recall 0 at precision 0. The area is the trapezoid
    # from (0, 0) to (1, 1/2): 1/4.
    assert result.auprc == pytest.approx(0.25)


def test_partial_overlap_is_token_level_but_not_span_level() -> None:
    # One rationale span of three tokens; the top two fall inside it.
    truth, soft = mask(1, 1, 1, 0, 0, 0), scores(5, 0, 4, 3, 0, 0)
    # precision 2/2, recall 2/3: F1 = 2 * (2/3) / (5/3) = 0.8
    assert token_f1([truth], [top_k(soft, 2)]) == pytest.approx(0.8)
    # A one-token prediction inside a three-token span has IOU 1/3 < 0.5: no hit.
    assert iou_f1([truth], [top_k(soft, 2)]) == 0.0
    # Ranking 0, 2, 3, ...: precision 1, 1, 2/3, then 1/2 at recall 1 (all six at score 0
    # or above). Points (recall, precision): (0,1) (1/3,1) (2/3,1) (2/3,2/3) (1,1/2):
    # area 2/3 * 1 + 1/3 * (2/3 + 1/2) / 2 = 2/3 + 7/36 = 31/36.
    assert post_auprc(truth, soft) == pytest.approx(31 / 36)


def test_token_f1_is_the_mean_of_post_f1s() -> None:
    truths = [mask(1, 0, 1, 0), mask(1, 1, 0, 0)]
    hard = [np.array([0, 2]), np.array([2, 3])]
    assert token_f1(truths, hard) == pytest.approx(0.5)


def test_iou_threshold_edge() -> None:
    # A one-token prediction inside a two-token span: IOU exactly 1/2.
    truth, chosen = mask(0, 1, 1, 0), np.array([1])
    assert iou_f1([truth], [chosen], threshold=0.5) == pytest.approx(1.0)  # p 1/1, r 1/1
    assert iou_f1([truth], [chosen], threshold=0.51) == 0.0


def test_iou_recall_can_exceed_one_as_in_eraser() -> None:
    # Both tokens of a two-token span chosen: two hits against one span, recall 2.
    # F1 of precision 1 and recall 2 = 4/3 (ERASER's partial_match_score does the same).
    assert iou_f1([mask(0, 1, 1, 0)], [np.array([1, 2])]) == pytest.approx(4 / 3)


def test_a_post_without_rationale() -> None:
    truths = [mask(1, 0, 1, 0), mask(0, 0, 0)]
    soft = [scores(3, 0, 2, 0), scores(1, 0, 0)]
    result = plausibility(truths, soft, k=2)
    # The second post's predictions all miss: its F1 is 0, the mean 1/2.
    assert result.token_f1 == pytest.approx(0.5)
    # Precision averages over both posts (1 and 0), recall over the one with spans (1):
    # F1 of 1/2 and 1 = 2/3.
    assert result.iou_f1 == pytest.approx(2 / 3)
    assert post_auprc(truths[1], soft[1]) == 0.0
    assert result.auprc == pytest.approx(0.5)
    assert auprc([], []) == 0.0


def test_scores_must_cover_every_token() -> None:
    with pytest.raises(ValueError, match="3 scores for a post of 4 tokens"):
        plausibility([mask(1, 0, 0, 0)], [scores(1, 0, 0)])


# -- faithfulness --------------------------------------------------------------------------------


def test_comprehensiveness_and_sufficiency_with_a_tiny_scorer() -> None:
    calls: list[list[str]] = []

    def score(texts: list[str]) -> np.ndarray:
        calls.append(texts)
        words = [set(t.split()) for t in texts]
        return np.array([0.5 * ("bad" in w) + 0.25 * ("ugly" in w) for w in words])

    posts = [["you", "bad", "ugly", "man"], ["nice", "day"]]
    token_scores = [scores(0, 2, 1, 0), scores(1, 0)]
    result = faithfulness(posts, token_scores, score, k=1)
    # Post 1: full 0.75; without "bad" 0.25 (drop 0.5); "bad" alone 0.5 (drop 0.25).
    # Post 2: every score 0. Means: 0.25 and 0.125.
    assert result.comprehensiveness == pytest.approx(0.25)
    assert result.sufficiency == pytest.approx(0.125)
    assert result.posts == 2
    assert calls == [["you bad ugly man", "nice day", "you ugly man", "day", "bad", "nice"]]


def test_faithfulness_of_nothing() -> None:
    assert faithfulness([], [], lambda texts: np.zeros(len(texts))).posts == 0


def test_a_scorer_of_the_wrong_shape_is_an_error() -> None:
    with pytest.raises(ValueError, match="shape"):
        faithfulness([["a"]], [scores(1)], lambda texts: np.zeros(1))


# -- word scores onto annotated tokens -----------------------------------------------------------


def test_spans_onto_tokens_by_character_overlap() -> None:
    tokens = ["don't", "go", "away"]  # "don't go away"
    spans = [(0, 3, 1.0), (4, 5, 0.5), (6, 8, 2.0), (5, 6, 9.0)]  # "don", "t", "go", " "
    assert scores_on_tokens(tokens, spans).tolist() == [1.5, 2.0, 0.0]
    # A span across a token boundary scores both tokens.
    assert scores_on_tokens(tokens, [(3, 7, 1.0)]).tolist() == [1.0, 1.0, 0.0]
    assert scores_on_tokens(tokens, [(4, 4, 3.0)]).tolist() == [0.0, 0.0, 0.0]
