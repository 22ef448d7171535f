"""The detector: statistics, thresholds calibrated to the false-alarm budget, detection of
planted drift, hysteresis, and windows too small to claim anything."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest

from mlcycle.common.settings.sections import MonitoringSettings
from mlcycle.contracts.monitoring import (
    LENGTH,
    NGRAMS,
    OOV_SHARE,
    POSITIVE_RATE,
    SCORE,
    RatioMoments,
)
from mlcycle.monitoring import statistics as stats
from mlcycle.monitoring.detector import Detector, grid_floor
from mlcycle.monitoring.fingerprint import Fingerprinter
from mlcycle.monitoring.profile import bin_of, build_profile, histogram, moments
from mlcycle.monitoring.tally import Tally
from tests.unit.monitoring_world import SITE_SHARES, SITES, World, transform_for

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def run(detector: Detector, tallies) -> dict[str, int]:
    """Feed windows in order; count per signal how often it entered alarm."""
    alarms: dict[str, bool] = {}
    entered: dict[str, int] = {}
    for tally in tallies:
        for result in detector.evaluate(tally, alarms, NOW, NOW):
            if result.alarm and not alarms.get(result.signal, False):
                entered[result.signal] = entered.get(result.signal, 0) + 1
            alarms[result.signal] = result.alarm
    return entered


# -- the statistics ------------------------------------------------------------------------


def test_statistics_are_effect_sizes_in_unit_range() -> None:
    a, b = np.array([5.0, 5.0, 0.0]), np.array([0.0, 0.0, 7.0])
    assert stats.js_divergence(a, a) == pytest.approx(0.0)
    assert stats.js_divergence(a, b) == pytest.approx(1.0)
    assert stats.ks_distance(a, b) == pytest.approx(1.0)
    assert stats.ks_distance(np.array([1.0, 1.0]), np.array([2.0, 0.0])) == pytest.approx(0.5)
    rows = stats.js_divergence(np.array([a, a]), np.array([a, b]))
    assert rows.tolist() == pytest.approx([0.0, 1.0])


def test_ratio_variance_is_binomial_for_proportions_and_clusters_by_record() -> None:
    flagged = np.r_[np.ones(300), np.zeros(700)]
    unit = stats.ratio_unit_variance(moments(flagged, np.ones(1000)))
    assert unit == pytest.approx(0.3 * 0.7)
    # Ten texts of 100 words, all or nothing out of vocabulary: 10 draws, not 1000 words.
    x, y = np.r_[np.full(3, 100.0), np.zeros(7)], np.full(10, 100.0)
    clustered = stats.ratio_unit_variance(moments(x, y))
    assert clustered / 10 == pytest.approx(0.3 * 0.7 / 10)  # Var of the ratio over 10 texts
    # A reference ratio of 0 still has some variance, so any window is not an alarm.
    assert stats.ratio_unit_variance(moments(np.zeros(100), np.ones(100))) > 0
    assert stats.ratio(RatioMoments()) is None


def test_thresholds_shrink_with_the_window_and_repeat_across_processes() -> None:
    rng = np.random.default_rng(0)
    profile = record_profile(rng)
    settings = MonitoringSettings()
    one, two = Detector(profile, settings), Detector(profile, settings)
    spec = next(s for s in one._signals if getattr(s, "signal", None) == SCORE)
    small = one._shares_thresholds(spec, 300)
    large = one._shares_thresholds(spec, 3000)
    assert large[0] < small[0] and large[1] <= large[0]
    two.warm(300)
    assert two._cache[(SCORE, grid_floor(300))] == small  # same seed, same draws
    assert grid_floor(1000) <= 1000 < grid_floor(1000) * 2 ** (1 / 8)
    assert one.alpha(1000) == grid_floor(1000) / settings.false_alarm_budget_records


# -- no drift: false alarms within the budget ------------------------------------------------


def records(n: int, rng: np.random.Generator, toxic: float = 0.3, shift: float = 0.0):
    """Record-level quantities of a stream: scores, text lengths, metadata."""
    labels = (rng.random(n) < toxic).astype(int)
    scores = np.clip(np.where(labels == 1, rng.beta(5, 2, n), rng.beta(1, 6, n)) + shift, 0, 1)
    lengths = np.maximum(1, rng.lognormal(4.2, 0.8, n).astype(int))
    hours = rng.integers(0, 24, n)
    sites = rng.choice(len(SITES), n, p=SITE_SHARES)
    return labels, scores, lengths, hours, sites


def record_profile(rng: np.random.Generator, rows: int = 3000):
    labels, scores, lengths, hours, sites = records(rows, rng)
    profile = build_profile(
        model="m",
        version=1,
        transform=None,
        texts=["x" * int(n) for n in lengths],
        metadata=None,
        scores=scores,
        labels=labels,
        threshold=0.5,
        score_prior=0.3,
    )
    # Without a transform the profile has no metadata fields; these two stand for its own.
    counts = np.bincount(sites, minlength=len(SITES)).astype(float).tolist()
    site = {"categories": SITES, "counts": [*counts, 0.0]}
    metadata = {"hour": histogram(hours.astype(float)), "site": site}
    return profile.model_validate({**profile.model_dump(), "metadata": metadata})


def record_tally(profile, rng: np.random.Generator, n: int, **drift) -> Tally:
    """What the fingerprinter counts of ``n`` records (without their texts: faster)."""
    _, scores, lengths, hours, sites = records(n, rng, **drift)
    tally = Tally()
    tally.bump("n", n)
    for prefix, edges, values in (
        ("score", profile.score.edges, scores),
        ("length", profile.length.edges, lengths),
        ("meta:hour", profile.metadata["hour"].edges, hours),
    ):
        tally.bump_vector(prefix, np.bincount(bin_of(edges, values), minlength=len(edges) - 1))
    tally.bump("positive:x", float((scores >= profile.threshold).sum()))
    tally.bump_vector("meta:site", np.bincount(sites, minlength=len(SITES) + 1))
    return tally


def test_no_drift_false_alarms_stay_within_the_budget_record_signals() -> None:
    """2M records in windows of 1000, budget 100k: ~20 false alarms per signal at most.

    Ten references (the reference is a sample too: its luck is part of the rate),
    200 windows each.
    """
    settings = MonitoringSettings(false_alarm_budget_records=100_000)
    total: dict[str, int] = {}
    for seed in range(10):
        rng = np.random.default_rng(seed)
        profile = record_profile(rng)
        windows = (record_tally(profile, rng, 1000) for _ in range(200))
        for signal, count in run(Detector(profile, settings), windows).items():
            total[signal] = total.get(signal, 0) + count
    expected = 2_000_000 / 100_000
    for signal in (SCORE, POSITIVE_RATE, LENGTH, "metadata:hour", "metadata:site"):
        assert total.get(signal, 0) <= 2 * expected, (signal, total)
    assert sum(total.values()) > 0  # the thresholds are not so high that nothing ever fires


@pytest.fixture(scope="module")
def texts_world():
    rng = np.random.default_rng(21)
    world = World()
    transform = transform_for(world, rng)
    return world, transform


def text_profile(world: World, transform, rng: np.random.Generator, rows: int = 2000):
    texts, metadata, labels, scores = world.sample(rows, rng)
    return build_profile(
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


def text_tally(fingerprinter: Fingerprinter, world: World, rng, n: int) -> Tally:
    texts, metadata, _, scores = world.sample(n, rng)
    return fingerprinter.tally(texts, metadata, scores, [f"r{i}" for i in range(n)])


def test_no_drift_false_alarms_stay_within_the_budget_text_signals(texts_world) -> None:
    """N-grams and the OOV share, through the fingerprinter on generated comments whose words
    cluster by topic within texts: 240k records in windows of 500, budget 20k (~12 expected)."""
    world, transform = texts_world
    settings = MonitoringSettings(false_alarm_budget_records=20_000)
    total: dict[str, int] = {}
    for seed in range(4):
        rng = np.random.default_rng(100 + seed)
        profile = text_profile(world, transform, rng)
        fingerprinter = Fingerprinter(profile, transform)
        windows = (text_tally(fingerprinter, world, rng, 500) for _ in range(120))
        for signal, count in run(Detector(profile, settings), windows).items():
            total[signal] = total.get(signal, 0) + count
    expected = 240_000 / 20_000
    for signal in (NGRAMS, OOV_SHARE, SCORE, LENGTH, "metadata:site"):
        assert total.get(signal, 0) <= 2 * expected, (signal, total)


# -- planted drift is detected -------------------------------------------------------------


@pytest.mark.parametrize(
    ("drift", "signal"),
    [
        ({"score_shift": 0.1}, SCORE),
        ({"toxic": 0.6}, POSITIVE_RATE),
        ({"unseen": 0.2}, OOV_SHARE),
        ({"toxic": 0.6}, NGRAMS),  # the toxic topic's words take a larger share
        ({"mean_words": 24.0}, LENGTH),
    ],
)
def test_planted_drift_raises_an_alarm(texts_world, drift, signal) -> None:
    world, transform = texts_world
    rng = np.random.default_rng(7)
    profile = text_profile(world, transform, rng)
    detector = Detector(profile, MonitoringSettings())
    fingerprinter = Fingerprinter(profile, transform)
    calm_tally = text_tally(fingerprinter, world, rng, 1000)
    calm = {r.signal: r for r in detector.evaluate(calm_tally, {}, NOW, NOW)}
    assert calm[signal].status == "ok"
    drifted = text_tally(fingerprinter, world.drifted(**drift), rng, 1000)
    result = {r.signal: r for r in detector.evaluate(drifted, {}, NOW, NOW)}[signal]
    assert result.alarm and result.status == "alarm"
    assert result.statistic > result.threshold > result.exit_threshold > 0
    assert result.movers


def test_movers_point_at_the_new_words(texts_world) -> None:
    world, transform = texts_world
    rng = np.random.default_rng(8)
    profile = text_profile(world, transform, rng)
    fingerprinter = Fingerprinter(profile, transform)
    texts, metadata, _, scores = world.sample(1000, rng)
    ids = [f"plain{i}" for i in range(1000)]
    # Every drifted text repeats the same new words: their buckets move most.
    texts[::5] = [f"{t} qqzzy qqzzy qqzzy" for t in texts[::5]]
    ids[::5] = [f"novel{i}" for i in range(200)]
    tally = fingerprinter.tally(texts, metadata, scores, ids)
    detector = Detector(profile, MonitoringSettings())
    result = {r.signal: r for r in detector.evaluate(tally, {}, NOW, NOW)}
    ngrams = result[NGRAMS]
    assert ngrams.alarm
    top = ngrams.movers[0]
    # Its ids are the window's first texts in the bucket: the first drifted one among them.
    assert top.live > top.reference and "novel0" in top.ids
    assert len(ngrams.bins) == len(ngrams.reference_shares) == len(ngrams.live_shares) == 64
    oov = result[OOV_SHARE]
    assert oov.alarm and oov.movers[0].live > oov.movers[0].reference
    assert all(i.startswith("novel") for i in oov.movers[0].ids)


# -- hysteresis, insufficient and unavailable windows ----------------------------------------


def test_hysteresis_keeps_an_alarm_until_the_exit_threshold() -> None:
    rng = np.random.default_rng(3)
    profile = record_profile(rng)
    detector = Detector(profile, MonitoringSettings())
    between = None
    for shift in np.linspace(0.0, 0.05, 51):
        tally = record_tally(profile, rng, 1000, shift=float(shift))
        score = next(r for r in detector.evaluate(tally, {}, NOW, NOW) if r.signal == SCORE)
        if score.exit_threshold < score.statistic <= score.threshold:
            between = tally
            break
    assert between is not None
    calm = {r.signal: r for r in detector.evaluate(between, {SCORE: False}, NOW, NOW)}
    held = {r.signal: r for r in detector.evaluate(between, {SCORE: True}, NOW, NOW)}
    assert not calm[SCORE].alarm and held[SCORE].alarm and held[SCORE].status == "alarm"
    # A window that looks like the reference again clears it.
    recovered = None
    for _ in range(10):  # each clears with probability one half (the exit is the null median)
        tally = record_tally(profile, rng, 1000)
        results = detector.evaluate(tally, {SCORE: True}, NOW, NOW)
        recovered = next(r for r in results if r.signal == SCORE)
        if not recovered.alarm:
            break
    assert recovered is not None and not recovered.alarm


def test_a_small_window_claims_nothing() -> None:
    rng = np.random.default_rng(4)
    profile = record_profile(rng)
    detector = Detector(profile, MonitoringSettings(min_window_records=200))
    tally = record_tally(profile, rng, 199, shift=0.5)  # far off, but too few records
    results = detector.evaluate(tally, {SCORE: True}, NOW, NOW)
    by_signal = {r.signal: r for r in results}
    assert by_signal[SCORE].status == "insufficient" and by_signal[SCORE].alarm  # kept as it was
    assert by_signal[LENGTH].status == "insufficient" and not by_signal[LENGTH].alarm
    assert all(r.statistic is None and r.threshold is None for r in results)
    assert all(r.window == 199 for r in results)
    # Enough records, but none of a signal's units (no scores sent): that signal claims nothing.
    unscored = record_tally(profile, rng, 1000)
    unscored.counts = {k: v for k, v in unscored.counts.items() if not k.startswith("score:")}
    by_signal = {r.signal: r for r in detector.evaluate(unscored, {}, NOW, NOW)}
    assert by_signal[SCORE].status == by_signal[POSITIVE_RATE].status == "insufficient"
    assert by_signal[LENGTH].status in ("ok", "alarm")


def test_signals_without_a_reference_are_unavailable() -> None:
    rng = np.random.default_rng(5)
    profile = record_profile(rng)
    bare = profile.model_copy(update={"score": None, "positive": None, "calibration": None})
    detector = Detector(bare, MonitoringSettings())
    tally = record_tally(profile, rng, 1000)
    results = {r.signal: r for r in detector.evaluate(tally, {}, NOW, NOW)}
    for signal in (SCORE, POSITIVE_RATE, OOV_SHARE):  # no transform: no vocabulary either
        assert results[signal].status == "unavailable" and not results[signal].alarm
    assert results[LENGTH].status in ("ok", "alarm")
    assert set(detector.signals) == set(results)
    assert set(detector.unavailable) == {SCORE, POSITIVE_RATE, OOV_SHARE}
    assert "vocabulary" in detector.unavailable[OOV_SHARE]


def test_an_empty_reference_compares_with_nothing() -> None:
    empty = build_profile(
        model="m",
        version=1,
        transform=None,
        texts=[],
        metadata=None,
        scores=np.zeros(0),
        labels=np.zeros(0),
        threshold=0.5,
        score_prior=0.1,
    )
    tally = Fingerprinter(empty, None).tally(["a b"] * 300, None, None, ["x"] * 300)
    results = Detector(empty, MonitoringSettings()).evaluate(tally, {}, NOW, NOW)
    assert {r.status for r in results} == {"unavailable"}
