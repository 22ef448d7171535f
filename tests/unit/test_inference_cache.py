"""Score-cache keys: normalization that never changes a vector, and what the key depends on."""

from __future__ import annotations

import asyncio
import socket
import time

import numpy as np
import pytest

from mlcycle.featurization.config import FeatureConfig, PreprocessConfig
from mlcycle.featurization.transform import fit
from mlcycle.inference.cache import (
    ScoreCache,
    cache_key,
    decode_scores,
    encode_scores,
    key_prefix,
    normalize_text,
)
from tests.fixtures.inference import corpus

VARIANTS = [
    ("you  are\tan idiot", "you are an idiot"),
    ("  leading and trailing \n", "leading and trailing"),
    ("line\r\nbreaks\n\nhere", "line breaks here"),
    ("@someone  #tag   www.example.com/x  ok", "@someone #tag www.example.com/x ok"),
    ("caf\u00e9  \u0301 \u200b zero  width", "caf\u00e9 \u0301 \u200b zero width"),
    ("&amp;  &lt;3\x0b\x0cmore", "&amp; &lt;3 more"),
]


@pytest.mark.parametrize(("raw", "normalized"), VARIANTS)
def test_normalization_collapses_ascii_whitespace(raw: str, normalized: str) -> None:
    assert normalize_text(raw, 5000) == normalized


@pytest.mark.parametrize("transliterate", [True, False])
def test_normalized_texts_featurize_exactly_like_the_raw_ones(transliterate: bool) -> None:
    texts, metadata, _ = corpus(n=200)
    config = FeatureConfig(preprocess=PreprocessConfig(transliterate=transliterate))
    transform = fit(texts, metadata, config)
    raw = [r for r, _ in VARIANTS] + ["\u00a0nbsp\u00a0 \u3000ideographic  space"]
    normalized = [normalize_text(t, transform.config.preprocess.max_chars) for t in raw]
    a, b = transform.apply(raw), transform.apply(normalized)
    assert np.array_equal(a.indptr, b.indptr)
    assert np.array_equal(a.indices, b.indices)
    assert np.array_equal(a.values, b.values)


def test_texts_cut_at_max_chars_are_not_normalized() -> None:
    # The transform cuts the raw text first, so collapsing spaces would move the cut.
    text = "a" * 8 + "     " + "b" * 8
    assert normalize_text(text, 10) == text
    assert normalize_text(text, 100) == "a" * 8 + " " + "b" * 8


def test_keys_depend_on_version_transform_text_and_metadata() -> None:
    prefix = key_prefix("toxicity", 3, "tf-0123456789abcdef")
    key = cache_key(prefix, "you are  great", None, 5000)
    assert key.startswith("mlcycle:score:toxicity:3:tf-0123456789abcdef:")
    assert key == cache_key(prefix, " you are great ", None, 5000)
    assert key == cache_key(prefix, "you are great", {}, 5000)
    assert key != cache_key(
        key_prefix("toxicity", 4, "tf-0123456789abcdef"), "you are great", None, 5000
    )
    assert key != cache_key(
        key_prefix("toxicity", 3, "tf-fedcba9876543210"), "you are great", None, 5000
    )
    assert key != cache_key(prefix, "you are Great", None, 5000)
    with_meta = cache_key(prefix, "you are great", {"year": 2015, "logged_in": True}, 5000)
    assert with_meta != key
    # Canonical metadata: the order of the fields does not matter, their values do.
    assert with_meta == cache_key(prefix, "you are great", {"logged_in": True, "year": 2015}, 5000)
    assert with_meta != cache_key(prefix, "you are great", {"logged_in": True, "year": 2016}, 5000)
    # Values orjson refuses (beyond 64 bits) still make a key.
    assert cache_key(prefix, "x", {"big": 2**70}, 5000) != cache_key(prefix, "x", {"big": 1}, 5000)


def test_scores_round_trip_and_malformed_values_are_misses() -> None:
    row = np.array([0.25, 0.75], np.float32)
    value = encode_scores(row)
    assert np.array_equal(decode_scores(value, 2), row)
    assert decode_scores(value, 3) is None
    assert decode_scores(b"garbage", 2) is None


def test_an_unreachable_redis_costs_one_timeout_then_is_skipped() -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    cache = ScoreCache(f"redis://127.0.0.1:{port}/0", ttl_s=60)
    assert cache.get_many(["a", "b"]) == [None, None]
    assert not cache.healthy
    started = time.perf_counter()
    for _ in range(100):
        assert cache.get_many(["a"]) == [None]
        cache.set_many([("a", b"x")])
    assert time.perf_counter() - started < 0.05  # skipped, not retried, while backing off
    assert cache.ping() is False
    cache.close()


def test_the_event_loop_client_shares_the_pause_after_a_failure() -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    cache = ScoreCache(f"redis://127.0.0.1:{port}/0", ttl_s=60)

    async def scenario() -> float:
        aio = cache.aio()
        assert await aio.get_many(["a", "b"]) == [None, None]
        started = time.perf_counter()
        for _ in range(100):
            assert await aio.get_many(["a"]) == [None]
            await aio.set_many([("a", b"x")])
        await aio.close()
        return time.perf_counter() - started

    assert asyncio.run(scenario()) < 0.05  # skipped while backing off, not retried
    assert not cache.healthy  # the blocking client (readiness) sees the same pause
    cache.close()
