"""Routing a rollout in the inference core, over the fake model server and cache.

The routing table picks the stable version (not the highest AVAILABLE); the canary
answers its sticky share, each answer in request order and naming its version; a
failing canary falls back to stable and counts as the candidate's errors; shadow
and production-beside-canary scores go off the answer's path into the evidence;
the stream's path and the API's route alike.
"""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from mlcycle.common.errors import Unavailable
from mlcycle.contracts.rollouts import RoutingState, RoutingTable
from mlcycle.contracts.serving import write_routing_table
from mlcycle.featurization.transform import Transform
from mlcycle.inference.batching import RequestBatcher
from mlcycle.inference.evidence import EvidenceBook
from mlcycle.inference.offpath import OffPathScorer, OffPathWork
from mlcycle.inference.routed import RoutedRequest
from mlcycle.inference.routing import RoutingWatcher
from mlcycle.rollouts.evidence import MemoryEvidenceStore
from mlcycle.rollouts.routing import route, routing_key
from mlcycle.rollouts.tally import EvidenceTally
from tests.fixtures.inference import NAME, Rig, corpus, small_transform

ROLLOUT = "ro-test"


@pytest.fixture(scope="module")
def transform() -> Transform:
    return small_transform()


def publish(rig: Rig, **state: object) -> RoutingState:
    routing = RoutingState(name=NAME, rollout=ROLLOUT, **state)  # type: ignore[arg-type]
    write_routing_table(rig.settings.trainer.models_dir, RoutingTable(models={NAME: routing}))
    return routing


def routed(rig: Rig, *, capacity: int = 10_000) -> tuple[EvidenceBook, OffPathScorer]:
    """Give the rig's predictor a routing-aware tracker, an evidence book and an off-path
    scorer (not started: :meth:`OffPathScorer.run_once` drains it)."""
    rig.follow_routing()
    book = EvidenceBook(MemoryEvidenceStore(), 1.0)
    offpath = OffPathScorer(rig.predictor.offpath_scores, book, capacity=capacity, batch_rows=8)
    rig.predictor.evidence, rig.predictor.offpath = book, offpath
    return book, offpath


def texts_and_ids(n: int, seed: int = 3) -> tuple[list[str], list[str]]:
    texts, _, _ = corpus(n=n, seed=seed)
    return texts, [f"c-{seed}-{i}" for i in range(n)]


def test_routing_watcher_reads_the_names_state_and_notices_changes(tmp_path: Path) -> None:
    watcher = RoutingWatcher(tmp_path, NAME, 1.0)
    assert watcher.poll() is False and watcher.state() is None  # no table: route as before
    table = RoutingTable(models={"other": RoutingState(name="other", stable=1)})
    write_routing_table(tmp_path, table)
    assert watcher.poll() is False and watcher.state() is None  # no entry for the name
    state = RoutingState(name=NAME, stable=1, canary=2, canary_share=0.1, rollout="r", revision=1)
    write_routing_table(tmp_path, RoutingTable(models={NAME: state}))
    assert watcher.poll() is True and watcher.state() == state
    assert watcher.poll() is False
    (tmp_path / "routing.json").write_text("{not json")
    assert watcher.poll() is True and watcher.state() is None  # unreadable: as before


def test_the_tables_stable_version_answers_not_the_highest_available(
    tmp_path: Path, transform: Transform
) -> None:
    rig = Rig(tmp_path, transform, versions=(1, 2, 3))
    routed(rig)
    assert rig.tracker.current().version == 3  # no table: the highest AVAILABLE, as before
    publish(rig, stable=2, shadow=3, shadow_share=1.0)
    rig.tracker.refresh()
    serving = rig.tracker.serving()
    assert serving.stable.version == 2 and serving.shadow is not None
    assert serving.shadow.version == 3 and serving.canary is None and serving.routed
    _, predictions = rig.predictor.predict(*texts_and_ids(10)[:1])
    assert {p["model_version"] for p in predictions} == {2}

    publish(rig, stable=4)  # not on the model server: keep answering with the one serving
    rig.tracker.refresh()
    assert rig.tracker.current().version == 2 and not rig.tracker.serving().routed


def test_a_canary_not_yet_available_takes_no_traffic(tmp_path: Path, transform: Transform) -> None:
    rig = Rig(tmp_path, transform, versions=(1,))
    book, _ = routed(rig)
    publish(rig, stable=1, canary=2, canary_share=1.0)
    rig.tracker.refresh()
    assert not rig.tracker.serving().routed
    texts, ids = texts_and_ids(20)
    _, predictions = rig.predictor.predict(texts, ids=ids)
    assert {p["model_version"] for p in predictions} == {1}
    assert book.pending(ROLLOUT).empty  # nothing counted for a version not served
    rig.add_version(2)
    rig.client.available.append(2)
    rig.tracker.refresh()
    _, predictions = rig.predictor.predict(texts, ids=ids)
    assert {p["model_version"] for p in predictions} == {2}


