"""The feedback join's one contract, run against the in-process store and real Redis."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from mlcycle.contracts.monitoring import Decision
from mlcycle.monitoring.feedback_redis import RedisFeedbackStore
from mlcycle.monitoring.feedback_store import (
    FeedbackStore,
    MemoryFeedbackStore,
)

MODEL = "toxicity"
T0 = datetime(2026, 1, 1, tzinfo=UTC)
Factory = Callable[..., FeedbackStore]


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.integration)])
def make_store(request: pytest.FixtureRequest) -> Iterator[Factory]:
    made: list[FeedbackStore] = []

    def make(retention_s: float = 60.0, window_decisions: int = 10, **options: object):
        if request.param == "memory":
            store: FeedbackStore = MemoryFeedbackStore(
                retention_s=retention_s, window_decisions=window_decisions, **options
            )
        else:
            server = request.getfixturevalue("redis_server")
            store = RedisFeedbackStore.from_url(
                server.url,
                retention_s=retention_s,
                window_decisions=window_decisions,
                prefix=f"test:{uuid.uuid4().hex}:",
                **options,
            )
        made.append(store)
        return store

    yield make
    for store in made:
        store.close()


def score(store: FeedbackStore, cid: str, value: float, version: int = 1, at: datetime = T0):
    store.record_score(cid, MODEL, version, value, 0.5, at)


def decide(cid: str, label: int, **fields: object) -> Decision:
    return Decision(comment_id=cid, label=label, **fields)


def filling(store: FeedbackStore, version: int = 1):
    return store.quality_windows(MODEL, version)[-1]


def test_a_decision_joins_its_score(make_store: Factory) -> None:
    store = make_store()
    score(store, "c1", 0.9)
    score(store, "c2", 0.1)
    later = T0 + timedelta(seconds=30)
    assert store.add_decisions([decide("c1", 1, decided_at=later)], "ann") == ["joined"]
    assert store.add_decisions([decide("c2", 1, decided_at=later)], "ann") == ["joined"]
    window = filling(store)
    assert window.closed_at is None and window.decisions == 2 and window.pending == 0
    assert window.realized is not None
    assert window.realized.precision == 1.0 and window.realized.recall == 0.5
    assert window.label_lag_s == {"p50": 30.0, "p90": 30.0, "max": 30.0}
    assert window.estimated is not None and window.estimated.comments == 2
    assert set(window.estimate_error) >= {"precision", "recall", "f1"}


def test_unknown_ids_wait_and_join_when_the_score_arrives(make_store: Factory) -> None:
    store = make_store()
    early = [decide("later", 1, decided_at=T0 + timedelta(seconds=5)), decide("never", 0)]
    assert store.add_decisions(early, "ann") == ["pending", "pending"]
    score(store, "other", 0.2)
    assert filling(store).pending == 2 and filling(store).decisions == 0
    score(store, "later", 0.8)
    window = filling(store)
    assert window.decisions == 1 and window.pending == 1
    assert window.label_lag_s["max"] == 5.0
    assert window.realized is not None and window.realized.recall == 1.0


def test_duplicates_count_once_and_a_changed_label_replaces(make_store: Factory) -> None:
    store = make_store()
    score(store, "c1", 0.9)
    assert store.add_decisions([decide("c1", 1)], "ann") == ["joined"]
    assert store.add_decisions([decide("c1", 1), decide("c1", 1)], "ann") == [
        "duplicate",
        "duplicate",
    ]
    assert store.add_decisions([decide("c1", 1)], "bob") == ["joined"]  # another reviewer
    assert filling(store).decisions == 2
    assert store.add_decisions([decide("c1", 0)], "ann") == ["joined"]  # ann changed her mind
    window = filling(store)
    assert window.decisions == 2
    assert window.realized is not None and window.realized.precision == 0.5
    # The same holds while the decision waits for its score.
    assert store.add_decisions([decide("p", 1), decide("p", 1)], "ann") == ["pending", "duplicate"]
    assert store.add_decisions([decide("p", 0)], "ann") == ["pending"]
    assert filling(store).pending == 1
    score(store, "p", 0.9)
    window = filling(store)
    assert window.decisions == 3 and window.pending == 0
    assert window.realized is not None and window.realized.precision == pytest.approx(1 / 3)


def accuracy(store: FeedbackStore, version: int) -> tuple[int, float | None]:
    """(decisions, accuracy) of ``version``'s filling window."""
    window = filling(store, version)
    return window.decisions, None if window.realized is None else window.realized.accuracy


