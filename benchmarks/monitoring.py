"""Watching the live model: drift alarms against a false-alarm budget, beside Evidently.

Setup: a job's model on Davidson et al.'s tweets (../shared/data, read with the
project's importer; binary task, the labeler's 80/10/10 hash split): a
transform fitted on train, the default hyper-parameters, blended with its
linear companion, its scores calibrated and moved to the job's default
deployment prior and its threshold chosen as a job's ``threshold`` stage does,
exported as the trainer exports (SavedModel, metadata.json) with the
reference profile of its dev split. Scores come from the exported SavedModel
called in this process: what the service would serve for the same text.

Streams, replayed in windows of ``settings.monitoring.window_records``
records (the service's default; windows by time do not arise in a replay):

- ``no_drift``: Davidson's test texts replayed ``--replays`` times, shuffled.
  False alarms per 100k records per signal: how often a signal *enters* alarm
  (a window in alarm after one that was not), over the records replayed, next
  to the configured budget (``false_alarm_budget_records``).
- Drift scenes, each ``--pre`` windows of shuffled Davidson test texts, then a
  switch at a known record to ``--post`` windows of: ``other_<p>``: another
  corpus's comments (``--corpus``, read with ``benchmarks/_corpora.py``) mixed
  in at 10 %, 30 % and 100 %; ``toxic_doubled``: Davidson's test texts
  resampled by label so that the toxic share doubles (when it is above 47.5 %
  it cannot, so the non-toxic share halves instead: the toxic odds about
  double); ``unseen_tokens``: 20 % of the comments carry three words from a
  burst of new coined words. Detection delay: records from the switch to the
  close of the first window in alarm; null (printed "not detected") when no
  window after the switch is.

Side by side on the same windows of the same records: mlcycle's monitor
(``Fingerprinter.tally`` over the window's texts and scores, then
``Detector.evaluate``, with the service's settings) and Evidently's data
drift (``Report([DataDriftPreset()])`` with its defaults, on a DataFrame per
window of the same per-record features, against the dev split's): the
served score, the served label (the positive rate's counterpart), the length
in characters, the out-of-vocabulary share and the per-record counts of the
profile's hashed n-gram buckets, each computed by the monitor's own
fingerprinting of the record alone. Evidently's verdict per signal is its
column test's; for the n-gram buckets, its own dataset rule (at least half
of the bucket columns drifted). Seconds per window: mlcycle's include its
fingerprinting of the texts; Evidently's are the report alone on features
already computed.

Overhead: ``predict_miss`` (``POST /v1/predict``, one unseen comment) at 8
clients through the real stack (model server, inference service, Redis, as
``mlcycle up`` starts them), two inference services side by side on the same
model, the monitor off in one and on in the other, driven in turn, the order
alternating, ``--repeats`` times: throughput ratio (on / off) and p50 delta.

Late labels: the same windows replayed with the moderators' decisions arriving
``LABEL_LAG_WINDOWS`` windows after their window closed: quality estimated at
the close from the scores and the dev calibration (CBPE) against the quality
realized once the decisions arrive; mean absolute error of ROC-AUC and F1 over
windows. Memory: what one model version's monitor holds (its profile, its
fingerprinter and detector, a window's tally), measured with tracemalloc.
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import statistics
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import _corpora
import numpy as np
import orjson
from quality import SPLITS, binary_task, load_davidson
from rich.console import Console
from rich.table import Table
from serving import Built, build_model, padded

from mlcycle.common.settings import Settings
from mlcycle.contracts.monitoring import (
    LENGTH,
    NGRAMS,
    OOV_SHARE,
    POSITIVE_RATE,
    SCORE,
    QualityFigures,
    ReferenceProfile,
)
from mlcycle.contracts.training import JobConfig
from mlcycle.monitoring.detector import Detector
from mlcycle.monitoring.fingerprint import Fingerprinter
from mlcycle.monitoring.profile import build_profile, read_profile, write_profile
from mlcycle.monitoring.quality import add_estimate_counters, estimate, estimate_error, realized
from mlcycle.monitoring.tally import Tally

SIGNALS = (SCORE, POSITIVE_RATE, LENGTH, OOV_SHARE, NGRAMS)
# A scene's detection delay by its first signal to alarm.
ANY = "any"
MIX_SHARES = (0.10, 0.30, 1.00)
UNSEEN_SHARE = 0.20
UNSEEN_WORDS_PER_COMMENT = 3
UNSEEN_VOCABULARY = 300
LABEL_LAG_WINDOWS = 3
LATENCY_AT = 8
SCORE_BATCH = 512
GOALS = {"throughput_ratio": 0.97, "p50_delta_ms": 0.2}


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# -- the streams --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Stream:
    """A replayed stream: its texts and crowd labels, and where it switches (None: never)."""

    name: str
    texts: list[str]
    labels: np.ndarray
    switch_at: int | None
    note: str = ""

    def __len__(self) -> int:
        return len(self.texts)


@dataclass(frozen=True)
class Pools:
    """The texts streams are drawn from: Davidson's test split and another corpus."""

    texts: list[str]
    labels: np.ndarray
    other_texts: list[str]
    other_labels: np.ndarray
    other_name: str