def test_canary_answers_its_sticky_share_in_request_order(
    tmp_path: Path, transform: Transform
) -> None:
    rig = Rig(tmp_path, transform, versions=(1, 2))
    book, offpath = routed(rig)
    state = publish(rig, stable=1, canary=2, canary_share=0.25)
    rig.tracker.refresh()
    texts, ids = texts_and_ids(400)
    _, predictions = rig.predictor.predict(texts, ids=ids)
    versions = [p["model_version"] for p in predictions]
    expected = [route(state, routing_key(i, t)).answer for i, t in zip(ids, texts, strict=True)]
    assert versions == expected
    share = versions.count(2) / len(versions)
    assert 0.18 < share < 0.32
    scores = np.array([p["score"] for p in predictions])
    for version in (1, 2):
        rows = [i for i, v in enumerate(versions) if v == version]
        wanted = rig.expected([texts[i] for i in rows], version)[:, 1]
        np.testing.assert_allclose(scores[rows], wanted, rtol=1e-6)
    # Sticky: asked again (other ids mixed in), the same ids go to the same versions.
    again, _ = texts_and_ids(50, seed=9)
    _, second = rig.predictor.predict(texts[:100] + again, ids=ids[:100] + ["x"] * 50)
    assert [p["model_version"] for p in second[:100]] == versions[:100]

    canary = versions.count(2) + [p["model_version"] for p in second].count(2)
    pending = book.pending(ROLLOUT)
    assert pending.count("candidate:requests") == canary
    assert pending.count("candidate:errors") == 0
    assert pending.count("production:requests") == 550 - canary
    # Production scores every canary answer off the answer's path: the pairs.
    assert offpath.queued == canary
    assert offpath.run_once() == canary
    assert book.pending(ROLLOUT).count("pair:n") == canary


def test_a_failing_canary_is_answered_by_stable_and_counted_as_errors(
    tmp_path: Path, transform: Transform
) -> None:
    rig = Rig(tmp_path, transform, versions=(1, 2))
    book, offpath = routed(rig)
    publish(rig, stable=1, canary=2, canary_share=0.5)
    rig.tracker.refresh()
    rig.client.gone.add(2)  # listed AVAILABLE, but Predict answers NOT_FOUND
    texts, ids = texts_and_ids(100)
    _, predictions = rig.predictor.predict(texts, ids=ids)
    assert {p["model_version"] for p in predictions} == {1}
    np.testing.assert_allclose(
        [p["score"] for p in predictions], rig.expected(texts, 1)[:, 1], rtol=1e-6
    )
    pending = book.pending(ROLLOUT)
    failed = pending.count("candidate:errors")
    assert failed == pending.count("candidate:requests") and 30 < failed < 70
    assert pending.count("production:requests") == 100  # its own share and the fallback
    assert offpath.queued == 0  # production answered them: nothing to compare


def test_a_canary_failing_just_after_a_refresh_still_gets_a_refresh(
    tmp_path: Path, transform: Transform
) -> None:
    # The refresh that ran just before the failure may have read the versions before the
    # canary left the model server: the failure must still bring the next one, however soon.
    rig = Rig(tmp_path, transform, versions=(1, 2), version_refresh_s=60.0)
    routed(rig)
    publish(rig, stable=1, canary=2, canary_share=0.5)
    rig.tracker.start()  # refreshes now; the next periodic refresh is far away
    try:
        assert rig.tracker.serving().canary is not None
        rig.client.available.remove(2)
        rig.tracker.refresh_soon()  # well within WAKE_MIN_S of the refresh
        deadline = time.monotonic() + 5.0
        while rig.tracker.serving().canary is not None:
            assert time.monotonic() < deadline, "the failure brought no refresh"
            time.sleep(0.02)
    finally:
        rig.tracker.stop()


def test_a_failing_stable_version_still_fails_the_request(
    tmp_path: Path, transform: Transform
) -> None:
    rig = Rig(tmp_path, transform, versions=(1, 2))
    book, _ = routed(rig)
    publish(rig, stable=1, canary=2, canary_share=0.5)
    rig.tracker.refresh()
    rig.client.down = True
    texts, ids = texts_and_ids(20)
    with pytest.raises(Unavailable):
        rig.predictor.predict(texts, ids=ids)
    # Both versions failed alike (a model server down): production's errors say so, and the
    # policy holds none of the candidate's against it.
    assert book.pending(ROLLOUT).count("production:errors") > 0


