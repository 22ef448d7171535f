"""The reference profile: what it holds of the dev split, how it reads back, and its size."""

from __future__ import annotations

import numpy as np
import pytest

from mlcycle.common.errors import InvalidInput
from mlcycle.contracts.monitoring import PROFILE_FILE, Categories, Histogram
from mlcycle.featurization.hashing import term_keys, to_buckets
from mlcycle.monitoring.profile import (
    bin_of,
    build_profile,
    dispersion,
    quantile_edges,
    read_profile,
    write_profile,
)
from tests.unit.monitoring_world import SITES, World, transform_for


@pytest.fixture(scope="module")
def dev():
    rng = np.random.default_rng(1)
    world = World()
    transform = transform_for(world, rng)
    texts, metadata, labels, scores = world.sample(3000, rng)
    return transform, texts, metadata, labels, scores


def profile_of(dev, **changes):
    transform, texts, metadata, labels, scores = dev
    args = dict(
        model="toxicity",
        version=3,
        transform=transform,
        texts=texts,
        metadata=metadata,
        scores=scores,
        labels=labels,
        threshold=0.5,
        score_prior=0.3,
    )
    return build_profile(**{**args, **changes})


def test_quantile_bins_hold_similar_shares_and_are_open_ended() -> None:
    values = np.random.default_rng(0).normal(size=10_000)
    edges = quantile_edges(values, 20)
    counts = np.bincount(bin_of(edges, values), minlength=len(edges) - 1)
    assert len(edges) == 21 and counts.sum() == 10_000
    assert counts.min() >= 450 and counts.max() <= 550
    assert bin_of(edges, np.array([-1e9, 1e9])).tolist() == [0, 19]


def test_tied_values_merge_edges() -> None:
    values = np.r_[np.zeros(900), np.arange(1, 101)]  # a floor at 0 holds 90 %
    edges = quantile_edges(values, 20)
    assert edges == sorted(set(edges)) and edges[0] == 0.0
    counts = np.bincount(bin_of(edges, values), minlength=len(edges) - 1)
    assert counts[0] == 900 and counts.sum() == 1000
    assert quantile_edges(np.full(10, 3.0))[0] == 3.0  # one value: one bin


def test_profile_holds_the_dev_split_as_the_model_saw_it(dev) -> None:
    transform, texts, metadata, labels, scores = dev
    profile = profile_of(dev)
    assert profile.rows == 3000 and profile.transform == transform.version
    assert profile.model == "toxicity" and profile.model_version == 3
    assert sum(profile.score.counts) == 3000 and sum(profile.length.counts) == 3000
    assert 15 <= len(profile.score.counts) <= 20
    assert max(profile.score.counts) < 3 * min(profile.score.counts)
    assert profile.positive.n == 3000 and profile.positive.x == float((scores >= 0.5).sum())
    assert profile.positive.y == 3000 == profile.positive.yy
    # Words outside the vocabulary: the Zipf tail the fit saw fewer than twice.
    assert 0.0 < profile.oov.x / profile.oov.y < 0.2 and profile.oov.n == 3000
    words = sum(len(t.split()) for t in texts)
    assert profile.oov.y == words
    # Uni- and bigrams (every word, every pair of neighbours within a text): each bucket
    # counts once per text that has one.
    expected = np.zeros(64)
    for text in texts:
        split = text.split()
        terms = split + [f"{a} {b}" for a, b in zip(split, split[1:], strict=False)]
        expected[np.unique(to_buckets(term_keys(terms), 64))] += 1
    assert profile.ngrams.counts == expected.tolist()
    assert 0.05 < profile.ngrams.dispersion < 5
    hour, site = profile.metadata["hour"], profile.metadata["site"]
    assert isinstance(hour, Histogram) and sum(hour.counts) == 3000
    assert isinstance(site, Categories) and site.categories[0] == "news"
    assert set(site.categories) == set(SITES) and site.counts[-1] == 0


def test_ngram_examples_are_what_fills_their_bucket(dev) -> None:
    profile = profile_of(dev)
    ngrams = profile.ngrams
    assert len(ngrams.examples) == ngrams.buckets == 64
    assert all(len(e) <= 3 for e in ngrams.examples)
    for bucket, examples in enumerate(ngrams.examples):
        if examples:
            assert to_buckets(term_keys(examples), 64).tolist() == [bucket] * len(examples)
    assert any(" " in e for examples in ngrams.examples for e in examples)  # bigrams too


def test_calibration_moves_dev_prior_to_the_served_one(dev) -> None:
    _, _, _, labels, scores = dev
    at_dev = profile_of(dev, score_prior=float(labels.mean())).calibration
    edges = at_dev.edges
    slots = bin_of(edges, scores)
    # A bin with both classes in it.
    top = next(b for b in range(len(edges) - 1) if 0.2 < labels[slots == b].mean() < 0.8)
    raw = labels[slots == top].mean()
    assert at_dev.positive_rate[top] == pytest.approx(raw)
    assert sum(at_dev.counts) == 3000
    lower = profile_of(dev, score_prior=0.1).calibration
    prior = labels.mean()
    pos, neg = labels[slots == top].sum(), (1 - labels[slots == top]).sum()
    wp, wn = 0.1 / prior, 0.9 / (1 - prior)
    assert lower.positive_rate[top] == pytest.approx(pos * wp / (pos * wp + neg * wn))
    assert lower.positive_rate[top] < at_dev.positive_rate[top]
    assert profile_of(dev, labels=None).calibration is None


def test_without_scores_or_vocabulary(dev) -> None:
    _, texts, metadata, _, _ = dev
    profile = profile_of(dev, transform=None, scores=None)
    assert profile.score is None and profile.positive is None and profile.calibration is None
    assert profile.oov is None and profile.metadata == {} and profile.transform is None
    assert sum(profile.length.counts) == len(texts)


def test_dispersion_counts_texts_not_ngrams() -> None:
    rng = np.random.default_rng(3)
    n, k = 4000, 64
    lengths = rng.integers(5, 20, n)
    rows = np.repeat(np.arange(n), lengths)
    independent = rng.integers(0, k, len(rows))
    assert 1.0 <= dispersion(rows, independent, n, k) < 1.1
    # Each text repeats one bucket: its n-grams are worth one draw, not ~12.
    repeated = np.repeat(rng.integers(0, k, n), lengths)
    assert dispersion(rows, repeated, n, k) > 8


def test_round_trip_size_and_absence(dev, tmp_path) -> None:
    profile = profile_of(dev)
    path = write_profile(tmp_path, profile)
    assert path.name == PROFILE_FILE
    assert path.stat().st_size < 64 * 1024
    assert read_profile(tmp_path) == profile
    assert read_profile(tmp_path / "nowhere") is None
    path.write_text('{"model": 1}')
    with pytest.raises(InvalidInput, match="malformed reference profile"):
        read_profile(tmp_path)


def test_misaligned_inputs_are_refused(dev) -> None:
    with pytest.raises(InvalidInput):
        profile_of(dev, scores=np.zeros(3))
