"""Attributions per vector entry, split among the words of the text as sent.

The occurrences the attribution enumerates must be exactly the n-grams the
transform counted (same columns, same counts, hence the same weighted values,
bit for bit); the words' scores and ``unassigned`` must add up to the
attributions; and the spans must be slices of the original text whatever the
clean-up did to it.
"""

from __future__ import annotations

import random
from collections import Counter

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlcycle.contracts.explanations import Span
from mlcycle.featurization.attribution import attribute_to_words, occurrences
from mlcycle.featurization.config import (
    CharConfig,
    FeatureConfig,
    MetadataConfig,
    PreprocessConfig,
    WordConfig,
)
from mlcycle.featurization.offsets import clean_with_offsets
from mlcycle.featurization.transform import Transform, fit
from mlcycle.featurization.vectors import _values

pytestmark = pytest.mark.unit

WORDS = "you are a great idiot stupid the of and nice ok lol why not".split()
ODD = ["", " ", "a", "!!!", "ÀÉÎ õü ß ﬁ", "日本語 テスト 😀", "x" * 700, "word " * 120, "a\nb\tc"]

OFFSET_CASES = {
    "emoji": "so 😀 happy 👍🏽 🇫🇷 ❤️ you idiot😡😡",
    "emoji with zero-width joiners": "family 👨\u200d👩\u200d👧 and 🏳️\u200d🌈 great",
    "arabic": "أنت غبي جدا you idiot",
    "hebrew": "אתה טיפש great",
    "html entities": "you &amp; me &#39;idiot&#39; &lt;b&gt;great&lt;/b&gt; Caf&eacute;",
    "urls": "see http://a.com/x?y=1 and www.site.xyz/p, you idiot.com/bar",
    "mentions": "@bob you are a great idiot @Alice_1, mail@host ok",
    "zero-width": "i\u200bdiot s\u00adtupid \ufeffnice \u202egreat\u202c",
    "hashtags": "#idiot #great_one c#sharp",
    "mixed": "ＦＵＬＬ ｗｉｄｔｈ ½ naïve Привет ΣΟΦΟΣ",
}
TRANSLITERATED = PreprocessConfig()
SCRIPTS_KEPT = PreprocessConfig(transliterate=False)

CONFIGS = {
    "default": FeatureConfig(),
    "word bigrams": FeatureConfig(word=WordConfig(ngram_max=2, min_count=1)),
    "hashed words": FeatureConfig(
        word=WordConfig(mode="hashed", ngram_max=2, hash_buckets=1000),
        char=CharConfig(ngram_min=3, ngram_max=5, buckets=777),
    ),
    "binary, no norm": FeatureConfig(weighting="binary", normalize="none"),
    "no char n-grams": FeatureConfig(char=CharConfig(enabled=False)),
    "chars only": FeatureConfig(word=WordConfig(enabled=False), char=CharConfig(buckets=64)),
    "scripts kept": FeatureConfig(preprocess=SCRIPTS_KEPT),
    "metadata": FeatureConfig(metadata=MetadataConfig(numeric=("year",), categorical=("kind",))),
}


def texts(seed: int, count: int) -> list[str]:
    """Word salad with repeats, odd characters and lengths from empty to long."""
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        words = [rng.choice(WORDS) for _ in range(rng.choice([0, 1, 2, 5, 12, 40]))]
        if rng.random() < 0.3:
            words.insert(rng.randrange(len(words) + 1), rng.choice(ODD))
        out.append(" ".join(words))
    return out


def metadata(count: int) -> list[dict[str, object] | None]:
    return [
        None if i % 5 == 0 else {"year": 1990 + i % 40, "kind": "abc"[i % 3]} for i in range(count)
    ]


_FITTED: dict[str, Transform] = {}


def fitted(name: str) -> Transform:
    if name not in _FITTED:
        corpus = texts(1, 200) + list(OFFSET_CASES.values())
        _FITTED[name] = fit(corpus, metadata(len(corpus)), CONFIGS[name])
    return _FITTED[name]