def draw(rng: np.random.Generator, pool: np.ndarray, n: int) -> np.ndarray:
    """``n`` rows of ``pool``: whole shuffled passes, then a shuffled part of one."""
    passes = [rng.permutation(pool) for _ in range(n // len(pool) + 1)]
    return np.concatenate(passes)[:n]


def coined_words(rng: np.random.Generator, n: int) -> list[str]:
    """``n`` made-up words, letter pairs no transform's vocabulary has seen together."""
    consonants, vowels = "bcdfghjklmnpqrstvwxz", "aeiouy"
    words = set()
    while len(words) < n:
        size = int(rng.integers(3, 6))
        words.add(
            "".join(rng.choice(list(consonants)) + rng.choice(list(vowels)) for _ in range(size))
        )
    return sorted(words)


def streams(
    pools: Pools, window: int, replays: int, pre: int, post: int, seed: int
) -> list[Stream]:
    """The no-drift replay, then each drift scene switching after ``pre`` windows."""
    rng = np.random.default_rng(seed)
    rows = np.arange(len(pools.texts))
    out = [
        Stream(
            "no_drift",
            *_texts_labels(pools.texts, pools.labels, draw(rng, rows, replays * len(rows))),
            None,
            f"Davidson test x{replays}, shuffled",
        )
    ]
    switch, after = pre * window, post * window

    def scene(name: str, tail_texts: list[str], tail_labels: np.ndarray, note: str) -> Stream:
        texts, labels = _texts_labels(pools.texts, pools.labels, draw(rng, rows, switch))
        return Stream(name, texts + tail_texts, np.concatenate([labels, tail_labels]), switch, note)

    other_rows = np.arange(len(pools.other_texts))
    for share in MIX_SHARES:
        mine, theirs = draw(rng, rows, after), draw(rng, other_rows, after)
        mixed = rng.random(after) < share
        texts = [
            pools.other_texts[t] if m else pools.texts[d]
            for d, t, m in zip(mine, theirs, mixed, strict=True)
        ]
        labels = np.where(mixed, pools.other_labels[theirs], pools.labels[mine])
        note = f"{share:.0%} {pools.other_name} after the switch"
        out.append(scene(f"other_{round(share * 100)}", texts, labels, note))

    base = float(pools.labels.mean())
    target = 2 * base if 2 * base <= 0.95 else 1 - (1 - base) / 2
    toxic = draw(rng, np.flatnonzero(pools.labels == 1), after)
    benign = draw(rng, np.flatnonzero(pools.labels == 0), after)
    picked = np.where(rng.random(after) < target, toxic, benign)
    texts, labels = _texts_labels(pools.texts, pools.labels, picked)
    out.append(scene("toxic_doubled", texts, labels, f"toxic share {base:.1%} -> {target:.1%}"))

    vocabulary = coined_words(rng, UNSEEN_VOCABULARY)
    texts, labels = _texts_labels(pools.texts, pools.labels, draw(rng, rows, after))
    for i in np.flatnonzero(rng.random(after) < UNSEEN_SHARE).tolist():
        words = texts[i].split()
        for word in rng.choice(vocabulary, UNSEEN_WORDS_PER_COMMENT):
            words.insert(int(rng.integers(0, len(words) + 1)), str(word))
        texts[i] = " ".join(words)
    note = f"{UNSEEN_SHARE:.0%} of comments carry {UNSEEN_WORDS_PER_COMMENT} new words"
    out.append(scene("unseen_tokens", texts, labels, note))
    return out


def _texts_labels(
    texts: list[str], labels: np.ndarray, rows: np.ndarray
) -> tuple[list[str], np.ndarray]:
    return [texts[i] for i in rows], labels[rows]


# -- the model's scores ---------------------------------------------------------------------------


class Scorer:
    """The exported SavedModel called in this process, each distinct text scored once."""

    def __init__(self, built: Built) -> None:
        import tensorflow as tf

        self.tf = tf
        self.transform = built.transform
        self.signature = tf.saved_model.load(str(built.folder)).signatures["serving_default"]
        self.cache: dict[str, float] = {}

    def __call__(self, texts: list[str]) -> np.ndarray:
        fresh = list(dict.fromkeys(t for t in texts if t not in self.cache))
        for i in range(0, len(fresh), SCORE_BATCH):
            part = fresh[i : i + SCORE_BATCH]
            indices, values = padded(self.transform, part)
            out = self.signature(indices=self.tf.constant(indices), values=self.tf.constant(values))
            self.cache.update(zip(part, out["scores"].numpy().astype(float).tolist(), strict=True))
        return np.array([self.cache[t] for t in texts], np.float64)


# -- mlcycle's monitor ----------------------------------------------------------------------------


@dataclass
class Verdicts:
    """Per signal, each window's alarm state; where each window ended; seconds per window."""

    alarms: dict[str, list[bool]] = field(default_factory=dict)
    ends: list[int] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)

    def note(self, end: int, alarms: dict[str, bool], seconds: float) -> None:
        self.ends.append(end)
        self.seconds.append(seconds)
        for signal, alarm in alarms.items():
            self.alarms.setdefault(signal, []).append(alarm)

    def raised(self, signal: str) -> int:
        """How often ``signal`` entered alarm."""
        states = self.alarms.get(signal, [])
        return sum(a and not b for a, b in zip(states, [False, *states[:-1]], strict=True))

    def delay(self, signal: str, switch_at: int) -> int | None:
        """Records from the switch to the close of the first window after it in alarm."""
        for end, alarm in zip(self.ends, self.alarms.get(signal, []), strict=True):
            if end > switch_at and alarm:
                return end - switch_at
        return None


def spans(n: int, window: int) -> list[tuple[int, int]]:
    """The full windows of a stream of ``n`` records (a shorter tail claims nothing)."""
    return [(start, start + window) for start in range(0, n - window + 1, window)]


def window_times(i: int) -> tuple[datetime, datetime]:
    """A replayed window's start and close: one minute each, from a fixed origin."""
    origin = datetime(2026, 1, 1, tzinfo=UTC)
    return origin + timedelta(minutes=i), origin + timedelta(minutes=i + 1)


def run_mlcycle(
    stream: Stream,
    scores: np.ndarray,
    fingerprinter: Fingerprinter,
    detector: Detector,
    window: int,
) -> Verdicts:
    """The stream through mlcycle's monitor, window by window, hysteresis carried over."""
    verdicts = Verdicts()
    previous: dict[str, bool] = {}
    for i, (start, end) in enumerate(spans(len(stream), window)):
        texts = stream.texts[start:end]
        ids = [f"{stream.name}-{k}" for k in range(start, end)]
        started = time.perf_counter()
        tally = fingerprinter.tally(texts, None, scores[start:end], ids)
        results = detector.evaluate(tally, previous, *window_times(i))
        seconds = time.perf_counter() - started
        previous = {r.signal: r.alarm for r in results}
        verdicts.note(end, {s: previous.get(s, False) for s in SIGNALS}, seconds)
    return verdicts


# -- Evidently on the same records ----------------------------------------------------------------


class Features:
    """Per-record features for Evidently, each from the monitor's fingerprint of that record
    alone (so both judge the same quantities), cached by text."""

    def __init__(self, fingerprinter: Fingerprinter, threshold: float, buckets: int) -> None:
        self.fingerprinter = fingerprinter
        self.threshold = threshold
        self.buckets = buckets
        self.cache: dict[str, list[float]] = {}
        self.columns = [SCORE, POSITIVE_RATE, LENGTH, OOV_SHARE] + [
            f"ngram_{k}" for k in range(buckets)
        ]

    def frame(self, texts: list[str], scores: np.ndarray) -> Any:
        import pandas as pd

        rows = []
        for text, score in zip(texts, scores.tolist(), strict=True):
            own = self.cache.get(text)
            if own is None:
                own = self.cache[text] = self._own(text)
            rows.append([score, float(score >= self.threshold), float(len(text)), *own])
        frame = pd.DataFrame(rows, columns=self.columns)
        return frame.astype(
            {POSITIVE_RATE: "int64", LENGTH: "int64"} | {c: "int64" for c in self.columns[4:]}
        )

    def _own(self, text: str) -> list[float]:
        tally = self.fingerprinter.tally([text], None, None, ["r"])
        words = tally.counts.get("oov:y", 0.0)
        oov = tally.counts.get("oov:x", 0.0) / words if words else 0.0
        return [oov, *tally.vector("ngrams", self.buckets).tolist()]


def evidently_verdicts(report: dict, bucket_columns: list[str]) -> tuple[dict[str, bool], bool]:
    """Per signal, whether Evidently's column test failed (the n-gram buckets by its dataset
    rule: at least half of the columns drifted), and its own dataset-level verdict."""
    drifted: dict[str, bool] = {}
    dataset = False
    for test in report["tests"]:
        params = test["metric_config"]["params"]
        if "column" in params:
            drifted[params["column"]] = test["status"] == "FAIL"
        elif params.get("type", "").endswith("DriftedColumnsCount"):
            dataset = test["status"] == "FAIL"
    buckets = [drifted.get(c, False) for c in bucket_columns]
    signals = {s: drifted.get(s, False) for s in SIGNALS if s != NGRAMS}
    signals[NGRAMS] = bool(buckets) and sum(buckets) >= 0.5 * len(buckets)
    return signals, dataset


def run_evidently(
    stream: Stream, scores: np.ndarray, features: Features, reference: Any, window: int
) -> Verdicts:
    """The stream through Evidently's DataDriftPreset with its defaults, window by window."""
    from evidently import Report
    from evidently.presets import DataDriftPreset

    verdicts = Verdicts()
    buckets = features.columns[4:]
    for start, end in spans(len(stream), window):
        current = features.frame(stream.texts[start:end], scores[start:end])
        started = time.perf_counter()
        snapshot = Report([DataDriftPreset()], include_tests=True).run(
            current_data=current, reference_data=reference
        )
        report = snapshot.dict()
        seconds = time.perf_counter() - started
        signals, dataset = evidently_verdicts(report, buckets)
        verdicts.note(end, {**signals, "dataset": dataset}, seconds)
    return verdicts


# -- late labels and memory -----------------------------------------------------------------------


def estimate_errors(
    stream: Stream, scores: np.ndarray, threshold: float, calibration: Any, window: int
) -> list[dict[str, float]]:
    """Per window: |estimated - realized| of ROC-AUC and F1, the decisions arriving late.

    The estimate is taken when the window closes, from its scores alone; the window's
    decisions (its crowd labels) arrive ``LABEL_LAG_WINDOWS`` windows later, and only then
    is its realized quality known and the two compared.
    """
    waiting: list[tuple[int, QualityFigures | None, slice]] = []
    errors = []
    for i, (start, end) in enumerate(spans(len(stream), window)):
        tally = Tally()
        add_estimate_counters(tally, scores[start:end], threshold, calibration)
        waiting.append((i, estimate(tally), slice(start, end)))
        while waiting and waiting[0][0] + LABEL_LAG_WINDOWS <= i:
            errors.append(_error(waiting.pop(0), stream, scores, threshold))
    errors.extend(_error(item, stream, scores, threshold) for item in waiting)
    return [e for e in errors if e]


def _error(
    item: tuple[int, QualityFigures | None, slice],
    stream: Stream,
    scores: np.ndarray,
    threshold: float,
) -> dict[str, float]:
    """|estimated - realized| of ROC-AUC and F1 for one window, when both exist."""
    _, estimated, rows = item
    errors = estimate_error(estimated, realized(scores[rows], stream.labels[rows], threshold))
    return {figure: e for figure, e in errors.items() if figure in ("roc_auc", "f1")}


def monitor_memory(
    make: Callable[[], tuple[Fingerprinter, Detector, ReferenceProfile]],
    texts: list[str],
    scores: np.ndarray,
) -> dict[str, float]:
    """Bytes one model version's monitor holds: its profile, fingerprinter and detector, and
    a window's tally with its quality counters (tracemalloc: what stays allocated)."""
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    held = make()
    fingerprinter, _detector, profile = held
    tally = fingerprinter.tally(texts, None, scores, [str(i) for i in range(len(texts))])
    if profile.threshold is not None:
        add_estimate_counters(tally, scores, profile.threshold, profile.calibration)
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    resident = sum(s.size_diff for s in after.compare_to(before, "filename"))
    del held
    return {
        "resident_kib": resident / 1024,
        "tally_counters": len(tally.counts),
        "profile_kib": len(profile.model_dump_json().encode()) / 1024,
    }


# -- overhead through the real stack --------------------------------------------------------------


def measure_overhead(
    settings: Settings, transform: Any, tmp: Path, texts: list[str], seconds: float, repeats: int
) -> dict[str, Any]:
    """``predict_miss`` at 8 clients, the monitor off and on, alternating; medians."""
    import uvloop
    from _harness import serving_settings
    from serving import Ladder

    from mlcycle.clients import clients_for
    from mlcycle.local.loadtest import drive
    from mlcycle.local.pipeline import wait_until_served
    from mlcycle.local.stack import LocalStack

    def side(name: str, enabled: bool) -> tuple[LocalStack, Settings]:
        own = serving_settings(
            tmp / name,
            models_dir=settings.trainer.models_dir,
            artifacts_dir=settings.featurizer.artifacts_dir,
            monitor_enabled=enabled,
        )
        services = ("modelserver", "inference-api")
        return LocalStack(own, services=services, log_dir=tmp / name / "logs"), own

    stacks = {"off": side("off", False), "on": side("on", True)}
    ladders: dict[str, Ladder] = {}
    try:
        for name, (stack, _) in stacks.items():
            resolved = stack.start()
            clients = clients_for(resolved)
            wait_until_served(clients, 1)
            ladders[name] = Ladder(resolved, clients, transform, texts)

        async def run() -> dict[str, list[Any]]:
            runs: dict[str, list[Any]] = {"off": [], "on": []}
            for ladder in ladders.values():
                await ladder.open()
            try:
                for ladder in ladders.values():  # warm both up
                    await drive(ladder.predict_miss, LATENCY_AT, 1.0)
                for repeat in range(repeats):
                    order = ["off", "on"] if repeat % 2 == 0 else ["on", "off"]
                    for name in order:
                        runs[name].append(
                            await drive(ladders[name].predict_miss, LATENCY_AT, seconds)
                        )
            finally:
                for ladder in ladders.values():
                    await ladder.close()
            return runs

        runs = uvloop.run(run())
    finally:
        for stack, _ in stacks.values():
            stack.stop()
    rps = {n: statistics.median(r.rps for r in rs) for n, rs in runs.items()}
    p50 = {n: statistics.median(r.percentile(0.5) for r in rs) for n, rs in runs.items()}
    return {
        "rps": rps,
        "p50_ms": p50,
        "throughput_ratio": rps["on"] / rps["off"],
        "p50_delta_ms": p50["on"] - p50["off"],
    }


# -- report ---------------------------------------------------------------------------------------


def shown(value: float | None) -> str:
    return "not detected" if value is None else f"{value:,.0f}"


def alarms_table(figures: dict[str, Any], records: int, windows: int) -> Table:
    table = Table(
        title=f"no drift: false alarms per 100k records ({records:,} records, {windows} windows)"
    )
    for column in ("signal", "mlcycle", "evidently", "budget"):
        table.add_column(column, justify="left" if column == "signal" else "right")
    for signal in (*SIGNALS, "dataset"):
        ours = figures["false_alarms_per_100k"].get(signal)
        theirs = figures["evidently"]["false_alarms_per_100k"].get(signal)
        table.add_row(
            signal,
            "-" if ours is None else f"{ours:.1f}",
            "-" if theirs is None else f"{theirs:.1f}",
            f"{figures['budget_per_100k']:.1f}",
        )
    return table


def scenes_table(scenes: list[Stream]) -> Table:
    table = Table(title="drift scenes (each a stream that switches at a known record)")
    for column in ("scene", "records", "switch at", "after the switch"):
        table.add_column(column, justify="right" if column in ("records", "switch at") else "left")
    for scene in scenes:
        table.add_row(scene.name, f"{len(scene):,}", f"{scene.switch_at:,}", scene.note)
    return table


def delay_table(figures: dict[str, Any]) -> Table:
    table = Table(title="detection delay: records from the switch to the first window in alarm")
    signals = (*SIGNALS, "dataset", ANY)
    for column in ("scene", "monitor", *signals):
        table.add_column(column, justify="left" if column in ("scene", "monitor") else "right")
    for scene, ours in figures["detection_delay"].items():
        theirs = figures["evidently"]["detection_delay"][scene]
        table.add_row(scene, "mlcycle", *(shown(ours[s]) if s in ours else "-" for s in signals))
        table.add_row("", "evidently", *(shown(theirs[s]) for s in signals), end_section=True)
    return table


def summary_lines(figures: dict[str, Any]) -> list[str]:
    lines = []
    ours, theirs = figures["seconds_per_window"], figures["evidently"]["seconds_per_window"]
    lines.append(
        f"seconds per window (median): mlcycle {ours * 1000:.2f} ms (fingerprint + evaluate), "
        f"Evidently {theirs * 1000:.0f} ms (report on ready features): "
        f"{theirs / ours:,.0f}x"
        if ours
        else "seconds per window: -"
    )
    ours_delay, theirs_delay = figures["detection_delay"], figures["evidently"]["detection_delay"]
    for scene, row in ours_delay.items():
        if row[ANY] is None:
            lines.append(f"{scene}: not detected by any mlcycle signal")
    later = [
        scene
        for scene, row in ours_delay.items()
        if row[ANY] is None
        or (theirs_delay[scene][ANY] is not None and row[ANY] > theirs_delay[scene][ANY])
    ]
    ours_alarms = sum(figures["false_alarms_per_100k"].values())
    theirs_alarms = sum(figures["evidently"]["false_alarms_per_100k"].values())
    lines.append(
        "goal, every scene detected no later than Evidently (first signal): "
        + ("met" if not later else f"MISSED ({', '.join(later)})")
    )
    lines.append(
        f"goal, no more false alarms (all signals, per 100k): mlcycle {ours_alarms:.1f}, "
        f"Evidently {theirs_alarms:.1f}: {'met' if ours_alarms <= theirs_alarms else 'MISSED'}"
    )
    overhead, runs = figures["overhead"], figures["overhead_runs"]
    if overhead["throughput_ratio"] is not None:
        met_t = overhead["throughput_ratio"] >= GOALS["throughput_ratio"]
        met_p = overhead["p50_delta_ms"] <= GOALS["p50_delta_ms"]
        lines.append(
            f"predict_miss at {LATENCY_AT} clients, monitor on / off: throughput "
            f"{overhead['throughput_ratio']:.3f}x (goal >= {GOALS['throughput_ratio']}) "
            f"{'met' if met_t else 'MISSED'}; p50 {overhead['p50_delta_ms']:+.3f} ms "
            f"(goal <= +{GOALS['p50_delta_ms']}) {'met' if met_p else 'MISSED'}; medians: "
            + ", ".join(
                f"{side} {runs['rps'][side]:,.0f} req/s p50 {runs['p50_ms'][side]:.2f} ms"
                for side in ("off", "on")
            )
        )
    else:
        lines.append("overhead: not measured (--skip-serving)")
    mae = figures["estimate_mae"]
    lines.append(
        f"late labels ({LABEL_LAG_WINDOWS} windows late), estimated vs realized, mean absolute "
        f"error over {figures['estimate_windows']} windows: ROC-AUC {_num(mae['roc_auc'])}, "
        f"F1 {_num(mae['f1'])}; per stream: "
        + ", ".join(
            f"{name} {_num(e['roc_auc'])} / {_num(e['f1'])}"
            for name, e in figures["estimate_mae_per_stream"].items()
        )
    )
    memory = figures["memory"]
    lines.append(
        f"monitor per model version: {memory['resident_kib']:.0f} KiB held (tracemalloc), "
        f"profile {memory['profile_kib']:.1f} KiB, {memory['tally_counters']} counters a window"
    )
    return lines


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


# -- main -----------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=_corpora.DATA)
    parser.add_argument("--corpus", default="md-agreement", help="the other corpus of scene (a)")
    parser.add_argument("--replays", type=int, default=20, help="no-drift passes over test")
    parser.add_argument("--pre", type=int, default=5, help="windows before each scene's switch")
    parser.add_argument("--post", type=int, default=10, help="windows after it")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=4.0, help="per overhead run")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="a smoke run: fewer of everything")
    parser.add_argument("--skip-serving", action="store_true", help="no overhead through HTTP")
    args = parser.parse_args()
    if args.quick:
        args.replays, args.pre, args.post = 2, 2, 4
        args.epochs, args.seconds, args.repeats = 1, 1.5, 1
    logging.basicConfig(level=logging.WARNING)
    davidson = args.data / _corpora.ENGLISH["davidson"][1][0]
    if not davidson.is_file() or args.corpus not in _corpora.available(args.data):
        log(f"no Davidson or {args.corpus} data under {args.data}: see its */SOURCE.md")
        return 2
    if importlib.util.find_spec("evidently") is None:
        log("Evidently, the peer, is not installed: pip install -e '.[bench]' (make bench does)")
        return 2

    corpus = load_davidson(davidson)
    task = binary_task(corpus)
    rows = {s: corpus.rows(s) for s in SPLITS}
    texts = {s: corpus.texts_of(rows[s]) for s in SPLITS}
    labels = {s: task.labels[rows[s]] for s in SPLITS}
    other = _corpora.load([args.corpus], args.data)
    pools = Pools(texts["test"], labels["test"], other.texts, other.labels, args.corpus)
    policy = JobConfig().threshold_policy

    with tempfile.TemporaryDirectory(prefix="mlcycle-bench-monitoring-") as tmp:
        from _harness import serving_settings

        settings = serving_settings(Path(tmp))
        monitoring = settings.monitoring
        window = monitoring.window_records
        started = time.perf_counter()
        built = build_model(settings, texts, labels, epochs=args.epochs, policy=policy)
        log(
            f"model built in {time.perf_counter() - started:.0f} s, threshold {built.threshold:.4f}"
        )
        scorer = Scorer(built)
        dev_scores = scorer(texts["dev"])
        profile = read_profile(built.folder)
        if profile is None:  # a job's export stage writes it; as it does, from the dev scores
            profile = build_profile(
                model=settings.trainer.model_name,
                version=1,
                transform=built.transform,
                texts=texts["dev"],
                metadata=None,
                scores=dev_scores,
                labels=labels["dev"],
                threshold=built.threshold,
                score_prior=built.score_prior,
            )
            write_profile(built.folder, profile)

        def make() -> tuple[Fingerprinter, Detector, ReferenceProfile]:
            loaded = read_profile(built.folder)
            assert loaded is not None
            return Fingerprinter(loaded, built.transform), Detector(loaded, monitoring), loaded

        fingerprinter, detector, _ = make()
        features = Features(fingerprinter, built.threshold, profile.ngrams.buckets)
        reference = features.frame(texts["dev"], dev_scores)

        ours: dict[str, Verdicts] = {}
        theirs: dict[str, Verdicts] = {}
        errors: dict[str, list[dict[str, float]]] = {}
        all_streams = streams(pools, window, args.replays, args.pre, args.post, args.seed)
        for stream in all_streams:
            scores = scorer(stream.texts)
            ours[stream.name] = run_mlcycle(stream, scores, fingerprinter, detector, window)
            theirs[stream.name] = run_evidently(stream, scores, features, reference, window)
            errors[stream.name] = estimate_errors(
                stream, scores, built.threshold, profile.calibration, window
            )
            log(
                f"  {stream.name}: {len(stream):,} records; mlcycle alarms "
                f"{ {s: sum(a) for s, a in ours[stream.name].alarms.items()} }; evidently "
                f"{ {s: sum(a) for s, a in theirs[stream.name].alarms.items()} }"
            )
        calm = all_streams[0]
        memory = monitor_memory(make, calm.texts[:window], scorer(calm.texts[:window]))

        overhead: dict[str, Any] = {"throughput_ratio": None, "p50_delta_ms": None}
        if not args.skip_serving:
            overhead = measure_overhead(
                settings, built.transform, Path(tmp), texts["test"], args.seconds, args.repeats
            )

    records = ours[calm.name].ends[-1]
    scenes = [s for s in all_streams if s.switch_at is not None]

    def per_100k(verdicts: Verdicts, signals: tuple[str, ...]) -> dict[str, float]:
        return {s: verdicts.raised(s) / records * 100_000 for s in signals}

    def delays(runs: dict[str, Verdicts], signals: tuple[str, ...]) -> dict[str, dict]:
        out = {}
        for scene in scenes:
            row = {g: runs[scene.name].delay(g, scene.switch_at or 0) for g in signals}
            found = [v for v in row.values() if v is not None]
            # The scene's detection: its first signal to alarm.
            out[scene.name] = {**row, ANY: min(found) if found else None}
        return out

    def seconds(runs: dict[str, Verdicts]) -> float:
        return statistics.median(t for v in runs.values() for t in v.seconds)

    def mae(figure: str, names: list[str]) -> float | None:
        values = [e[figure] for name in names for e in errors[name] if figure in e]
        return float(np.mean(values)) if values else None

    theirs_signals = (*SIGNALS, "dataset")
    figures: dict[str, Any] = {
        "benchmark": "monitoring",
        "false_alarms_per_100k": per_100k(ours[calm.name], SIGNALS),
        "budget_per_100k": 100_000 / monitoring.false_alarm_budget_records,
        "detection_delay": delays(ours, SIGNALS),
        "seconds_per_window": seconds(ours),
        "evidently": {
            "false_alarms_per_100k": per_100k(theirs[calm.name], theirs_signals),
            "detection_delay": delays(theirs, theirs_signals),
            "seconds_per_window": seconds(theirs),
        },
        "overhead": {k: overhead[k] for k in ("throughput_ratio", "p50_delta_ms")},
        "overhead_runs": {k: overhead.get(k) for k in ("rps", "p50_ms")},
        "estimate_mae": {"roc_auc": mae("roc_auc", list(errors)), "f1": mae("f1", list(errors))},
        "estimate_mae_per_stream": {
            name: {"roc_auc": mae("roc_auc", [name]), "f1": mae("f1", [name])} for name in errors
        },
        "estimate_windows": sum(len(e) for e in errors.values()),
        "memory": memory,
    }
    # Wide enough for a row of 'not detected' per signal.
    console = Console(width=max(Console().width, 150))
    console.print(alarms_table(figures, records, len(ours[calm.name].ends)))
    console.print(scenes_table(scenes))
    console.print(delay_table(figures))
    for line in summary_lines(figures):
        console.print(line)
    print(orjson.dumps(figures).decode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
