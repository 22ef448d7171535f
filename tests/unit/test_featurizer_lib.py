"""The featurization library: pre-processing, hashing, vocabularies, metadata, artifacts.

The golden test pins exact output for a fixed corpus and config: any change to
what a text turns into (pre-processing, hashing, weighting, layout) fails it,
because models trained on the old vectors would silently get different inputs.
Such a change must come with a new ``FORMAT`` and new pins.
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import time
import unicodedata
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from mlcycle.common.errors import InvalidInput, NotFound
from mlcycle.featurization.config import (
    CharConfig,
    FeatureConfig,
    MetadataConfig,
    PreprocessConfig,
    WordConfig,
)
from mlcycle.featurization.lookup import KeyTable
from mlcycle.featurization.preprocess import FORMAT_RE, preprocess, preprocess_batch
from mlcycle.featurization.sparse import SparseBatch
from mlcycle.featurization.transform import Transform, fit, list_versions

NO_TRANSLIT = PreprocessConfig(transliterate=False)


def clean(text: str, config: PreprocessConfig | None = None) -> str:
    return preprocess(text, config)[0]


def check_invariants(batch: SparseBatch) -> None:
    """CSR well-formed: dtypes, shapes, sorted distinct indices within each row, in range."""
    assert batch.indptr.dtype == np.int64 and batch.indices.dtype == np.int32
    assert batch.values.dtype == np.float32 and batch.truncated.dtype == bool
    assert batch.indptr[0] == 0 and batch.indptr[-1] == len(batch.indices) == len(batch.values)
    assert len(batch.truncated) == len(batch)
    assert np.all(np.diff(batch.indptr) >= 0)
    for i in range(len(batch)):
        indices, _ = batch.row(i)
        assert np.all(np.diff(indices) > 0)
        assert len(indices) == 0 or (indices[0] >= 0 and indices[-1] < batch.dim)


# -- pre-processing ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Visit http://example.com/a?b=1&c=2 now", "visit __URL__ now"),
        ("HTTPS://WWW.Example.COM/Path", "__URL__"),
        ("see www.foo.org/x.", "see __URL__"),
        ("ftp://files.net/a.zip", "__URL__"),
        ("mail me: john.doe@example.com", "mail me __URL__"),
        ("bare example.co.uk/page?x=1 ok", "bare __URL__ ok"),
        ("(https://t.co/abc123)", "__URL__"),
        ("medium.com/@user/post#frag", "__URL__"),
        ("two http://a.io and http://b.io", "two __URL__ and __URL__"),
        ("end.Start e.g. this", "end start e g this"),
        ("x__URL__y __url__", "x url y url"),  # the token cannot be forged by the input
    ],
)
def test_urls_become_one_token(text: str, expected: str) -> None:
    assert clean(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Tom &amp; Jerry &#39;s &quot;x&quot; &lt;b&gt;", "tom jerry s x b"),
        ("&amp;lt; is escaped twice", "lt is escaped twice"),
        ("@bob hi @alice_1! mail@me", "hi mail me"),
        ("#Great #day c#", "great day c"),
        ("snake_case __init__", "snake case init"),
        ("Ünïcödé naïve CAFÉ", "unicode naive cafe"),
        ("ｈｅｌｌｏ ﬁne", "hello fine"),  # NFKC: full-width letters, ligature
        ("i\u200bdi\u200cot\ufeff", "idiot"),  # zero-width characters inside a word
        ("\u202eabc\u202c \u00adsoft", "abc soft"),  # bidi override, soft hyphen
        ("a\tb\nc\x00d\x01e\r\nf", "a b c d e f"),  # control characters split words
        ("I 😀 you 👍🏽", "i grinning you thumbsup"),  # emoji transliterate to their names
        ("Привет мир", "privet mir"),
        ("مرحبا بالعالم", "mrhb bl lm"),
        ("", ""),
        ("   \n\t ", ""),
        ("?!... ---", ""),
    ],
)
def test_preprocess_default(text: str, expected: str) -> None:
    assert clean(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("مرحبا بالعالم!", "مرحبا بالعالم"),
        ("مُحَمَّد", "مُحَمَّد"),  # harakat are combining marks: kept inside the word
        ("שָׁלוֹם, עולם", "שָׁלוֹם עולם"),
        ("नमस्ते दुनिया", "नमस्ते दुनिया"),  # vowel signs do not split words
        ("I 😀 you", "i you"),  # emoji are not letters
        ("CAFÉ \u200fمرحبا\u200f", "café مرحبا"),  # RTL marks dropped, letters lower-cased
    ],
)
def test_preprocess_without_transliteration_keeps_scripts(text: str, expected: str) -> None:
    assert clean(text, NO_TRANSLIT) == expected


def test_each_step_can_be_turned_off() -> None:
    text = "Hi @Bob, see HTTP://x.io #Tag &amp; Café"
    assert clean(text) == "hi see __URL__ tag cafe"
    assert clean(text, PreprocessConfig(urls="keep")) == "hi see http x io tag cafe"
    assert clean(text, PreprocessConfig(urls="remove")) == "hi see tag cafe"
    assert clean(text, PreprocessConfig(mentions="keep")) == "hi bob see __URL__ tag cafe"
    assert clean(text, PreprocessConfig(hashtags="remove")) == "hi see __URL__ cafe"
    assert clean(text, PreprocessConfig(lowercase=False)) == "Hi see __URL__ Tag Cafe"
    assert clean(text, PreprocessConfig(html_unescape=False)) == "hi see __URL__ tag amp cafe"
    assert clean(text, PreprocessConfig(alnum_only=False)) == "hi , see __URL__ tag & cafe"
    assert clean("ｈｉ", PreprocessConfig(normalize="none", transliterate=False)) == "ｈｉ"
    assert clean("a\u200bb", PreprocessConfig(strip_invisible=False, transliterate=False)) == "a b"


def test_truncation_happens_first_and_is_reported() -> None:
    config = PreprocessConfig(max_chars=10)
    assert preprocess("0123456789", config) == ("0123456789", False)
    assert preprocess("0123456789abc", config) == ("0123456789", True)
    # A URL cut by the limit is whatever is left of it.
    assert preprocess("abc http://example.com", config) == ("abc http", True)


def test_huge_comment_costs_no_more_than_max_chars() -> None:
    huge = ("idiot 😀 " * 15_000)[:100_000]  # 100 kB, non-ASCII throughout
    started = time.perf_counter()
    text, truncated = preprocess(huge)
    elapsed = time.perf_counter() - started
    assert truncated
    assert text.startswith("idiot grinning idiot") and len(text) < 10_000
    assert elapsed < 0.5
    full, truncated = preprocess(huge, PreprocessConfig(max_chars=200_000))
    assert not truncated and full.count("idiot") == huge.count("idiot")


def test_batch_equals_one_by_one() -> None:
    texts = [
        "plain ascii",
        "line\nbreaks\ninside",
        "",
        "mark\x01 char",
        "Ünïcödé www.x.com",
        "   ",
        "@only",
        "end",
    ]
    for config in (PreprocessConfig(), NO_TRANSLIT, PreprocessConfig(alnum_only=False)):
        batch, truncated = preprocess_batch(texts, config)
        assert batch == [clean(t, config) for t in texts]
        assert not truncated.any()


def test_format_character_list_covers_unicode_cf() -> None:
    missing = [
        hex(code)
        for code in range(sys.maxunicode + 1)
        if unicodedata.category(chr(code)) == "Cf" and not FORMAT_RE.fullmatch(chr(code))
    ]
    assert missing == []


# -- transform: golden vectors and determinism ---------------------------------------------

CORPUS = [
    "You are a wonderful editor, thanks for the fix!",
    "You are an idiot. Stop vandalising this page!!",
    "Thanks for the source: http://example.org/ref?id=1",
    "@admin please block this idiot #vandalism",
    "Café au lait &amp; croissants 😀",
    "the the the page page",
]
CORPUS_META = [
    {"year": 2010, "ns": "user"},
    {"year": 2012, "ns": "article"},
    {"year": 2014, "ns": "article"},
    {"ns": "user"},
    {"year": 2016},
    None,
]
GOLDEN_CONFIG = FeatureConfig(
    word=WordConfig(ngram_max=2, min_count=2, max_size=8),
    char=CharConfig(ngram_min=2, ngram_max=3, buckets=64),
    metadata=MetadataConfig(max_categories=1),
)
PROBES = ["You idiot, thanks!", "", "ÉDITOR the page"]
PROBE_META = [{"year": 2015, "ns": "user"}, None, {"year": "x", "ns": "talk"}]
# The default config is part of the version: it moved when corpus-naming metadata fields
# joined the excluded ones.
GOLDEN_VERSION = "tf-a831557169199a16"
GOLDEN_VOCABULARY = ("the", "are", "for", "for the", "idiot", "page", "thanks", "thanks for")
W, A, B, C, E, F, G = 0.707107, 0.163663, 0.277105, 0.166384, 0.281713, 0.397042, 0.894427
GOLDEN_ROWS = [
    (
        [4, 6, 9, 10, 11, 14, 19, 25, 27, 30, 33, 38, 40, 42, 43, 45, 46, 52, 54, 55, 56, 59]
        + [60, 62, 63, 64, 65, 68, 69, 71, 72, 75],
        [W, W, A, B, B, A, A, B, B, A, A, A, A, A, A, A, A, A, A, A, A, A, A, A, B, A, A, A]
        + [A, A, G, 1.0],
    ),
    ([73, 76], [1.0, 1.0]),
    (
        [0, 5, 9, 10, 11, 27, 28, 30, 31, 33, 37, 38, 40, 43, 45, 46, 47, 53, 55, 57, 62, 63]
        + [68, 69, 71, 73, 75],
        [W, W, C, C, E, C, C, C, F, C, C, C, C, C, C, C, C, C, C, C, E, C, F, C, C, 1.0, 1.0],
    ),
]


def golden_transform() -> Transform:
    return fit(CORPUS, CORPUS_META, GOLDEN_CONFIG)


def test_golden_vectors() -> None:
    transform = golden_transform()
    assert transform.version == GOLDEN_VERSION
    assert transform.vocabulary is not None
    assert transform.vocabulary.terms == GOLDEN_VOCABULARY
    assert transform.dim == 8 + 64 + 5  # words | chars | year, year=missing, ns x 3
    batch = transform.apply(PROBES, PROBE_META)
    check_invariants(batch)
    for i, (indices, values) in enumerate(GOLDEN_ROWS):
        got_indices, got_values = batch.row(i)
        assert got_indices.tolist() == indices, f"row {i}"
        np.testing.assert_allclose(got_values, values, atol=2e-6, err_msg=f"row {i}")


DETERMINISM_SCRIPT = """
import sys
sys.path.insert(0, {tests!r})
from test_featurizer_lib import CORPUS, CORPUS_META, PROBES, PROBE_META, golden_transform
t = golden_transform()
b = t.apply(PROBES * 50, PROBE_META * 50)
sys.stdout.buffer.write(t.version.encode() + b.indptr.tobytes() + b.indices.tobytes()
                        + b.values.tobytes())
