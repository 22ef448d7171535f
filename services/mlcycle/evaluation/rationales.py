"""How well word scores agree with human rationales, and how much the model leans on them.

The definitions are ERASER's (DeYoung et al., ACL 2020, ``rationale_benchmark/metrics.py``)
as the HateXplain paper (Mathew et al., AAAI 2021) applied them, reproduced here
so a figure means what the paper's figures mean:

* Posts: those whose majority class is hate speech or offensive (the caller picks
  them). Ground truth: the union of the annotators' token masks (HateXplain's
  ``method == 'union'``), as contiguous spans.
* Hard rationale: the top ``k = 5`` tokens by score, a fixed number of tokens, not a
  fraction of the post and not ERASER's AOPC bins (HateXplain's
  ``testing_with_rational.py``: ``topk=5``). The order is HateXplain's: a stable
  ascending sort, the last ``k`` taken, so of tied scores the later token wins.
  Each chosen token is its own one-token span, as HateXplain wrote them.
* Token F1: ERASER's ``token_prf['instance_macro']['f1']``: per post, precision and
  recall of the chosen tokens against the rationale tokens and their F1; the mean
  of those F1s over every post with a rationale or a prediction.
* IOU F1: ERASER's ``iou_scores[0]['macro']['f1']`` at threshold 0.5: each predicted
  span counts as a hit when its best intersection-over-union with a rationale span of
  the same post is at least the threshold; precision (hits / predicted spans) is
  averaged over the posts with a prediction, recall (hits / rationale spans) over the
  posts with a rationale, and the F1 is taken of the two averages. As in ERASER, two
  one-token predictions inside one two-token rationale span are two hits against one
  span, so a post's recall can exceed 1.
* AUPRC: ERASER's ``token_soft_metrics['auprc']``: per post, the area under
  scikit-learn's precision-recall curve of the soft scores against the rationale
  mask (``auc(recall, precision)``), averaged over the posts. A post without any
  rationale token scores 0 here (ERASER's result there depended on the scikit-learn
  version: NaN in 2020, 0.5 today); HateXplain's test posts all have one.
* Comprehensiveness and sufficiency: per post, the explained score of the full text
  minus its score with the top-k tokens removed (comprehensiveness; higher is more
  faithful) or with only them kept, in their order (sufficiency; lower is better);
  averaged over the posts. ERASER takes the predicted class's probability; here the
  caller's ``score`` is the score the explanation explains (the toxic probability of
  a binary model), which is the same wherever the model calls the post toxic.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from sklearn.exceptions import UndefinedMetricWarning
from sklearn.metrics import auc, precision_recall_curve

TOP_K = 5
IOU_THRESHOLD = 0.5

Scorer = Callable[[list[str]], np.ndarray]


@dataclass(frozen=True)
class Plausibility:
    """Agreement of word scores with human rationales (higher is better for all three)."""

    token_f1: float
    iou_f1: float
    auprc: float
    posts: int

    def as_dict(self) -> dict[str, float]:
        """The three figures, rounded for a report."""
        return {
            "token_f1": round(self.token_f1, 4),
            "iou_f1": round(self.iou_f1, 4),
            "auprc": round(self.auprc, 4),
        }


@dataclass(frozen=True)
class Faithfulness:
    """Score drops with the top tokens removed (comprehensiveness) or alone (sufficiency)."""

    comprehensiveness: float
    sufficiency: float
    posts: int

    def as_dict(self) -> dict[str, float]:
        """The two figures, rounded for a report."""
        return {
            "comprehensiveness": round(self.comprehensiveness, 4),
            "sufficiency": round(self.sufficiency, 4),
        }


# -- ground truth and hard rationales ------------------------------------------------------------


def union_mask(masks: Sequence[Sequence[int]], n_tokens: int) -> np.ndarray:
    """The union of the annotators' 0/1 token masks, as bool (``n_tokens``,).

    No mask at all is an all-False mask. A mask of another length is an error: the
    masks are over the post's tokens.
    """
    union = np.zeros(n_tokens, bool)
    for mask in masks:
        if len(mask) != n_tokens:
            raise ValueError(f"a rationale mask has {len(mask)} entries for {n_tokens} tokens")
        union |= np.asarray(mask, dtype=bool)
    return union


def spans_of(mask: np.ndarray) -> list[tuple[int, int]]:
    """The contiguous runs of True in ``mask``, as ``(start, end)`` with ``end`` exclusive."""
    padded = np.concatenate([[False], np.asarray(mask, bool), [False]]).astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    return [(int(s), int(e)) for s, e in zip(edges[::2], edges[1::2], strict=True)]


def top_k(scores: np.ndarray, k: int = TOP_K) -> np.ndarray:
    """Positions of the ``k`` highest scores (all of them for a shorter post), ascending.

    HateXplain's order: a stable ascending sort, the last ``k``; of tied scores the
    later position is taken.
    """
    order = np.argsort(np.asarray(scores, np.float64), kind="stable")
    return np.sort(order[max(0, len(order) - k) :])


# -- plausibility --------------------------------------------------------------------------------


def _f1(precision: float, recall: float) -> float:
    if precision == 0 or recall == 0:
        return 0.0
    return 2 * precision * recall / (precision + recall)


def token_f1(truths: Sequence[np.ndarray], hard: Sequence[np.ndarray]) -> float:
    """ERASER's token-level instance-macro F1 of hard rationales (positions) against masks."""
    f1s = []
    for truth, chosen in zip(truths, hard, strict=True):
        true_set = set(np.flatnonzero(truth).tolist())
        pred_set = set(np.asarray(chosen).tolist())
        if not true_set and not pred_set:
            continue  # neither side names this post: ERASER never sees it
        hits = len(true_set & pred_set)
        precision = hits / len(pred_set) if pred_set else 0.0
        recall = hits / len(true_set) if true_set else 0.0
        f1s.append(_f1(precision, recall))
    return float(np.mean(f1s)) if f1s else 0.0


