"""The demo's production loop: the live monitor sees a drifted batch raise and clear its alarms,
and moderators' decisions show realized quality beside the estimate.

After the load test, comments go to ``POST /v1/predict`` with their ids, one
monitor window's worth at a time: clean traffic (comments of the dev split, the
population the reference profile describes, a fresh sample each window), then a
drifted batch generated from the test split (comments the model was neither
trained nor tuned on, a burst of new words in some of them and the toxic share
moved), then clean traffic again until every alarm has cleared. Then moderators
decide on a sample of the test comments scored (their labels from the label run,
as decisions through ``POST /v1/feedback``), and the quality windows show what
was realized beside what the scores alone estimated. Decisions are never taken
on dev comments: the served threshold and the calibration the estimate rests on
were fitted there.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime

from mlcycle.clients import ServiceClients
from mlcycle.clients.inference import FeedbackReceipt
from mlcycle.common.errors import Unavailable
from mlcycle.common.settings import Settings
from mlcycle.contracts.monitoring import Decision, QualityWindow, SignalState
from mlcycle.local.monitor_report import MonitorView, collect

# Words no corpus has: the burst of new slang of the drifted batch.
NEW_WORDS = (
    "vrelk", "snorbit", "quazzle", "brindop", "zefty", "glomph",
    "traxle", "munzy", "plorf", "skivvet", "dwindle-bop", "yorkish",
)  # fmt: skip
# Share of the drifted batch's comments that carry new words, and how many each.
NEW_WORD_SHARE = 0.3
NEW_WORDS_PER_COMMENT = 3
# How far the drifted batch moves the toxic share (towards the side with room).
TOXIC_SHIFT = 0.3
# Clean windows sent before the drift, drifted ones, and at most this many to recover.
CLEAN_WINDOWS = 2
DRIFTED_WINDOWS = 2
MAX_RECOVERY_WINDOWS = 8
# Share of the scored comments moderators decide on.
DECIDED_SHARE = 0.6
REQUEST_INSTANCES = 100
WINDOW_WAIT_S = 60.0
REVIEWER = "demo-moderator"


@dataclass(frozen=True)
class Labeled:
    """A test-split comment and its label (what a moderator would decide)."""

    id: str
    text: str
    label: int


@dataclass(frozen=True)
class Phase:
    """One kind of traffic sent: how much, and which signals were in alarm after it."""

    name: str
    windows: int
    records: int
    in_alarm: list[str]
    alarm_since: dict[str, str] = field(default_factory=dict)  # signal -> when it was raised


@dataclass(frozen=True)
class MonitoringRun:
    """What the demo's production loop showed."""

    version: int
    window_records: int
    phases: list[Phase]
    raised: list[str]  # signals in alarm after the drifted batch
    alarm_since: dict[str, str]  # when each of them was raised (ISO 8601)
    cleared: bool  # every alarm cleared by the clean traffic after it
    toxic_share: tuple[float, float]  # of the clean and of the drifted traffic
    receipt: FeedbackReceipt
    quality: list[QualityWindow]
    view: MonitorView


def watch_live_model(
    settings: Settings,
    clients: ServiceClients,
    label_run: str,
    version: int,
    on_progress: Callable[[str], None],
) -> MonitoringRun:
    """Clean, drifted and clean traffic through the monitor, then moderators' decisions."""
    window = settings.monitoring.window_records
    started = datetime.now(UTC)
    rng = random.Random(3)
    on_progress("reading the dev and test splits' comments")
    clean_windows = CLEAN_WINDOWS + MAX_RECOVERY_WINDOWS
    clean = _Windows(split_comments(clients, label_run, "dev", clean_windows * window, rng), rng)
    tested = split_comments(clients, label_run, "test", window, rng)
    drifted = drift(tested, window, random.Random(7))
    phases: list[Phase] = []
    sender = _Sender(clients, version, window, on_progress)
    phases.append(sender.send("clean", [clean.next(window) for _ in range(CLEAN_WINDOWS)]))
    phases.append(sender.send("drifted", [drifted] * DRIFTED_WINDOWS))
    raised = phases[-1].in_alarm
    recovered = sender.send_until_clear("recovery", clean, window, MAX_RECOVERY_WINDOWS)
    phases.append(recovered)
    on_progress("moderators decide on a sample of the scored test comments")
    receipt = decide(clients, settings, drifted, random.Random(11))
    view = _wait_for_quality(clients, version, started)
    quality = next((v.quality for v in view.state.versions if v.model_version == version), [])
    return MonitoringRun(
        version=version,
        window_records=window,
        phases=phases,
        raised=raised,
        alarm_since=phases[1].alarm_since,
        cleared=not recovered.in_alarm,
        toxic_share=(_toxic_share(clean.pool), _toxic_share(drifted)),
        receipt=receipt,
        quality=quality,
        view=view,
    )


def split_comments(
    clients: ServiceClients, label_run: str, split: str, wanted: int, rng: random.Random
) -> list[Labeled]:
    """A random sample of up to ``wanted`` labeled comments of the run's ``split``, with
    their texts. Random, not the first ones: labels come in id order, which groups a mix
    of corpora by corpus."""
    labels: list[tuple[str, int]] = []
    for page in clients.labeler.all_labels(label_run, split=split):
        labels += [(label.item_id, int(label.label)) for label in page.items]
    if not labels:
        raise Unavailable(f"label run {label_run} has no {split} split to send as live traffic")
    labels = rng.sample(labels, min(wanted, len(labels)))
    with ThreadPoolExecutor(8) as pool:
        texts = list(pool.map(lambda item: clients.collector.comment(item[0]).text, labels))
    return [Labeled(i, text, label) for (i, label), text in zip(labels, texts, strict=True)]


