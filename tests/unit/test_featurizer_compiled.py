"""The compiled vectorizer against the numpy one it replaces: the same bits, under every layout.

:func:`mlcycle.featurization.vectors.vectorize` is the array-at-a-time statement of
the featurization; :func:`mlcycle.featurization.compiled.vectorize_compiled` is
what transforms run. Any difference in an index or in one bit of a value would
let training and serving (or two versions of mlcycle) disagree on a text.
"""

from __future__ import annotations

import random

import numpy as np
import pytest

from mlcycle.featurization.config import CharConfig, FeatureConfig, WordConfig
from mlcycle.featurization.preprocess import _collapse_spaces, clean_batch
from mlcycle.featurization.sparse import CsrBuilder, SparseBatch
from mlcycle.featurization.transform import Transform, fit
from mlcycle.featurization.vectors import vectorize
from mlcycle.featurization.words import word_columns

WORDS = "you are a great idiot stupid the of and nice ok lol why not".split()
ODD = ["", " ", "a", "!!!", "ÀÉÎ õü ß ﬁ", "日本語 テスト 😀", "x" * 700, "word " * 120, "a\nb\tc"]


def texts(seed: int, count: int) -> list[str]:
    """Word salad with repeats, odd characters and lengths from empty to long.

    Rows from a handful of cells to a few thousand, so both of the compiled sort's
    paths (a comparison sort for short rows, radix passes for long ones) are compared.
    """
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        n = rng.choice([0, 1, 2, 5, 12, 40, 150])
        words = [rng.choice(WORDS) for _ in range(n)]
        if rng.random() < 0.2:
            words.append(rng.choice(ODD))
        out.append(" ".join(words))
    return out + ODD


def metadata(count: int) -> list[dict[str, object] | None]:
    return [
        None if i % 7 == 0 else {"year": 1990 + i % 40, "kind": "abcd"[i % 4], "n": i % 3}
        for i in range(count)
    ]


def reference(transform: Transform, items: list[str], meta: list | None) -> SparseBatch:
    """The numpy path: clean, word columns, metadata, vectorize."""
    out = CsrBuilder(transform.dim, 16)
    batch = clean_batch(items, transform.config.preprocess)
    words = []
    if transform.config.word.enabled:
        words = word_columns(batch, transform.config.word, transform.vocabulary)
    slots, values = transform.metadata.encode(meta, len(items))
    vectorize(batch, transform._layout, words, slots, values, transform._slot_fields, out)
    return out.build()


CONFIGS = {
    "default": FeatureConfig(),
    "bigrams, binary, no norm": FeatureConfig(
        word=WordConfig(ngram_max=2, min_count=1),
        weighting="binary",
        normalize="none",
    ),
    "hashed words, odd buckets": FeatureConfig(
        word=WordConfig(mode="hashed", ngram_max=2, hash_buckets=1000),
        char=CharConfig(ngram_min=3, ngram_max=5, buckets=777),
    ),
    "hashed words, power of two": FeatureConfig(
        word=WordConfig(mode="hashed", hash_buckets=1024),
        char=CharConfig(ngram_min=2, ngram_max=2, buckets=64),
    ),
    "chars only, wide buckets": FeatureConfig(
        word=WordConfig(enabled=False), char=CharConfig(buckets=2**23 + 5)
    ),
    "words only": FeatureConfig(char=CharConfig(enabled=False), normalize="none"),
}


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_compiled_rows_are_the_numpy_rows_bit_for_bit(name: str) -> None:
    corpus = texts(1, 300)
    transform = fit(corpus, metadata(len(corpus)), CONFIGS[name])
    probes = texts(2, 200)
    meta = metadata(len(probes))
    got = transform.apply(probes, meta)
    want = reference(transform, probes, meta)
    assert got.indptr.tolist() == want.indptr.tolist()
    np.testing.assert_array_equal(got.indices, want.indices)
    np.testing.assert_array_equal(got.values.view(np.uint32), want.values.view(np.uint32))


def test_a_row_is_the_same_alone_as_in_a_batch() -> None:
    corpus = texts(3, 200)
    transform = fit(corpus, None, FeatureConfig())
    batch = transform.apply(corpus)
    for i in (0, 1, 17, len(corpus) - 1):
        alone = transform.apply([corpus[i]])
        np.testing.assert_array_equal(alone.row(0)[0], batch.row(i)[0])
        np.testing.assert_array_equal(alone.row(0)[1], batch.row(i)[1])


@pytest.mark.parametrize("dtype", [np.uint8, np.uint32])
def test_spaces_collapse_to_one_between_words_and_none_at_the_ends(dtype: type) -> None:
    rng = random.Random(4)
    for _ in range(300):
        text = "\n" + "".join(rng.choice(" \nab") for _ in range(rng.randrange(40))) + "\n"
        codes = np.frombuffer(text.encode("utf-32-le"), np.uint32).astype(dtype)
        got = _collapse_spaces(codes).astype(np.uint32).tobytes().decode("utf-32-le")
        want = "\n".join(" ".join(part.split()) for part in text.split("\n"))
        assert got == want, repr(text)
        assert _collapse_spaces(codes).dtype == dtype
