"""Per-feature attributions of one text, mapped back to the words of the text as sent.

An explanation arrives as one number per entry of the text's sparse vector
(its columns, as :meth:`~mlcycle.featurization.transform.Transform.apply`
gave them). The words a caller sees are those of the original text, while
the entries are n-grams of the cleaned text: a word uni- or bigram, or a
char n-gram that may cover the end of one word, a space and the start of the
next. :func:`attribute_to_words` splits each entry's attribution among words
(decision record 0018):

- equally among the entry's *occurrences*: every n-gram the transform makes
  of the cleaned text, with its column and the range of cleaned characters it
  covers (a repeated word, or two n-grams sharing a hash bucket, make several
  occurrences of one column);
- each occurrence's share equally among the words whose cleaned characters
  it overlaps (a unigram: its word; a bigram: two; a char n-gram: one to three);
- what no word takes part in is ``unassigned``: metadata slots and the dense
  static-embedding block (an n-gram of spaces alone would be too, but the
  clean-up leaves single spaces between words and none at the ends, and the
  spaces that stand for the ends are always next to a word's character).

So the words' scores and ``unassigned`` add up to the sum of the
attributions. The words come from
:func:`~mlcycle.featurization.offsets.word_spans`, with their spans in the
original text.

The occurrences are enumerated with the featurizer's own functions (the word
splitting and hashing, the vocabulary lookup, the char n-gram hashing), so
they are the transform's n-grams by construction; their columns must then be
exactly the text columns given, which catches a vector made by another
transform or of another text. Everything past the clean-up is a few dozen
array operations whatever the text's length.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mlcycle.contracts.explanations import Span
from mlcycle.featurization.hashing import char_ngram_width, fill_char_ngrams, to_buckets
from mlcycle.featurization.offsets import WordSpan, clean_with_offsets, word_spans
from mlcycle.featurization.preprocess import SEP, SPACE, Cleaned
from mlcycle.featurization.transform import Transform
from mlcycle.featurization.words import batch_terms


@dataclass(frozen=True, eq=False)
class WordAttributions:
    """The words of a text (in the featurizer's order) and each one's share of the attributions."""

    words: list[WordSpan]
    scores: np.ndarray  # float32, one per word
    unassigned: float  # the attributions no word takes part in

    def spans(self) -> list[Span]:
        """One :class:`~mlcycle.contracts.explanations.Span` per word, in text order."""
        return [
            Span(begin=word.begin, end=word.end, text=word.text, score=score)
            for word, score in zip(self.words, self.scores.tolist(), strict=True)
        ]


@dataclass(frozen=True)
class Occurrences:
    """Every n-gram a transform makes of one cleaned text, in the transform's index space."""

    columns: np.ndarray  # int64, one per occurrence (repeats allowed, unordered)
    starts: np.ndarray  # int64: the occurrence covers cleaned[start:stop]
    stops: np.ndarray  # int64, exclusive


def occurrences(transform: Transform, cleaned: str) -> Occurrences:
    """The word n-grams and char n-grams ``transform`` makes of the cleaned text ``cleaned``.

    Word n-grams outside a vocabulary make none. A char n-gram's range is cut to
    the text: the spaces standing for the text's ends are not characters of it.
    """
    config = transform.config
    length = len(cleaned)
    codes = np.empty(length + 2, np.uint32)
    codes[0] = codes[-1] = SEP
    codes[1:-1] = np.frombuffer(cleaned.encode("utf-32-le"), np.uint32)
    columns: list[np.ndarray] = []
    starts: list[np.ndarray] = []
    stops: list[np.ndarray] = []
    if config.word.enabled and length:
        batch = Cleaned(codes, np.array([0, length + 1], np.int64), np.zeros(1, bool))
        terms = batch_terms(batch, config.word.ngram_max)
        if config.word.mode == "hashed":
            columns.append(to_buckets(terms.keys, config.word.hash_buckets).astype(np.int64))
            starts.append(terms.starts - 1)
            stops.append(terms.ends - 1)
        else:
            assert transform.vocabulary is not None
            known, index = transform.vocabulary.lookup(terms.keys)
            columns.append(index.astype(np.int64))
            starts.append(terms.starts[known] - 1)
            stops.append(terms.ends[known] - 1)
    if config.char.enabled and length:
        n_range = (config.char.ngram_min, config.char.ngram_max)
        chars = codes.copy()
        chars[0] = chars[-1] = SPACE  # the separators count as spaces, as when vectorizing
        cells = np.empty((1, char_ngram_width(length, n_range)), np.uint32)
        lengths = np.array([length], np.int64)
        seps = np.zeros(1, np.int64)
        fill_char_ngrams(
            cells, chars, seps, lengths, n_range, config.char.buckets, transform.word_dim
        )
        # Row layout: for each n in turn, the windows starting at each code position.
        sizes = np.arange(n_range[0], n_range[1] + 1)
        windows = np.maximum(length + 3 - sizes, 0)
        first = np.repeat(np.cumsum(windows) - windows, windows)
        begin = np.arange(len(first)) - first - 1  # code position - 1: into the cleaned text
        columns.append(cells[0].astype(np.int64))
        starts.append(np.maximum(begin, 0))
        stops.append(np.minimum(begin + np.repeat(sizes, windows), length))
    if not columns:
        empty = np.empty(0, np.int64)
        return Occurrences(empty, empty, empty)
    return Occurrences(np.concatenate(columns), np.concatenate(starts), np.concatenate(stops))


def attribute_to_words(
    transform: Transform, text: str, columns: np.ndarray, attributions: np.ndarray
) -> WordAttributions:
    """Split the attributions of a text's vector entries among the words of ``text``.

    ``columns`` is the text's row as ``transform.apply([text])`` gives it (sorted,
    distinct; metadata and static-embedding columns included or not) and
    ``attributions`` one number per column. A :class:`ValueError` when they are
    not of one length, or the columns are not the ones ``transform`` makes of this
    text (another transform's, another text's).
    """
    columns = np.asarray(columns)
    attributions = np.asarray(attributions, np.float64)
    if columns.ndim != 1 or attributions.shape != columns.shape:
        raise ValueError(
            f"one attribution per column is needed: {attributions.shape} attributions "
            f"for {columns.shape} columns"
        )
    columns = columns.astype(np.int64, copy=False)
    if len(columns) and (
        columns[0] < 0 or columns[-1] >= transform.dim or np.any(columns[1:] <= columns[:-1])
    ):
        raise ValueError(
            f"columns must be sorted, distinct and within transform {transform.version}'s "
            f"width {transform.dim}"
        )
    aligned = clean_with_offsets(text, transform.config.preprocess)
    words = word_spans(aligned)
    found = occurrences(transform, aligned.cleaned)
    made, which, counts = np.unique(found.columns, return_inverse=True, return_counts=True)
    text_dim = transform.word_dim + transform.char_dim
    in_text = columns < text_dim
    given = columns[in_text]
    if not np.array_equal(made, given):
        missing = np.setdiff1d(made, given, assume_unique=True)
        extra = np.setdiff1d(given, made, assume_unique=True)
        raise ValueError(
            f"the columns are not those transform {transform.version} makes of this text: "
            f"{len(missing)} of its {len(made)} n-gram columns are missing and {len(extra)} "
            "given are not among them (another transform, or another text?)"
        )
    # Each occurrence's share of its column's attribution, then split among its words.
    share = (attributions[in_text] / counts)[which]
    word_starts = np.fromiter((w.start for w in words), np.int64, len(words))
    word_stops = np.fromiter((w.stop for w in words), np.int64, len(words))
    first = np.searchsorted(word_stops, found.starts, side="right")
    spanned = np.searchsorted(word_starts, found.stops, side="left") - first
    scores = np.zeros(len(words), np.float64)
    has_words = spanned > 0
    per_word = share[has_words] / spanned[has_words]
    first, spanned = first[has_words], spanned[has_words]
    for step in range(int(spanned.max()) if len(spanned) else 0):
        more = spanned > step
        scores += np.bincount(first[more] + step, per_word[more], minlength=len(words))
    unassigned = float(attributions[~in_text].sum() + share[~has_words].sum())
    return WordAttributions(words=words, scores=scores.astype(np.float32), unassigned=unassigned)
