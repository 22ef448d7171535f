"""Fingerprinting served records: a tally of the dev rows is the profile, tallies add up,
example ids are kept, and the cost per record is small."""

from __future__ import annotations

import time

import numpy as np
import pytest

from mlcycle.common.errors import InvalidInput
from mlcycle.monitoring.fingerprint import Fingerprinter, first_rows
from mlcycle.monitoring.profile import bin_of, build_profile
from mlcycle.monitoring.tally import Tally
from tests.unit.monitoring_world import World, transform_for


@pytest.fixture(scope="module")
def setup():
    rng = np.random.default_rng(2)
    world = World()
    transform = transform_for(world, rng)
    texts, metadata, labels, scores = world.sample(2000, rng)
    profile = build_profile(
        model="m",
        version=1,
        transform=transform,
        texts=texts,
        metadata=metadata,
        scores=scores,
        labels=labels,
        threshold=0.5,
        score_prior=0.3,
    )
    return world, transform, profile, (texts, metadata, labels, scores)


def tally_of(fingerprinter, texts, metadata, scores, batch=256) -> Tally:
    out = Tally()
    for start in range(0, len(texts), batch):
        end = start + batch
        ids = [f"c{i}" for i in range(start, min(end, len(texts)))]
        out.add(fingerprinter.tally(texts[start:end], metadata[start:end], scores[start:end], ids))
    return out


def test_the_dev_rows_tally_to_the_profile(setup) -> None:
    _, transform, profile, (texts, metadata, _, scores) = setup
    tally = tally_of(Fingerprinter(profile, transform), texts, metadata, scores)
    assert tally.n == 2000
    assert tally.vector("score", len(profile.score.counts)).tolist() == profile.score.counts
    assert tally.counts["positive:x"] == profile.positive.x
    assert tally.vector("length", len(profile.length.counts)).tolist() == profile.length.counts
    assert tally.vector("ngrams", 64).tolist() == profile.ngrams.counts
    assert tally.moments("oov") == profile.oov
    for name, reference in profile.metadata.items():
        assert tally.vector(f"meta:{name}", len(reference.counts)).tolist() == reference.counts


def test_examples_name_records_of_their_bin(setup) -> None:
    _, transform, profile, (texts, metadata, _, scores) = setup
    tally = tally_of(Fingerprinter(profile, transform), texts[:300], metadata[:300], scores[:300])
    slots = bin_of(profile.score.edges, scores[:300])
    for key, ids in tally.examples.items():
        assert 1 <= len(ids) <= 3 and len(set(ids)) == len(ids)
        if key.startswith("score:"):
            assert all(slots[int(i[1:])] == int(key.split(":")[1]) for i in ids)
    assert any(k.startswith("ngrams:") for k in tally.examples)
    assert any(k.startswith("meta:site:") for k in tally.examples)
    assert tally.examples["oov"]  # the texts with the largest out-of-vocabulary share


def test_unseen_words_raise_the_oov_counters(setup) -> None:
    world, transform, profile, _ = setup
    fingerprinter = Fingerprinter(profile, transform)
    rng = np.random.default_rng(5)
    plain = world.sample(500, rng)
    novel = world.drifted(unseen=1.0).sample(500, rng)
    share = [
        (t := tally_of(fingerprinter, s[0], s[1], s[3])).counts["oov:x"] / t.counts["oov:y"]
        for s in (plain, novel)
    ]
    assert share[1] > share[0] + 0.15


def test_without_scores_or_metadata(setup) -> None:
    _, transform, profile, (texts, _, _, _) = setup
    tally = Fingerprinter(profile, transform).tally(texts[:10], None, None, list("abcdefghij"))
    assert tally.n == 10 and not any(k.startswith(("score:", "positive")) for k in tally.counts)
    # A field nobody sent counts as "other or missing" (categorical); numeric ones not at all.
    assert tally.counts[f"meta:site:{len(profile.metadata['site'].counts) - 1}"] == 10
    assert not any(k.startswith("meta:hour") for k in tally.counts)
    assert not Fingerprinter(profile, transform).tally([], None, None, [])


def test_misaligned_inputs_and_foreign_transform(setup) -> None:
    world, transform, profile, _ = setup
    fingerprinter = Fingerprinter(profile, transform)
    with pytest.raises(InvalidInput):
        fingerprinter.tally(["a", "b"], None, None, ["1"])
    with pytest.raises(InvalidInput):
        fingerprinter.tally(["a", "b"], None, np.zeros(3), ["1", "2"])
    other = transform_for(world, np.random.default_rng(99), rows=500)
    with pytest.raises(InvalidInput, match="transform"):
        Fingerprinter(profile, other)
    with pytest.raises(InvalidInput, match="transform"):
        Fingerprinter(profile, None)
    # A profile built without a transform (an encoder's) ignores one given.
    bare = profile.model_copy(update={"transform": None, "oov": None, "metadata": {}})
    assert Fingerprinter(bare, other).transform is None


def test_first_rows_keeps_the_first_distinct_rows_per_key() -> None:
    keys = np.array([3, 1, 3, 3, 3, 1, 2, 3])
    rows = np.array([0, 0, 0, 1, 2, 4, 5, 6])
    assert first_rows(keys, rows) == {1: [0, 4], 2: [5], 3: [0, 1, 2]}
    assert first_rows(np.array([], np.int64), np.array([], np.int64)) == {}


def test_cost_per_record_is_small(setup) -> None:
    world, transform, profile, _ = setup
    texts, metadata, _, scores = world.sample(2560, np.random.default_rng(4))
    fingerprinter = Fingerprinter(profile, transform)
    ids = [str(i) for i in range(256)]
    fingerprinter.tally(texts[:256], metadata[:256], scores[:256], ids)  # warm
    started = time.perf_counter()
    for start in range(0, 2560, 256):
        end = start + 256
        fingerprinter.tally(texts[start:end], metadata[start:end], scores[start:end], ids)
    per_record = (time.perf_counter() - started) / 2560
    # ~10 µs here; the bound leaves room for a loaded machine.
    assert per_record < 200e-6