def probes() -> list[str]:
    return texts(2, 60) + ODD + list(OFFSET_CASES.values())


def text_part(transform: Transform, columns: np.ndarray) -> np.ndarray:
    return columns < transform.word_dim + transform.char_dim


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_the_occurrences_are_the_rows_n_grams_with_their_counts(name: str) -> None:
    transform = fitted(name)
    items = probes()
    batch = transform.apply(items, metadata(len(items)))
    for i, text in enumerate(items):
        columns, values = batch.row(i)
        found = occurrences(
            transform, clean_with_offsets(text, transform.config.preprocess).cleaned
        )
        made, counts = np.unique(found.columns, return_counts=True)
        text_columns = text_part(transform, columns)
        np.testing.assert_array_equal(made, columns[text_columns])
        # The counts weighed as the transform weighs them give its values, bit for bit.
        weighted = _values(
            np.zeros(len(made), np.int64), made.astype(np.uint32), counts, 1, transform._layout
        )
        np.testing.assert_array_equal(
            weighted.view(np.uint32), values[text_columns].view(np.uint32)
        )
        assert np.all((0 <= found.starts) & (found.starts < found.stops))
        assert np.all(
            found.stops <= len(clean_with_offsets(text, transform.config.preprocess).cleaned)
        )


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_words_and_unassigned_add_up_to_the_attributions(name: str) -> None:
    transform = fitted(name)
    items = probes()
    batch = transform.apply(items, metadata(len(items)))
    rng = np.random.default_rng(3)
    for i, text in enumerate(items):
        columns, _ = batch.row(i)
        attributions = rng.normal(size=len(columns)).astype(np.float32)
        explained = attribute_to_words(transform, text, columns, attributions)
        assert explained.scores.dtype == np.float32
        assert len(explained.scores) == len(explained.words)
        total = float(explained.scores.sum(dtype=np.float64)) + explained.unassigned
        assert total == pytest.approx(float(attributions.sum(dtype=np.float64)), abs=1e-4)
        # Only what no word takes part in is unassigned: the metadata entries here.
        text_columns = text_part(transform, columns)
        assert explained.unassigned == pytest.approx(
            float(attributions[~text_columns].sum(dtype=np.float64)), abs=1e-5
        )
        if not explained.words:
            assert not text_columns.any()


def test_metadata_alone_moves_no_word() -> None:
    transform = fitted("metadata")
    text = "you are a great idiot"
    columns, _ = transform.apply([text], [{"year": 2001, "kind": "b"}]).row(0)
    attributions = np.where(text_part(transform, columns), 0.0, 0.5).astype(np.float32)
    assert (~text_part(transform, columns)).sum() >= 2
    explained = attribute_to_words(transform, text, columns, attributions)
    assert not explained.scores.any()
    assert explained.unassigned == pytest.approx(float(attributions.sum()))


@pytest.mark.parametrize("mode", ["vocab", "hashed"])
def test_with_word_unigrams_only_each_word_gets_its_unigram_shared_among_repeats(
    mode: str,
) -> None:
    config = FeatureConfig(
        word=WordConfig(mode=mode, min_count=2), char=CharConfig(enabled=False), normalize="none"
    )
    corpus = texts(5, 200)
    transform = fit(corpus, None, config)
    assert transform.vocabulary is None or "zebra" not in transform.vocabulary.terms
    for text in ["you are a great idiot, you idiot!!", "zebra idiot zebra", "ÀÉÎ you"]:
        columns, _ = transform.apply([text]).row(0)
        attributions = np.arange(1, len(columns) + 1, dtype=np.float32)
        explained = attribute_to_words(transform, text, columns, attributions)
        repeats = Counter(w.word for w in explained.words)
        for word, score in zip(explained.words, explained.scores.tolist(), strict=True):
            if mode == "vocab" and word.word not in transform.vocabulary.terms:
                assert score == 0.0  # outside the vocabulary: no column, no share
                continue
            column = int(occurrences(transform, word.word).columns[0])
            if mode == "vocab":
                assert column == transform.vocabulary.terms.index(word.word)
            share = attributions[np.searchsorted(columns, column)] / repeats[word.word]
            assert score == pytest.approx(float(share), rel=1e-6)


