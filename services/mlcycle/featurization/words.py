"""Word uni- and bigram features: terms as 64-bit keys, a fitted vocabulary or hashed buckets.

Terms are never looked up as Python strings at apply time: each word is
hashed by :mod:`mlcycle.featurization.hashing` straight from the code-point array,
a bigram is a hash of its two word hashes, and the vocabulary is a hash
table of term keys (:mod:`mlcycle.featurization.lookup`) probed a whole batch at
a time. The vocabulary is saved as its terms' text (readable, and the keys
are recomputed from it on load). Two different terms sharing a 64-bit key is
possible in principle, at odds of about n**2 / 2**65 for n distinct terms.

Counts are document frequencies (how many texts contain the term), so one
comment repeating a word a thousand times does not buy it a place.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from mlcycle.featurization.config import WordConfig
from mlcycle.featurization.hashing import pair_keys, term_keys, to_buckets, words
from mlcycle.featurization.lookup import KeyTable
from mlcycle.featurization.preprocess import Cleaned


@dataclass(frozen=True)
class Terms:
    """Every term occurrence of a batch: its text, its key and where it is."""

    rows: np.ndarray  # int32
    keys: np.ndarray  # uint64
    starts: np.ndarray  # int64 into Cleaned.codes
    ends: np.ndarray  # int64, exclusive


def batch_terms(batch: Cleaned, ngram_max: int) -> Terms:
    """Unigrams and, with ``ngram_max == 2``, bigrams of adjacent words within one text."""
    found = words(batch)
    if ngram_max < 2 or len(found.keys) < 2:
        return Terms(found.rows, found.keys, found.starts, found.ends)
    same_text = np.flatnonzero(found.rows[1:] == found.rows[:-1])
    return Terms(
        rows=np.concatenate([found.rows, found.rows[same_text]]),
        keys=np.concatenate(
            [found.keys, pair_keys(found.keys[same_text], found.keys[same_text + 1])]
        ),
        starts=np.concatenate([found.starts, found.starts[same_text]]),
        ends=np.concatenate([found.ends, found.ends[same_text + 1]]),
    )


@dataclass(frozen=True, eq=False)
class Vocabulary:
    """Terms in index order, with the table of their keys that finds them."""

    terms: tuple[str, ...]
    doc_counts: tuple[int, ...]
    _table: KeyTable = field(repr=False)

    @classmethod
    def from_terms(cls, terms: Iterable[str], doc_counts: Iterable[int]) -> Vocabulary:
        """Build the lookup table for ``terms`` (index = position in ``terms``)."""
        terms = tuple(terms)
        doc_counts = tuple(int(c) for c in doc_counts)
        if len(doc_counts) != len(terms):
            raise ValueError("one document count per term")
        keys = term_keys(terms)
        if len(np.unique(keys)) != len(keys):
            raise ValueError("vocabulary terms must be distinct")
        return cls(terms, doc_counts, KeyTable(keys))

    def __len__(self) -> int:
        return len(self.terms)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Vocabulary):
            return NotImplemented
        return (self.terms, self.doc_counts) == (other.terms, other.doc_counts)

    def __hash__(self) -> int:
        return hash(self.terms)

    def table_arrays(self) -> tuple[np.ndarray, np.ndarray, int, int]:
        """The lookup table as (keys, index, shift, mask), for compiled lookups."""
        return self._table.arrays()

    def lookup(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(which of ``keys`` are known, their indices)."""
        index = self._table.find(keys)
        known = index >= 0
        return known, index[known]