def iou_f1(
    truths: Sequence[np.ndarray], hard: Sequence[np.ndarray], threshold: float = IOU_THRESHOLD
) -> float:
    """ERASER's span-level macro IOU F1; every chosen position is its own one-token span."""
    precisions, recalls = [], []
    for truth, chosen in zip(truths, hard, strict=True):
        true_spans = [set(range(s, e)) for s, e in spans_of(truth)]
        predicted = sorted(set(np.asarray(chosen).tolist()))
        hits = 0
        for position in predicted:
            best = max((len({position} & t) / len({position} | t) for t in true_spans), default=0)
            hits += int(best >= threshold)
        if predicted:
            precisions.append(hits / len(predicted))
        if true_spans:
            recalls.append(hits / len(true_spans))
    precision = float(np.mean(precisions)) if precisions else 0.0
    recall = float(np.mean(recalls)) if recalls else 0.0
    return _f1(precision, recall)


def post_auprc(truth: np.ndarray, scores: np.ndarray) -> float:
    """Area under the precision-recall curve of one post's soft scores (0 without a rationale)."""
    truth = np.asarray(truth, bool)
    if not truth.any():
        return 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        precision, recall, _ = precision_recall_curve(truth.astype(int), np.asarray(scores))
    return float(auc(recall, precision))


def auprc(truths: Sequence[np.ndarray], scores: Sequence[np.ndarray]) -> float:
    """ERASER's soft-score AUPRC: :func:`post_auprc` averaged over the posts."""
    values = [post_auprc(t, s) for t, s in zip(truths, scores, strict=True)]
    return float(np.mean(values)) if values else 0.0


def plausibility(
    truths: Sequence[np.ndarray],
    scores: Sequence[np.ndarray],
    *,
    k: int = TOP_K,
    threshold: float = IOU_THRESHOLD,
) -> Plausibility:
    """Token F1, IOU F1 and AUPRC of per-token ``scores`` against rationale masks ``truths``."""
    for truth, score in zip(truths, scores, strict=True):
        if len(truth) != len(score):
            raise ValueError(f"{len(score)} scores for a post of {len(truth)} tokens")
    hard = [top_k(s, k) for s in scores]
    return Plausibility(
        token_f1=token_f1(truths, hard),
        iou_f1=iou_f1(truths, hard, threshold),
        auprc=auprc(truths, scores),
        posts=len(truths),
    )


# -- faithfulness --------------------------------------------------------------------------------


def reduced_texts(tokens: Sequence[str], chosen: np.ndarray) -> tuple[str, str]:
    """(the text without the ``chosen`` positions, the text of them alone), space-joined."""
    keep = set(np.asarray(chosen).tolist())
    without = " ".join(t for i, t in enumerate(tokens) if i not in keep)
    only = " ".join(t for i, t in enumerate(tokens) if i in keep)
    return without, only


def faithfulness(
    posts: Sequence[Sequence[str]],
    scores: Sequence[np.ndarray],
    score: Scorer,
    *,
    k: int = TOP_K,
) -> Faithfulness:
    """Comprehensiveness and sufficiency of the top-``k`` tokens by ``scores``.

    ``posts`` are token lists whose space-joined text is what was explained;
    ``score`` maps texts to the explained score, one float each, and is called once
    with every full, reduced and kept-only text.
    """
    if not posts:
        return Faithfulness(0.0, 0.0, 0)
    full, without, only = [], [], []
    for tokens, token_scores in zip(posts, scores, strict=True):
        removed, kept = reduced_texts(tokens, top_k(token_scores, k))
        full.append(" ".join(tokens))
        without.append(removed)
        only.append(kept)
    n = len(full)
    out = np.asarray(score(full + without + only), np.float64)
    if out.shape != (3 * n,):
        raise ValueError(f"the scorer returned shape {out.shape} for {3 * n} texts")
    base, removed_scores, kept_scores = out[:n], out[n : 2 * n], out[2 * n :]
    return Faithfulness(
        comprehensiveness=float(np.mean(base - removed_scores)),
        sufficiency=float(np.mean(base - kept_scores)),
        posts=n,
    )


# -- word scores onto the annotated tokens -------------------------------------------------------


def token_offsets(tokens: Sequence[str]) -> list[tuple[int, int]]:
    """Character ``(begin, end)`` of each token in ``" ".join(tokens)``."""
    offsets, at = [], 0
    for token in tokens:
        offsets.append((at, at + len(token)))
        at += len(token) + 1
    return offsets


def scores_on_tokens(tokens: Sequence[str], spans: Sequence[tuple[int, int, float]]) -> np.ndarray:
    """Per-token scores from scored character spans of ``" ".join(tokens)``.

    An explainer's words need not be the annotated tokens (its own tokenizer splits
    "don't" or keeps "#tag" whole, say), so each span's score goes to every token
    whose characters it overlaps, and a token overlapped by several spans gets their
    sum (the attributions are additive). A token no span touches scores 0.
    """
    offsets = token_offsets(tokens)
    begins = np.array([b for b, _ in offsets], np.int64)
    ends = np.array([e for _, e in offsets], np.int64)
    out = np.zeros(len(tokens), np.float64)
    for begin, end, value in spans:
        if end <= begin:
            continue
        overlapping = (begins < end) & (ends > begin)
        out[overlapping] += value
    return out