def reference_scores(cleaned: str, n_range: tuple[int, int]) -> list[float]:
    """Word uni- and bigrams and char n-grams as strings, each occurrence split by hand.

    Every feature's attribution is 1; a feature is its n-gram's text (the buckets
    are wide enough that distinct n-grams of one short text never share one).
    """
    words = cleaned.split(" ") if cleaned else []
    bounds, at = [], 0
    for word in words:
        bounds.append((at, at + len(word)))
        at += len(word) + 1
    found: list[tuple[tuple[str, ...], list[int]]] = [(("w", w), [i]) for i, w in enumerate(words)]
    found += [(("b", *words[i : i + 2]), [i, i + 1]) for i in range(len(words) - 1)]
    padded = f" {cleaned} " if cleaned else ""
    for n in range(n_range[0], n_range[1] + 1):
        for j in range(len(padded) - n + 1):
            inside = [k for k, (b, e) in enumerate(bounds) if b < j - 1 + n and j - 1 < e]
            found.append((("c", padded[j : j + n]), inside))
    repeats = Counter(key for key, _ in found)
    scores = [0.0] * len(words)
    for key, inside in found:
        for k in inside:
            scores[k] += 1 / repeats[key] / len(inside)
    return scores


def test_each_occurrence_is_split_among_the_words_it_overlaps() -> None:
    config = FeatureConfig(
        word=WordConfig(mode="hashed", ngram_max=2),
        char=CharConfig(ngram_min=2, ngram_max=5, buckets=2**23),
        metadata=MetadataConfig(enabled=False),
    )
    transform = fit([], None, config)
    for text in [*texts(6, 30), "a b c", "ab cd ab", "x", *OFFSET_CASES.values()]:
        columns, _ = transform.apply([text]).row(0)
        explained = attribute_to_words(transform, text, columns, np.ones(len(columns)))
        cleaned = clean_with_offsets(text, config.preprocess).cleaned
        expected = reference_scores(cleaned, (2, 5))
        np.testing.assert_allclose(explained.scores, expected, rtol=1e-6, err_msg=text)
        assert explained.unassigned == 0.0


@pytest.mark.parametrize("preprocess", [TRANSLITERATED, SCRIPTS_KEPT], ids=["translit", "kept"])
@pytest.mark.parametrize("name", sorted(OFFSET_CASES))
def test_spans_are_slices_of_the_text_as_sent(name: str, preprocess: PreprocessConfig) -> None:
    transform = fit(texts(1, 50), None, FeatureConfig(preprocess=preprocess))
    text = OFFSET_CASES[name]
    check_spans(transform, text)


def check_spans(transform: Transform, text: str) -> list[Span]:
    columns, _ = transform.apply([text]).row(0)
    attributions = np.linspace(-1, 1, len(columns), dtype=np.float32)
    explained = attribute_to_words(transform, text, columns, attributions)
    spans = explained.spans()
    limit = min(len(text), transform.config.preprocess.max_chars)
    cleaned = clean_with_offsets(text, transform.config.preprocess).cleaned
    assert [w.word for w in explained.words] == (cleaned.split(" ") if cleaned else [])
    for span, score in zip(spans, explained.scores.tolist(), strict=True):
        assert isinstance(span, Span)
        assert 0 <= span.begin < span.end <= limit
        assert span.text == text[span.begin : span.end]
        assert span.score == score
    assert [(s.begin, s.end) for s in spans] == sorted((s.begin, s.end) for s in spans)
    return spans