class VocabularyCounter:
    """Document frequencies of terms over batches, remembering where each key was first seen."""

    def __init__(self, ngram_max: int) -> None:
        self.ngram_max = ngram_max
        self._keys: list[np.ndarray] = []
        self._counts: list[np.ndarray] = []
        # Per batch: its codes, and the first occurrence of each of its keys.
        self._codes: list[np.ndarray] = []
        self._spans: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []

    def add(self, batch: Cleaned) -> None:
        """Count the terms of one pre-processed batch."""
        terms = batch_terms(batch, self.ngram_max)
        if len(terms.keys) == 0:
            return
        # Per text, each key once: a sort by (row, key), then a per-key document count.
        order = np.lexsort((terms.keys, terms.rows))
        keys, rows = terms.keys[order], terms.rows[order]
        new_doc = np.ones(len(keys), bool)
        new_doc[1:] = (keys[1:] != keys[:-1]) | (rows[1:] != rows[:-1])
        uniq, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
        counts = np.bincount(inverse[new_doc], minlength=len(uniq))
        self._keys.append(uniq)
        self._counts.append(counts)
        self._codes.append(batch.codes)
        self._spans.append((uniq, terms.starts[order][first], terms.ends[order][first]))

    def vocabulary(self, config: WordConfig) -> Vocabulary:
        """The ``max_size`` most frequent terms seen in at least ``min_count`` texts.

        Order, and the choice among terms tied at the size limit: decreasing
        count, then the term's text. Only the terms that can make the cut are
        decoded to text.
        """
        if not self._keys:
            return Vocabulary.from_terms((), ())
        all_keys = np.concatenate(self._keys)
        uniq, inverse = np.unique(all_keys, return_inverse=True)
        counts = np.bincount(inverse, weights=np.concatenate(self._counts)).astype(np.int64)
        eligible = np.flatnonzero(counts >= config.min_count)
        if len(eligible) > config.max_size:
            cutoff = np.partition(counts[eligible], len(eligible) - config.max_size)[
                len(eligible) - config.max_size
            ]
            eligible = eligible[counts[eligible] >= cutoff]
        texts = self._term_texts(uniq[eligible])
        ranked = sorted(
            zip(counts[eligible].tolist(), texts, strict=True), key=lambda t: (-t[0], t[1])
        )[: config.max_size]
        return Vocabulary.from_terms((t for _, t in ranked), (c for c, _ in ranked))

    def _term_texts(self, keys: np.ndarray) -> list[str]:
        """The text of each key, read from the first batch that contains it."""
        found: dict[int, str] = {}
        wanted = np.sort(keys)
        for codes, (batch_keys, starts, ends) in zip(self._codes, self._spans, strict=True):
            if len(found) == len(keys):
                break
            pos = np.searchsorted(batch_keys, wanted).clip(0, max(len(batch_keys) - 1, 0))
            hit = batch_keys[pos] == wanted
            for key, start, end in zip(
                wanted[hit].tolist(),
                starts[pos[hit]].tolist(),
                ends[pos[hit]].tolist(),
                strict=True,
            ):
                if key not in found:
                    found[key] = _decode(codes[start:end])
        return [found[k] for k in keys.tolist()]


def _decode(codes: np.ndarray) -> str:
    if codes.dtype == np.uint8:
        return codes.tobytes().decode("ascii")
    return codes.astype(np.uint32).tobytes().decode("utf-32-le")


def word_columns(
    batch: Cleaned, config: WordConfig, vocabulary: Vocabulary | None
) -> list[tuple[np.ndarray, np.ndarray]]:
    """The word group's (rows, cols) per n: unigrams, then bigrams; each sorted by row.

    Repeats are kept (they are counted later, with the char n-grams); words
    outside the vocabulary are dropped.
    """
    found = words(batch)
    sources = [(found.rows, found.keys)]
    if config.ngram_max == 2 and len(found.keys) > 1:
        same = np.flatnonzero(found.rows[1:] == found.rows[:-1])
        sources.append((found.rows[same], pair_keys(found.keys[same], found.keys[same + 1])))
    if config.mode == "hashed":
        return [(rows, to_buckets(keys, config.hash_buckets)) for rows, keys in sources]
    assert vocabulary is not None
    columns = []
    for rows, keys in sources:
        known, cols = vocabulary.lookup(keys)
        columns.append((rows[known], cols))
    return columns