def test_each_version_keeps_its_own_score_and_a_decision_joins_every_one(
    make_store: Factory,
) -> None:
    """Production's answer and the shadow's score of one comment: neither replaces the other."""
    store = make_store()
    score(store, "c1", 0.9, version=1)  # production, the answer
    score(store, "c2", 0.8, version=1)
    before = filling(store, 1)
    score(store, "c1", 0.2, version=2)  # the shadow, off the answer's path
    assert filling(store, 1) == before  # production's window unchanged by the shadow's score
    assert store.add_decisions([decide("c1", 1)], "ann") == ["joined"]
    assert accuracy(store, 1) == (1, 1.0)  # 0.9 flagged a toxic comment
    assert accuracy(store, 2) == (1, 0.0)  # 0.2 missed it
    assert filling(store, 1).estimated.comments == 1  # type: ignore[union-attr]
    assert filling(store, 2).estimated.comments == 1  # type: ignore[union-attr]
    # A version's score arriving after the decision joins it too (the shadow scores late).
    assert store.add_decisions([decide("c2", 0)], "ann") == ["joined"]
    score(store, "c2", 0.1, version=2)
    assert accuracy(store, 1) == (2, 0.5)
    assert accuracy(store, 2) == (2, 0.5)
    assert filling(store, 1).pending == 0


def test_a_waiting_decision_joins_each_versions_score_as_it_arrives(make_store: Factory) -> None:
    store = make_store()
    assert store.add_decisions([decide("c1", 1)], "ann") == ["pending"]
    score(store, "c1", 0.9, version=1)
    assert accuracy(store, 1) == (1, 1.0)
    assert filling(store, 1).pending == 0  # joined: no longer waiting, whatever comes next
    assert store.quality_windows(MODEL, 2) == []
    score(store, "c1", 0.3, version=2)
    assert accuracy(store, 2) == (1, 0.0)
    assert accuracy(store, 1) == (1, 1.0)  # once per version
    score(store, "c1", 0.3, version=2)  # the shadow scores it again: still once
    assert accuracy(store, 2) == (1, 0.0)


def test_a_rescore_by_the_same_version_replaces_and_joins_once(make_store: Factory) -> None:
    store = make_store(window_decisions=2)
    score(store, "c1", 0.9)
    score(store, "c1", 0.2)  # replaces: the decision below joins 0.2
    assert store.add_decisions([decide("c1", 1)], "ann") == ["joined"]
    assert accuracy(store, 1) == (1, 0.0)
    score(store, "c1", 0.2)
    assert accuracy(store, 1) == (1, 0.0)
    score(store, "c2", 0.9)
    assert store.add_decisions([decide("c2", 1)], "ann") == ["joined"]
    closed = store.quality_windows(MODEL, 1)
    assert [w.decisions for w in closed] == [2, 0]
    score(store, "c1", 0.2)  # re-scored after its window closed: not counted again
    assert [w.decisions for w in store.quality_windows(MODEL, 1)] == [2, 0]


def test_duplicates_and_changed_labels_hold_per_version(make_store: Factory) -> None:
    store = make_store()
    score(store, "c1", 0.9, version=1)
    score(store, "c1", 0.2, version=2)
    assert store.add_decisions([decide("c1", 1), decide("c1", 1)], "ann") == [
        "joined",
        "duplicate",
    ]
    assert accuracy(store, 1) == (1, 1.0) and accuracy(store, 2) == (1, 0.0)
    assert store.add_decisions([decide("c1", 0)], "ann") == ["joined"]  # she changed her mind
    assert accuracy(store, 1) == (1, 0.0) and accuracy(store, 2) == (1, 1.0)
    score(store, "c1", 0.2, version=2)  # a re-score joins the changed label no second time
    assert accuracy(store, 2) == (1, 1.0)
    # While pending too: the changed label is the one each version's score joins.
    assert store.add_decisions([decide("p", 1), decide("p", 1)], "bob") == [
        "pending",
        "duplicate",
    ]
    assert store.add_decisions([decide("p", 0)], "bob") == ["pending"]
    assert filling(store, 1).pending == 1
    score(store, "p", 0.1, version=1)
    score(store, "p", 0.7, version=2)
    assert accuracy(store, 1) == (2, 0.5) and accuracy(store, 2) == (2, 0.5)
    assert filling(store, 1).pending == 0


def test_a_decision_names_its_reviewer(make_store: Factory) -> None:
    store = make_store()
    score(store, "c1", 0.9)
    assert store.add_decisions([decide("c1", 1, reviewer="ann")]) == ["joined"]
    with pytest.raises(ValueError, match="no reviewer"):
        store.add_decisions([decide("c1", 1)])