MIXED = "@bob you&amp;me i\u200bdiot 👨\u200d👩\u200d👧 http://a.com/x أنت"


@pytest.mark.parametrize(
    ("preprocess", "expected"),
    [
        # Transliterated: each emoji of the family is a word of its own (the joiners
        # are dropped), and the Arabic hamza becomes an apostrophe, so a space.
        (TRANSLITERATED, ["you", "me", "i\u200bdiot", "👨", "👩", "👧", "http://a.com/x", "نت"]),
        (SCRIPTS_KEPT, ["you", "me", "i\u200bdiot", "http://a.com/x", "أنت"]),
    ],
    ids=["translit", "kept"],
)
def test_what_the_clean_up_changed_still_points_at_its_source(
    preprocess: PreprocessConfig, expected: list[str]
) -> None:
    transform = fit(texts(1, 50), None, FeatureConfig(preprocess=preprocess))
    assert [s.text for s in check_spans(transform, MIXED)] == expected


def test_a_100_kb_comment_is_explained_within_its_first_max_chars() -> None:
    transform = fitted("default")
    rng = random.Random(7)
    pieces = [*WORDS, "😀", "&amp;", "http://x.com/a", "@bob", "i\u200bdiot", "אתה"]
    text = " ".join(rng.choice(pieces) for _ in range(30_000))[:100_000]
    assert len(text) == 100_000
    spans = check_spans(transform, text)
    assert spans and spans[-1].end <= transform.config.preprocess.max_chars


def test_columns_of_another_text_or_transform_are_refused() -> None:
    transform = fitted("default")
    text = "you are a great idiot"
    columns, _ = transform.apply([text]).row(0)
    ones = np.ones(len(columns), np.float32)
    other, _ = transform.apply(["you are nice"]).row(0)
    with pytest.raises(ValueError, match="not those transform"):
        attribute_to_words(transform, text, other, np.ones(len(other), np.float32))
    # Another transform of the same layout, its vocabulary fitted on other texts.
    small = fit(["idiot idiot you", "you are a great"] * 2, None, FeatureConfig())
    theirs, _ = small.apply([text]).row(0)
    assert small.dim < transform.dim
    with pytest.raises(ValueError, match="not those transform"):
        attribute_to_words(transform, text, theirs, np.ones(len(theirs), np.float32))
    short = fit(texts(1, 50), None, FeatureConfig(preprocess=PreprocessConfig(max_chars=8)))
    cut, _ = short.apply([text]).row(0)
    with pytest.raises(ValueError, match="not those transform"):
        attribute_to_words(transform, text, cut, np.ones(len(cut), np.float32))
    with pytest.raises(ValueError, match="one attribution per column"):
        attribute_to_words(transform, text, columns, ones[:-1])
    with pytest.raises(ValueError, match="sorted, distinct"):
        attribute_to_words(transform, text, columns[::-1], ones)
    with pytest.raises(ValueError, match="sorted, distinct"):
        attribute_to_words(transform, text, np.append(columns, transform.dim), np.append(ones, 1))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from([*WORDS, *ODD, "&amp;", "@x", "www.a.com", "\u200b"]), max_size=20))
def test_generated_texts_conserve_and_reproduce(pieces: list[str]) -> None:
    transform = fitted("word bigrams")
    text = " ".join(pieces)
    columns, _ = transform.apply([text]).row(0)
    attributions = np.linspace(-2, 3, len(columns), dtype=np.float32)
    explained = attribute_to_words(transform, text, columns, attributions)
    total = float(explained.scores.sum(dtype=np.float64)) + explained.unassigned
    assert total == pytest.approx(float(attributions.sum(dtype=np.float64)), abs=1e-4)
    metadata_part = attributions[~text_part(transform, columns)]
    assert explained.unassigned == pytest.approx(float(metadata_part.sum()), abs=1e-6)