def test_shadow_never_changes_answers_and_pairs_every_instance(
    tmp_path: Path, transform: Transform
) -> None:
    rig = Rig(tmp_path, transform, versions=(1, 2))
    book, offpath = routed(rig)
    publish(rig, stable=1)
    rig.tracker.refresh()
    texts, ids = texts_and_ids(60)
    _, before = rig.predictor.predict(texts, ids=ids)
    publish(rig, stable=1, shadow=2, shadow_share=1.0)
    rig.tracker.refresh()
    _, during = rig.predictor.predict(texts, ids=ids)
    assert during == before
    assert offpath.run_once() == 60
    pending = book.pending(ROLLOUT)
    assert pending.count("pair:n") == 60
    assert pending.count("candidate:requests") == 60 and pending.count("candidate:errors") == 0
    deltas = rig.expected(texts, 2)[:, 1] - rig.expected(texts, 1)[:, 1]
    assert pending.count("pair:delta_sum") == pytest.approx(float(deltas.sum()), abs=1e-4)


def test_the_api_path_routes_like_the_stream_path(tmp_path: Path, transform: Transform) -> None:
    rig = Rig(tmp_path, transform, versions=(1, 2))
    routed(rig)
    publish(rig, stable=1, canary=2, canary_share=0.4)
    rig.tracker.refresh()
    texts, ids = texts_and_ids(80)
    _, streamed = rig.predictor.predict(texts, ids=ids, source="stream")
    batcher = RequestBatcher(rig.predictor, max_rows=8)

    fresh, fresh_ids = texts_and_ids(40, seed=5)  # not cached: the canary is asked

    async def both() -> list:
        answer = await batcher.predict(texts, None, ids)
        rig.client.gone.add(2)
        failed = await batcher.predict(fresh, None, fresh_ids)
        await batcher.close()
        return [answer, failed]

    (_, api), (_, fallback) = asyncio.run(both())
    assert [p["model_version"] for p in api] == [p["model_version"] for p in streamed]
    np.testing.assert_allclose([p["score"] for p in api], [p["score"] for p in streamed])
    assert {p["model_version"] for p in fallback} == {1}


def test_routed_request_groups_per_version_and_skips_fallbacks_off_path(
    tmp_path: Path, transform: Transform
) -> None:
    rig = Rig(tmp_path, transform, versions=(1, 2))
    routed(rig)
    publish(rig, stable=1, canary=2, canary_share=0.5)
    rig.tracker.refresh()
    texts, ids = texts_and_ids(30)
    request = RoutedRequest(rig.tracker.serving(), texts, None, ids)
    assert sorted(g.model.version for g in request.groups) == [1, 2]
    positions = sorted(p for g in request.groups for p in g.positions)
    assert positions == list(range(30))
    (canary,) = [g for g in request.groups if g.candidate]
    assert request.offpath == {1: canary.positions}
    fallback = request.failed(canary, 0.01, None)
    assert fallback.model.version == 1 and fallback.positions == canary.positions
    for group in [g for g in request.groups if not g.candidate] + [fallback]:
        request.answered(group, rig.expected(group.texts, 1), 0.01, None)
    assert request.offpath_work() == []
    rows = request.finish(source="api", seconds=0.01, monitor=None, offpath=None)
    assert [r["model_version"] for r in rows] == [1] * 30


def test_a_full_offpath_queue_skips_without_waiting(tmp_path: Path, transform: Transform) -> None:
    rig = Rig(tmp_path, transform, versions=(1, 2))
    book = EvidenceBook(MemoryEvidenceStore(), 1.0)
    offpath = OffPathScorer(rig.predictor.offpath_scores, book, capacity=10, batch_rows=8)
    model = rig.tracker.current()
    texts, _ = texts_and_ids(8)
    work = OffPathWork(ROLLOUT, model, "candidate", model, texts, None, None, np.zeros(8))
    assert offpath.offer(work) is True
    assert offpath.offer(work) is False  # 16 > 10: skipped, not queued
    assert offpath.queued == 8
    assert offpath.run_once() == 8 and offpath.queued == 0
    assert book.pending(ROLLOUT).count("pair:n") == 8


def test_evidence_book_keeps_tallies_while_the_store_fails() -> None:
    class Flaky(MemoryEvidenceStore):
        failing = True

        def add(self, rollout: str, tally: EvidenceTally, now: float) -> None:
            if self.failing:
                raise ConnectionError("store away")
            super().add(rollout, tally, now)

    store = Flaky()
    book = EvidenceBook(store, 1.0)
    book.call(ROLLOUT, "candidate", 5, 0.002, True)
    assert book.flush() is False
    book.call(ROLLOUT, "candidate", 3, 0.002, False)
    store.failing = False
    assert book.flush() is True
    evidence = store.read(ROLLOUT)
    assert evidence.requests("candidate") == 8 and evidence.errors("candidate") == 3
    assert book.pending(ROLLOUT).empty