"""


@pytest.mark.integration
def test_same_bytes_in_fresh_processes_whatever_the_hash_seed() -> None:
    script = DETERMINISM_SCRIPT.format(tests=str(Path(__file__).parent))
    outputs = []
    for seed in ("1", "2", "random"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        result = subprocess.run(
            [sys.executable, "-c", script], env=env, capture_output=True, check=True, timeout=120
        )
        outputs.append(result.stdout)
    t = golden_transform()
    b = t.apply(PROBES * 50, PROBE_META * 50)
    here = t.version.encode() + b.indptr.tobytes() + b.indices.tobytes() + b.values.tobytes()
    assert outputs[0] == outputs[1] == outputs[2] == here


def test_a_text_gets_the_same_row_alone_or_in_any_batch() -> None:
    # Many texts of mixed lengths: several internal chunks and length bins.
    rng = np.random.default_rng(3)
    words = "you idiot page edit thanks source café 😀 http://x.io @bob #tag".split()
    texts = [" ".join(rng.choice(words, size=rng.integers(0, 120))) for _ in range(1500)]
    texts += ["x" * 3000] * 100
    meta = [{"year": int(y)} for y in rng.integers(2000, 2020, size=len(texts))]
    transform = fit(texts, meta, FeatureConfig(word=WordConfig(ngram_max=2, min_count=1)))
    batch = transform.apply(texts, meta)
    check_invariants(batch)
    for i in [0, 1, 2, 777, 1499, 1500, 1599]:
        alone = transform.apply([texts[i]], [meta[i]])
        np.testing.assert_array_equal(alone.row(0)[0], batch.row(i)[0])
        np.testing.assert_array_equal(alone.row(0)[1], batch.row(i)[1])


def test_groups_are_unit_length_and_weighting_options() -> None:
    config = FeatureConfig(word=WordConfig(min_count=1), metadata=MetadataConfig(enabled=False))
    transform = fit(CORPUS, None, config)
    batch = transform.apply(["the the the page"])
    indices, values = batch.row(0)
    words = indices < transform.word_dim
    assert np.isclose(np.linalg.norm(values[words]), 1.0)
    assert np.isclose(np.linalg.norm(values[~words]), 1.0)
    # log count: "the" three times weighs 1 + ln 3 against "page" once.
    the, page = transform.vocabulary.terms.index("the"), transform.vocabulary.terms.index("page")
    ratio = values[indices == the][0] / values[indices == page][0]
    assert np.isclose(ratio, 1 + np.log(3))
    binary = fit(CORPUS, None, config.model_copy(update={"weighting": "binary"}))
    raw = fit(CORPUS, None, config.model_copy(update={"normalize": "none"}))
    assert set(binary.apply(["the the the page"]).row(0)[1][:2].tolist()) == {np.float32(0.5**0.5)}
    raw_indices, raw_values = raw.apply(["the the the page"]).row(0)
    word_values = raw_values[raw_indices < raw.word_dim]
    assert np.allclose(sorted(word_values), [1.0, 1 + np.log(3)])
    assert raw_values.max() == np.float32(1 + np.log(4))  # "e " four times (the x3, page)


# -- vocabulary and hashed words ------------------------------------------------------------


def test_vocabulary_min_count_max_size_and_document_frequency() -> None:
    texts = ["spam spam spam spam", "alpha beta", "beta gamma", "gamma beta delta", "alpha"]
    no_chars = CharConfig(enabled=False)
    t = fit(texts, config=FeatureConfig(word=WordConfig(min_count=2), char=no_chars))
    # Counts are texts containing the term: "spam" is in one text, however often.
    assert t.vocabulary.terms == ("beta", "alpha", "gamma")
    assert t.vocabulary.doc_counts == (3, 2, 2)
    t = fit(texts, config=FeatureConfig(word=WordConfig(min_count=1, max_size=2), char=no_chars))
    assert t.vocabulary.terms == ("beta", "alpha")  # ties at the limit: by text
    assert t.dim == 2
    bigrams = FeatureConfig(word=WordConfig(ngram_max=2, min_count=2), char=no_chars)
    t = fit(texts, config=bigrams)
    assert "gamma beta" not in t.vocabulary.terms
    t = fit(texts * 2, config=bigrams)
    assert {"spam spam", "gamma beta", "alpha beta"} <= set(t.vocabulary.terms)
    batch = t.apply(["gamma beta unknown"])
    indices, _ = batch.row(0)
    names = {t.vocabulary.terms[i] for i in indices}
    assert names == {"gamma", "beta", "gamma beta"}


def test_hashed_words() -> None:
    config = FeatureConfig(
        word=WordConfig(mode="hashed", ngram_max=2, hash_buckets=1024),
        char=CharConfig(enabled=False),
    )
    t = fit([], config=config)
    assert t.vocabulary is None and t.dim == 1024
    batch = t.apply(["idiot", "you idiot", "idiot you", "IDIOT!"])
    rows = [set(batch.row(i)[0].tolist()) for i in range(4)]
    assert len(rows[0]) == 1 and rows[0] < rows[1] and rows[0] < rows[2]
    assert rows[1] != rows[2]  # bigrams are ordered
    assert rows[3] == rows[0]


def test_char_ngram_range_and_buckets() -> None:
    config = FeatureConfig(word=WordConfig(enabled=False), char=CharConfig(ngram_max=5, buckets=97))
    t = fit([], config=config)
    batch = t.apply(["ab", "abcdef", ""])
    check_invariants(batch)
    assert t.dim == 97
    # " ab " has 3 + 2 + 1 n-grams of 2..4 chars and none of 5.
    assert 1 <= len(batch.row(0)[0]) <= 6
    assert len(batch.row(2)[0]) == 0
    with pytest.raises(ValidationError):
        CharConfig(ngram_min=4, ngram_max=3)
    with pytest.raises(ValidationError):
        CharConfig(ngram_min=1)
    with pytest.raises(ValidationError):
        FeatureConfig(chars=CharConfig())


# -- metadata -------------------------------------------------------------------------------


def test_metadata_missing_wrong_type_and_unknown_values() -> None:
    meta = [
        {"year": 2000, "ns": "user", "score": 1.5, "logged_in": True},
        {"year": 2002, "ns": "article", "score": 2.5, "logged_in": False},
        {"year": 2004, "ns": "article", "logged_in": True, "tags": ["a"]},
    ]
    t = fit(["a", "b", "c"], meta, FeatureConfig(char=CharConfig(enabled=False)))
    assert [f.name for f in t.metadata.numeric] == ["score", "year"]
    assert [c.name for c in t.metadata.categorical] == ["logged_in", "ns"]
    names = t.metadata.slot_names()
    offset = t.word_dim + t.char_dim

    def slots(record: dict | None) -> dict[str, float]:
        indices, values = t.apply(["a"], [record]).row(0)
        keep = indices >= offset
        return {
            names[i - offset]: float(v) for i, v in zip(indices[keep], values[keep], strict=True)
        }

    full = slots({"year": 2004, "ns": "user", "score": 2.5, "logged_in": False})
    assert full == pytest.approx(
        {"year": 1.224745, "score": 1.0, "ns=user": 1.0, "logged_in=false": 1.0}, rel=1e-5
    )
    bad = slots({"year": "2004", "ns": ["user"], "score": float("nan"), "logged_in": None})
    assert bad == {
        "year=missing": 1.0,
        "score=missing": 1.0,
        "ns=<missing>": 1.0,
        "logged_in=<missing>": 1.0,
    }
    assert slots(None) == bad
    assert slots({"year": 10**400, "ns": "talk", "score": True})["ns=<other>"] == 1.0
    assert slots({"year": 10**400})["year=missing"] == 1.0
    assert slots({"year": 3000})["year"] == 5.0  # clipped
    with pytest.raises(InvalidInput) as caught:
        t.apply(["a"], [{"year": 2000, "browser": "x", "tags": []}], unknown_fields="error")
    assert "browser" in caught.value.message and "tags" in caught.value.message
    assert len(t.apply(["a"], [{"browser": "x"}])) == 1  # "ignore" is the default


def test_metadata_explicit_fields_and_exclusions() -> None:
    meta = [{"year": 2001, "split": "train", "true_toxicity": 1, "id": "a"}] * 3
    t = fit(["x"] * 3, meta, FeatureConfig(metadata=MetadataConfig(exclude=("id",))))
    assert t.metadata.fields == {"year", "split", "true_toxicity"}
    t = fit(["x"] * 3, meta)  # by default, label-like fields are left out
    assert t.metadata.fields == {"year", "id"}
    config = MetadataConfig(numeric=("year",), categorical=("id",), max_categories=5)
    t = fit(["x"] * 3, meta, FeatureConfig(metadata=config))
    assert [f.name for f in t.metadata.numeric] == ["year"]
    assert t.metadata.categorical[0].categories == ("a",)
    with pytest.raises(ValidationError):
        MetadataConfig(numeric=("a",), categorical=("a",))
    with pytest.raises(InvalidInput):
        t.apply(["x", "y"], [{}])


# -- inputs and edge cases ------------------------------------------------------------------


def test_empty_inputs() -> None:
    t = golden_transform()
    batch = t.apply([])
    assert len(batch) == 0 and batch.indptr.tolist() == [0] and batch.dim == t.dim
    check_invariants(batch)
    batch = t.apply(["", "   ", "!!!"])
    assert len(batch) == 3
    for i in range(3):  # no text features; only the metadata "missing" slots
        assert batch.row(i)[0].tolist() == [73, 76]
    batch = t.apply([""] * 3, [{}] * 3)
    assert batch.row(2)[0].tolist() == [73, 76]
    empty_fit = fit([], None, GOLDEN_CONFIG)
    assert empty_fit.vocabulary is not None and len(empty_fit.vocabulary) == 0
    assert len(empty_fit.apply(["hello"]).row(0)[0]) > 0


def test_bad_inputs_are_invalid_input() -> None:
    t = golden_transform()
    with pytest.raises(InvalidInput):
        t.apply("one string")  # type: ignore[arg-type]
    with pytest.raises(InvalidInput):
        t.apply(["ok", None])  # type: ignore[list-item]
    with pytest.raises(InvalidInput):
        t.apply(["ok"], ["not a mapping"])  # type: ignore[list-item]


def test_truncated_flag_and_features_of_the_kept_part() -> None:
    config = GOLDEN_CONFIG.model_copy(update={"preprocess": PreprocessConfig(max_chars=20)})
    t = fit(CORPUS, CORPUS_META, config)
    long = "you are an idiot " * 10
    batch = t.apply([long, long[:20], "short"])
    assert batch.truncated.tolist() == [True, False, False]
    np.testing.assert_array_equal(batch.row(0)[0], batch.row(1)[0])
    assert t.fitted_on["truncated"] == sum(len(x) > 20 for x in CORPUS)


def test_lone_surrogates_do_not_crash() -> None:
    for config in (PreprocessConfig(), NO_TRANSLIT):
        t = fit(["a"], config=FeatureConfig(preprocess=config))
        assert len(t.apply(["bad \ud800 text \udfff", "ok"])) == 2
    assert clean("x\ud800y", NO_TRANSLIT) == "x y"
    assert clean("x\ud800y") == "xy"


def test_key_table_finds_every_key_whatever_their_spread() -> None:
    rng = np.random.default_rng(5)
    for keys in (
        np.arange(5000, dtype=np.uint64),  # small, sequential: no spread in the top bits
        np.arange(5000, dtype=np.uint64) << np.uint64(40),
        np.unique(rng.integers(0, 2**63, 20_000, dtype=np.uint64)),
        np.empty(0, np.uint64),
    ):
        table = KeyTable(keys)
        np.testing.assert_array_equal(table.find(keys), np.arange(len(keys)))
        others = np.setdiff1d(rng.integers(0, 2**63, 1000, dtype=np.uint64), keys)
        assert (table.find(others) == -1).all()


def test_dense_view_matches_rows() -> None:
    t = golden_transform()
    batch = t.apply(PROBES, PROBE_META)
    dense = batch.to_dense()
    assert dense.shape == (3, t.dim)
    for i in range(3):
        indices, values = batch.row(i)
        np.testing.assert_array_equal(np.flatnonzero(dense[i]), indices)
        np.testing.assert_array_equal(dense[i, indices], values)
    with pytest.raises(IndexError):
        batch.row(3)


# -- artifacts ------------------------------------------------------------------------------


def test_save_load_round_trip(tmp_path: Path) -> None:
    t = golden_transform()
    path = t.save(tmp_path)
    assert path == tmp_path / "transforms" / f"{t.version}.json.gz"
    assert list_versions(tmp_path) == [t.version]
    mtime = path.stat().st_mtime_ns
    assert t.save(tmp_path) == path and path.stat().st_mtime_ns == mtime  # idempotent
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".")]  # no temp left
    loaded = Transform.load(tmp_path, t.version)
    assert loaded == t and loaded.to_dict() == t.to_dict()
    assert Transform.from_dict(json.loads(json.dumps(t.to_dict()))) == t
    a, b = t.apply(PROBES, PROBE_META), loaded.apply(PROBES, PROBE_META)
    for name in ("indptr", "indices", "values", "truncated"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    described = loaded.describe()
    json.dumps(described)
    assert described["version"] == t.version
    groups = described["groups"]
    assert groups["char"] == {"offset": 8, "dim": 64, "ngram_range": [2, 3]}
    assert groups["word"]["vocabulary_size"] == 8 and groups["metadata"]["offset"] == 72
    assert described["fitted_on"] == {"texts": 6, "truncated": 0, "metadata_records": 5}


def test_created_at_is_not_part_of_the_version() -> None:
    d = golden_transform().to_dict()
    d["created_at"] = "1999-01-01T00:00:00+00:00"
    assert Transform.from_dict(d).version == GOLDEN_VERSION


def test_tampered_artifact_is_refused(tmp_path: Path) -> None:
    t = golden_transform()
    path = t.save(tmp_path)
    data = json.loads(gzip.decompress(path.read_bytes()))
    data["vocabulary"]["terms"][0] = "nice"
    path.write_bytes(gzip.compress(json.dumps(data).encode()))
    with pytest.raises(InvalidInput, match="modified"):
        Transform.load(tmp_path, t.version)
    d = t.to_dict()
    d["metadata"]["numeric"][0]["mean"] += 1.0
    with pytest.raises(InvalidInput):
        Transform.from_dict(d)
    d = t.to_dict()
    d["config"]["char"]["buckets"] = 128
    with pytest.raises(InvalidInput):
        Transform.from_dict(d)
    d = t.to_dict()
    del d["vocabulary"]
    with pytest.raises(InvalidInput):
        Transform.from_dict(d)
    path.write_bytes(b"not gzip")
    with pytest.raises(InvalidInput):
        Transform.load(tmp_path, t.version)


def test_missing_version_is_not_found(tmp_path: Path) -> None:
    assert list_versions(tmp_path) == []
    with pytest.raises(NotFound, match="tf-0000000000000000"):
        Transform.load(tmp_path, "tf-0000000000000000")
    with pytest.raises(NotFound):
        Transform.load(tmp_path, "../../etc/passwd")
    (tmp_path / "transforms").mkdir()
    (tmp_path / "transforms" / "notes.json.gz").write_bytes(b"")
    assert list_versions(tmp_path) == []


def test_transform_is_immutable() -> None:
    t = golden_transform()
    with pytest.raises(AttributeError):
        t.version = "tf-x"  # type: ignore[misc]
    with pytest.raises(ValidationError):
        t.config.char.buckets = 3  # type: ignore[misc]