class _Windows:
    """Fresh windows from a pool of comments: its comments in a shuffled order, reshuffled
    once used up. Repeating one sample every window would repeat its own chance offset from
    the reference, and a signal whose sample sits above the no-drift median would never
    clear."""

    def __init__(self, pool: list[Labeled], rng: random.Random) -> None:
        self.pool = pool
        self.rng = rng
        self._order: list[Labeled] = []

    def next(self, size: int) -> list[Labeled]:
        batch: list[Labeled] = []
        while len(batch) < size:
            if not self._order:
                self._order = self.rng.sample(self.pool, len(self.pool))
            batch.append(self._order.pop())
        return batch


def drift(clean: Sequence[Labeled], size: int, rng: random.Random) -> list[Labeled]:
    """A drifted batch from the clean comments: the toxic share moved by ``TOXIC_SHIFT``
    and a burst of the same few new words in some comments (new ids: new texts)."""
    positives = [c for c in clean if c.label == 1]
    negatives = [c for c in clean if c.label != 1]
    share = _toxic_share(clean)
    target = share + TOXIC_SHIFT if share <= 0.5 else share - TOXIC_SHIFT
    if not positives or not negatives:
        target = share
    batch = []
    for n in range(size):
        pool = positives if rng.random() < target else negatives
        comment = rng.choice(pool or negatives or positives)
        text = comment.text
        if rng.random() < NEW_WORD_SHARE:
            text = f"{text} {' '.join(rng.sample(NEW_WORDS, NEW_WORDS_PER_COMMENT))}"
        batch.append(Labeled(f"{comment.id}~drift{n}", text, comment.label))
    return batch


def decide(
    clients: ServiceClients, settings: Settings, scored: Sequence[Labeled], rng: random.Random
) -> FeedbackReceipt:
    """Moderators' decisions on a sample of the scored comments (their labels)."""
    distinct = list({c.id: c for c in scored}.values())  # one decision per comment
    sample = rng.sample(distinct, int(len(distinct) * DECIDED_SHARE))
    # With API keys the caller's key is the reviewer; without, the body names one.
    reviewer = None if settings.edge.api_keys else REVIEWER
    decisions = [Decision(comment_id=c.id, label=c.label, reviewer=reviewer) for c in sample]
    totals = {"accepted": 0, "joined": 0, "pending": 0, "duplicate": 0}
    for start in range(0, len(decisions), 500):
        receipt = clients.inference.feedback(decisions[start : start + 500])
        for name in totals:
            totals[name] += getattr(receipt, name)
    return FeedbackReceipt(**totals)


class _Sender:
    """Sends traffic a window at a time and waits until the monitor has judged it."""

    def __init__(
        self,
        clients: ServiceClients,
        version: int,
        window: int,
        on_progress: Callable[[str], None],
    ) -> None:
        self.clients = clients
        self.version = version
        self.window = window
        self.on_progress = on_progress

    def send(self, name: str, windows: list[list[Labeled]]) -> Phase:
        signals: list[SignalState] = []
        for n, comments in enumerate(windows, 1):
            self.on_progress(f"{name} traffic: window {n} of {len(windows)}")
            signals = self._window(comments)
        since = {s.signal: s.since.isoformat() for s in signals if s.alarm and s.since}
        return Phase(name, len(windows), len(windows) * self.window, _in_alarm(signals), since)

    def send_until_clear(self, name: str, windows: _Windows, size: int, most: int) -> Phase:
        signals: list[SignalState] = []
        for n in range(1, most + 1):
            self.on_progress(f"{name} traffic: window {n} (until every alarm clears)")
            signals = self._window(windows.next(size))
            if not _in_alarm(signals):
                return Phase(name, n, n * self.window, [])
        return Phase(name, most, most * self.window, _in_alarm(signals))

    def _window(self, comments: list[Labeled]) -> list[SignalState]:
        before = _judged(self._signals())
        for start in range(0, len(comments), REQUEST_INSTANCES):
            chunk = comments[start : start + REQUEST_INSTANCES]
            self.clients.inference.predict([c.text for c in chunk], ids=[c.id for c in chunk])
        deadline = time.monotonic() + WINDOW_WAIT_S
        while time.monotonic() < deadline:
            signals = self._signals()
            if _judged(signals) > before:
                return signals
            time.sleep(0.25)
        raise Unavailable(
            f"the monitor judged no window of model version {self.version} within "
            f"{WINDOW_WAIT_S:.0f} s of {len(comments)} predictions"
        )

    def _signals(self) -> list[SignalState]:
        state = self.clients.inference.monitoring(self.version)
        return [s for v in state.versions if v.model_version == self.version for s in v.signals]


def _wait_for_quality(clients: ServiceClients, version: int, since: datetime) -> MonitorView:
    """The monitor's view once a quality window has realized figures (or after a while)."""
    deadline = time.monotonic() + 10.0
    while True:
        view = collect(clients.inference, version=version, since=since)
        judged = [w for v in view.state.versions for w in v.quality if w.realized is not None]
        if judged or time.monotonic() > deadline:
            return view
        time.sleep(0.5)


def _judged(signals: Sequence[SignalState]) -> int:
    return max((s.windows for s in signals), default=0)


def _in_alarm(signals: Sequence[SignalState]) -> list[str]:
    return sorted(s.signal for s in signals if s.alarm)


def _toxic_share(comments: Sequence[Labeled]) -> float:
    return sum(c.label == 1 for c in comments) / max(len(comments), 1)