def test_windows_close_per_version_and_are_kept(make_store: Factory) -> None:
    store = make_store(window_decisions=10, windows_kept=2)
    for i in range(45):
        score(store, f"a{i}", (i % 10) / 10 + 0.05, version=1)
    score(store, "b0", 0.7, version=2)
    outcomes = store.add_decisions([decide(f"a{i}", int(i % 10 >= 6)) for i in range(45)], "ann")
    assert outcomes == ["joined"] * 45
    store.add_decisions([decide("b0", 1)], "ann")
    windows = store.quality_windows(MODEL, 1)
    # 4 windows closed, the oldest 2 dropped, then the filling one with 5 decisions.
    assert [w.decisions for w in windows] == [10, 10, 5]
    assert all(w.closed_at is not None for w in windows[:2]) and windows[2].closed_at is None
    assert windows[0].started_at <= windows[1].started_at
    closed = windows[1]
    assert closed.realized is not None and closed.realized.roc_auc == 1.0
    assert closed.estimated is not None and closed.estimated.comments == 10
    assert closed.estimate_error["roc_auc"] == pytest.approx(1.0 - closed.estimated.roc_auc)
    assert [w.decisions for w in store.quality_windows(MODEL, 2)] == [1]
    assert store.quality_windows(MODEL, 3) == []


def test_quality_is_estimated_before_any_decision(make_store: Factory) -> None:
    store = make_store()
    for i in range(20):
        score(store, f"c{i}", i / 20)
    window = filling(store)
    assert window.realized is None and window.decisions == 0
    assert window.estimated is not None and window.estimated.comments == 20
    assert window.estimated.precision == pytest.approx(sum(i / 20 for i in range(10, 20)) / 10)


def test_the_calibration_of_the_version_is_read(make_store: Factory) -> None:
    from mlcycle.contracts.monitoring import CalibrationBins

    asked: list[tuple[str, int]] = []

    def calibration(model: str, version: int) -> CalibrationBins:
        asked.append((model, version))
        return CalibrationBins(edges=[0.0, 0.5, 1.0], counts=[5, 5], positive_rate=[0.0, 1.0])

    store = make_store(calibration=calibration)
    score(store, "c1", 0.9)
    score(store, "c2", 0.2)
    window = filling(store)
    assert (MODEL, 1) in asked
    assert window.estimated is not None and window.estimated.precision == pytest.approx(1.0)


def test_scores_and_waiting_decisions_expire(make_store: Factory) -> None:
    store = make_store(retention_s=0.4)
    score(store, "old", 0.9)
    assert store.add_decisions([decide("early", 1)], "ann") == ["pending"]
    time.sleep(0.6)
    # The score is gone: a decision on it waits; the early decision is gone: no join.
    assert store.add_decisions([decide("old", 1)], "ann") == ["pending"]
    score(store, "early", 0.9)
    window = filling(store)
    assert window.decisions == 0 and window.pending == 1


def test_two_processes_share_redis(redis_server, tmp_path: Path) -> None:
    """Two processes record and decide at once; every decision is counted exactly once."""
    prefix = f"test:{uuid.uuid4().hex}:"
    code = textwrap.dedent(
        """
        import sys
        from datetime import UTC, datetime
        from mlcycle.contracts.monitoring import Decision
        from mlcycle.monitoring.feedback_redis import RedisFeedbackStore
        from mlcycle.monitoring.feedback_store import ScoreRecord
        url, prefix, part = sys.argv[1], sys.argv[2], int(sys.argv[3])
        store = RedisFeedbackStore.from_url(url, retention_s=60, window_decisions=25,
                                            prefix=prefix)
        now = datetime.now(UTC)
        for i in range(60):
            # Each process scores its own comments and decides on the other's.
            store.record_scores([ScoreRecord(f"{part}-{i}", "toxicity", 1, 0.9, 0.5, now)])
            store.add_decisions([Decision(comment_id=f"{1 - part}-{i}", label=1)], f"r{part}")
        """
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    workers = [
        subprocess.Popen([sys.executable, "-c", code, redis_server.url, prefix, str(part)], env=env)
        for part in (0, 1)
    ]
    assert [w.wait(60) for w in workers] == [0, 0]
    store = RedisFeedbackStore.from_url(
        redis_server.url, retention_s=60, window_decisions=25, prefix=prefix
    )
    windows = store.quality_windows(MODEL, 1)
    store.close()
    assert [w.decisions for w in windows] == [25, 25, 25, 25, 20]
    assert windows[-1].pending == 0
    assert sum(w.estimated.comments for w in windows if w.estimated) == 120


def test_a_redis_outage_is_unavailable_not_a_crash() -> None:
    from mlcycle.common.errors import Unavailable
    from mlcycle.common.infra.process import free_port

    store = RedisFeedbackStore.from_url(
        f"redis://127.0.0.1:{free_port()}/0", retention_s=60, window_decisions=10
    )
    with pytest.raises(Unavailable, match="feedback store"):
        store.add_decisions([decide("c1", 1)], "ann")
    with pytest.raises(Unavailable):
        score(store, "c1", 0.5)
    store.close()