def test_offpath_worker_scores_in_the_background(tmp_path: Path, transform: Transform) -> None:
    rig = Rig(tmp_path, transform, versions=(1, 2))
    book, offpath = routed(rig)
    publish(rig, stable=1, shadow=2, shadow_share=1.0)
    rig.tracker.refresh()
    offpath.start()
    try:
        texts, ids = texts_and_ids(20)
        rig.predictor.predict(texts, ids=ids)
        done = threading.Event()
        for _ in range(200):
            if book.pending(ROLLOUT).count("pair:n") == 20:
                done.set()
                break
            threading.Event().wait(0.01)
        assert done.is_set()
    finally:
        offpath.stop()


def _take(
    tmp_path: Path, transform: Transform, queued: list[tuple[int, int, bool]]
) -> tuple[list[int], list[int]]:
    """Which of ``queued`` (version, rows, off-path) one batch takes, and what is left."""
    from collections import deque

    from mlcycle.inference.batch_jobs import Job, take_batch

    rig = Rig(tmp_path, transform, versions=(1, 2))
    model = {v: rig.tracker._load(v) for v in (1, 2)}

    async def take() -> tuple[list[int], list[int]]:
        loop = asyncio.get_running_loop()
        jobs = [
            Job(model[v], [f"k{i}"] * rows, ["t"] * rows, None, loop.create_future(), offpath)
            for i, (v, rows, offpath) in enumerate(queued)
        ]
        queue = deque(jobs)
        taken = take_batch(queue, max_rows=8)
        return [jobs.index(j) for j in taken], [jobs.index(j) for j in queue]

    return asyncio.run(take())


def test_a_batch_takes_its_versions_jobs_past_another_versions(
    tmp_path: Path, transform: Transform
) -> None:
    queued = [(1, 3, False), (2, 2, False), (1, 4, False), (1, 2, False), (2, 1, False)]
    taken, left = _take(tmp_path, transform, queued)
    assert taken == [0, 2]  # version 1's, within 8 rows; the 2-row one waits for the next
    assert left == [1, 3, 4]  # in their order


def test_offpath_jobs_wait_while_an_answers_job_does(tmp_path: Path, transform: Transform) -> None:
    queued = [(2, 4, True), (1, 1, False), (2, 2, True), (1, 2, False)]
    taken, left = _take(tmp_path, transform, queued)
    assert (taken, left) == ([1, 3], [0, 2])  # the answers first, though queued later
    taken, left = _take(tmp_path, transform, [(2, 4, True), (1, 3, True), (2, 2, True)])
    assert (taken, left) == ([0, 2], [1])  # none waits: the off-path work, a version a batch


def test_calls_tallied_at_once_count_what_each_call_would() -> None:
    from mlcycle.inference.evidence import tally_calls

    rng = np.random.default_rng(4)
    calls = [
        (
            "a" if i % 3 else "b",
            "production" if i % 2 else "candidate",
            int(rng.integers(1, 70)),
            float(rng.choice([0.0, 1e-5, 0.0005, 0.003, 0.05, 2.0, 90.0])),
            bool(rng.random() < 0.8),
        )
        for i in range(300)
    ]
    one_by_one: dict[str, EvidenceTally] = {}
    for rollout, role, instances, latency_s, ok in calls:
        one_by_one.setdefault(rollout, EvidenceTally()).call(role, instances, latency_s, ok)
    at_once = tally_calls(calls)  # type: ignore[arg-type]
    assert at_once.keys() == one_by_one.keys()
    for rollout, tally in one_by_one.items():
        expected, got = tally.fields(), at_once[rollout].fields()
        assert got.keys() == expected.keys()
        for name, value in expected.items():
            assert got[name] == pytest.approx(value), name


def test_routed_versions_stay_loaded_however_many_came_between(
    tmp_path: Path, transform: Transform
) -> None:
    rig = Rig(tmp_path, transform, versions=tuple(range(1, 9)))
    routed(rig)
    for stable in range(2, 9):  # every version served in turn, version 1 kept as the shadow
        publish(rig, stable=stable, shadow=1, shadow_share=1.0)
        rig.tracker.refresh()
    serving = rig.tracker.serving()
    assert serving.stable.version == 8 and serving.shadow is not None
    assert serving.shadow.version == 1
    loaded = [m.version for m in rig.tracker.loaded_versions()]
    assert 1 in loaded and 8 in loaded and len(loaded) <= 4
