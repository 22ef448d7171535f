"""The explanation methods the explanations benchmark compares, on one exported model.

Every method answers the same question, a score per annotated token of a post
(HateXplain's ``post_tokens``; the text explained is those tokens joined by
spaces), and explains the same number: the served score (the exported model's
``scores``, the toxic probability). Each is timed per explanation, one post at a
time, as a caller asking for one explanation would wait for it.

- ``mlcycle``: the SavedModel's ``explain`` signature (integrated gradients of the
  served score over the featurizer's entries) on the post's CSR row, split among the
  words of the original text by :func:`mlcycle.featurization.attribution.attribute_to_words`.
- ``lime``: LIME's ``LimeTextExplainer`` with its defaults (5,000 perturbed samples,
  bag of words split on ``\\W+``), asked for a weight for every word of the post.
- ``leave_one_out``: the score of the post minus its score with one token removed,
  every token's variant scored in one batch.

The explainers' own words are not the annotated tokens (the featurizer splits
"don't", LIME splits on non-word characters), so their scores are mapped onto the
tokens by character offsets: each scored span's score goes to every token it
overlaps, summed (:func:`mlcycle.evaluation.rationales.scores_on_tokens`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mlcycle.contracts.explanations import EXPLAIN_SIGNATURE
from mlcycle.evaluation.rationales import scores_on_tokens
from mlcycle.featurization.transform import Transform

SCORE_CHUNK = 4096


@dataclass
class Explained:
    """One method's token scores for each post it explained, and what each one took."""

    posts: list[int] = field(default_factory=list)  # indices into the caller's post list
    scores: list[np.ndarray] = field(default_factory=list)  # one float per token
    seconds: list[float] = field(default_factory=list)
    notes: dict[str, Any] = field(default_factory=dict)

    def add(self, post: int, scores: np.ndarray, seconds: float) -> None:
        self.posts.append(post)
        self.scores.append(scores)
        self.seconds.append(seconds)


def padded_rows(transform: Transform, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """The signatures' inputs for ``texts``: (indices int64, values float32), zero-padded."""
    batch = transform.apply(list(texts))
    lengths = np.diff(batch.indptr)
    width = max(1, int(lengths.max(initial=0)))
    indices = np.zeros((len(texts), width), np.int64)
    values = np.zeros((len(texts), width), np.float32)
    rows = np.repeat(np.arange(len(texts)), lengths)
    columns = np.arange(len(batch.indices)) - np.repeat(batch.indptr[:-1], lengths)
    indices[rows, columns] = batch.indices
    values[rows, columns] = batch.values
    return indices, values


class ServedModel:
    """An exported version loaded in this process: the served score and its explanation."""

    def __init__(self, folder: Path, transform: Transform) -> None:
        import tensorflow as tf

        self._tf = tf
        self.transform = transform
        self._loaded = tf.saved_model.load(str(folder))
        self._serving = self._loaded.signatures["serving_default"]
        self._explain = self._loaded.signatures.get(EXPLAIN_SIGNATURE)

    @property
    def can_explain(self) -> bool:
        return self._explain is not None

    def score(self, texts: list[str]) -> np.ndarray:
        """The served score of each text, in chunks."""
        out = []
        for start in range(0, len(texts), SCORE_CHUNK):
            indices, values = padded_rows(self.transform, texts[start : start + SCORE_CHUNK])
            result = self._serving(
                indices=self._tf.constant(indices), values=self._tf.constant(values)
            )
            out.append(result["scores"].numpy().reshape(-1))
        return np.concatenate(out) if out else np.zeros(0)

    def explain_row(self, text: str) -> tuple[np.ndarray, np.ndarray, float, float]:
        """(columns, attributions, score, baseline score) of ``text``'s CSR row."""
        assert self._explain is not None
        batch = self.transform.apply([text])
        columns = batch.indices[batch.indptr[0] : batch.indptr[1]].astype(np.int64)
        values = batch.values[batch.indptr[0] : batch.indptr[1]].astype(np.float32)
        width = max(1, len(columns))
        indices = np.zeros((1, width), np.int64)
        padded = np.zeros((1, width), np.float32)
        indices[0, : len(columns)], padded[0, : len(columns)] = columns, values
        out = self._explain(indices=self._tf.constant(indices), values=self._tf.constant(padded))
        attributions = out["attributions"].numpy()[0, : len(columns)]
        return (
            columns,
            attributions,
            float(out["scores"].numpy()[0]),
            float(out["baseline_scores"].numpy()[0]),
        )


def _timed(posts: Sequence[int], run: Callable[[int], np.ndarray], result: Explained) -> Explained:
    for post in posts:
        started = time.perf_counter()
        scores = run(post)
        result.add(post, scores, time.perf_counter() - started)
    return result


def explain_mlcycle(
    model: ServedModel, tokens: Sequence[Sequence[str]], posts: Sequence[int]
) -> Explained:
    """The served model's own explanation, mapped onto the tokens by character offsets."""
    from mlcycle.featurization.attribution import attribute_to_words

    result = Explained()
    gaps: list[float] = []
    unassigned: list[float] = []

    def run(post: int) -> np.ndarray:
        text = " ".join(tokens[post])
        columns, attributions, score, baseline = model.explain_row(text)
        words = attribute_to_words(model.transform, text, columns, attributions)
        # How far integrated gradients' completeness is from exact, and how much of the
        # attribution no word took part in (metadata, embeddings, n-grams of spaces).
        gaps.append(abs(float(attributions.sum()) - (score - baseline)))
        unassigned.append(abs(float(words.unassigned)))
        spans = [(span.begin, span.end, span.score) for span in words.spans()]
        return scores_on_tokens(tokens[post], spans)

    _timed(posts, run, result)
    result.notes = {
        "completeness_gap_median": float(np.median(gaps)) if gaps else None,
        "unassigned_abs_median": float(np.median(unassigned)) if unassigned else None,
    }
    return result


def explain_lime(
    model: ServedModel, tokens: Sequence[Sequence[str]], posts: Sequence[int], seed: int
) -> Explained:
    """LIME's text explainer, default sample budget, a weight for every word it sees."""
    from lime.lime_text import IndexedString, LimeTextExplainer

    explainer = LimeTextExplainer(class_names=["normal", "toxic"], random_state=seed)

    def probabilities(texts: list[str]) -> np.ndarray:
        scores = model.score(list(texts))
        return np.stack([1.0 - scores, scores], axis=1)

    def run(post: int) -> np.ndarray:
        text = " ".join(tokens[post])
        n_words = IndexedString(text, bow=True).num_words()
        explanation = explainer.explain_instance(
            text, probabilities, labels=(1,), num_features=max(1, n_words)
        )
        indexed = explanation.domain_mapper.indexed_string
        spans = []
        for feature, weight in explanation.as_map()[1]:
            word = indexed.word(feature)
            for begin in indexed.string_position(feature):
                spans.append((int(begin), int(begin) + len(word), float(weight)))
        return scores_on_tokens(tokens[post], spans)

    return _timed(posts, run, Explained())


def explain_leave_one_out(
    model: ServedModel, tokens: Sequence[Sequence[str]], posts: Sequence[int]
) -> Explained:
    """Each token's score drop when it alone is removed; one batch per post."""

    def run(post: int) -> np.ndarray:
        words = list(tokens[post])
        texts = [" ".join(words)]
        texts += [" ".join(words[:i] + words[i + 1 :]) for i in range(len(words))]
        scores = model.score(texts)
        return scores[0] - scores[1:]

    return _timed(posts, run, Explained())
