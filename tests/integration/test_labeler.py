"""The labeler against the real broker and real stores: runs, resume, live labels, REST API."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest

from mlcycle.clients.labeler import LabelerClient
from mlcycle.common.errors import Unavailable
from mlcycle.common.http import BackgroundServer
from mlcycle.common.kafka.consumer import ConsumerLoop
from mlcycle.common.kafka.producer import RecordProducer
from mlcycle.common.kafka.progress import CommittedOffsets
from mlcycle.common.keys import Caller, Scope
from mlcycle.common.settings import Settings
from mlcycle.common.store import COMMENTS, LABELS, RUNS, VOTES, Store, open_store
from mlcycle.contracts.comments import Comment, HumanLabel, Vote
from mlcycle.contracts.label_runs import (
    LabelIssue,
    LabelIssuesSummary,
    LabelRun,
    ReviewItem,
    RunParams,
)
from mlcycle.contracts.repositories.label_runs import LabelIssues, LabelRuns
from mlcycle.labeler.api import create_app, resume_unfinished, run_worker
from mlcycle.labeler.human_labels import HumanLabels
from mlcycle.labeler.runs import LabelRunner
from mlcycle.labeler.stream import LabelStream, live_run, stream_topics
from tests.fixtures.broker import (
    LoopThread,
    broker_settings,
    indexer_thread,
    read_all,
    wait_for,
)

pytestmark = pytest.mark.integration

N_ITEMS = 60


def seed(store: Store, n_items: int = N_ITEMS) -> None:
    """Comments with 5 crowd votes each: items divisible by 4 are toxic; w4 is always wrong."""
    comments = [
        Comment(id=f"c{i:03d}", text=f"comment number {i}", metadata={}).to_document()
        for i in range(n_items)
    ]
    votes = [
        Vote(
            item_id=f"c{i:03d}",
            annotator_id=f"w{k}",
            label=int(i % 4 == 0) if k != 4 else int(i % 4 != 0),
        ).to_document()
        for i in range(n_items)
        for k in range(5)
    ]
    store.upsert(COMMENTS, comments)
    store.upsert(VOTES, votes)
    store.refresh()


@pytest.fixture
def settings(kafka_settings: Settings) -> Settings:
    return kafka_settings.replace(gold_min_votes=5)


@pytest.fixture
def producer(settings: Settings) -> Iterator[RecordProducer]:
    with RecordProducer(settings.kafka) as producer:
        yield producer


def label_events(settings: Settings, expected: int) -> list[dict]:
    return [
        orjson.loads(r.value) for r in read_all(settings, settings.kafka.topics.labels, expected)
    ]


# -- label runs, on both store backends ---------------------------------------------------------


def test_a_run_labels_every_item_and_publishes_each_label_once(
    settings: Settings, store: Store, producer: RecordProducer
) -> None:
    seed(store)
    runner = LabelRunner(
        settings.labeler, store, producer, topic=settings.kafka.topics.labels, chunk_items=16
    )
    run = runner.execute(runner.create(RunParams(labeling_functions=[])).id).to_document()

    assert run["status"] == "succeeded"
    stats = run["stats"]
    assert stats["labeled"] == N_ITEMS and stats["gold_items"] == N_ITEMS
    assert stats["accuracy_on_gold"] == 1.0
    assert sum(b["1"] for b in stats["class_balance"].values()) == N_ITEMS // 4
    assert run["progress"]["chunks_done"] == run["progress"]["chunks_total"] == 4
    # The always-wrong worker is found out: the report shows it below chance.
    workers = {w["voter_id"]: w for w in run["report"]["workers"]["top"]}
    assert workers["w4"]["accuracy"] < 0.5 < workers["w0"]["accuracy"]

    store.refresh()
    assert store.count(LABELS, {"run": run["id"]}) == N_ITEMS
    events = label_events(settings, N_ITEMS)
    assert Counter(e["item_id"] for e in events) == {f"c{i:03d}": 1 for i in range(N_ITEMS)}
    assert stats["events"] == N_ITEMS

    # A second run over the same votes changes nothing, so it publishes nothing.
    again = runner.execute(runner.create(RunParams(labeling_functions=[])).id).to_document()
    assert again["previous_run"] == run["id"]
    assert again["stats"]["events"] == 0


def test_a_changed_vote_publishes_only_the_changed_label(
    settings: Settings, store: Store, producer: RecordProducer
) -> None:
    seed(store)
    runner = LabelRunner(settings.labeler, store, producer, topic=settings.kafka.topics.labels)
    params = RunParams(strategy="majority", labeling_functions=[])
    runner.execute(runner.create(params).id)
    # c001 stands 4 to 1 for class 0; five more votes flip it to toxic.
    store.upsert(
        VOTES,
        [Vote(item_id="c001", annotator_id=f"x{k}", label=1).to_document() for k in range(5)],
    )
    second = runner.execute(runner.create(params).id).to_document()
    assert second["stats"]["events"] == 1
    events = [e for e in label_events(settings, N_ITEMS + 1) if e["item_id"] == "c001"]
    assert [e["label"] for e in events] == [0, 1]  # one partition per item: in order


def test_a_killed_run_resumes_without_duplicates(
    settings: Settings, sqlite_store: Store, producer: RecordProducer, monkeypatch
) -> None:
    seed(sqlite_store)
    runner = LabelRunner(
        settings.labeler, sqlite_store, producer, topic=settings.kafka.topics.labels, chunk_items=16
    )
    run_id = runner.create(RunParams(labeling_functions=[])).id
    real_send = producer.send_batch
    sent = []

    def flaky_send(topic: str, items, timeout_s: float = 30.0) -> int:
        if len(sent) == 2:  # the broker goes away during the third chunk
            raise Unavailable("broker gone")
        sent.append(topic)
        return real_send(topic, items, timeout_s)

    monkeypatch.setattr(producer, "send_batch", flaky_send)
    with pytest.raises(Unavailable):
        runner.execute(run_id)
    failed = LabelRuns(sqlite_store).require(run_id).to_document()
    assert failed["status"] == "failed" and failed["progress"]["chunks_done"] == 2

    monkeypatch.setattr(producer, "send_batch", real_send)
    done = runner.execute(run_id).to_document()
    assert done["status"] == "succeeded"
    assert sqlite_store.count(LABELS, {"run": run_id}) == N_ITEMS
    events = label_events(settings, N_ITEMS)
    assert Counter(e["item_id"] for e in events).most_common(1)[0][1] == 1
    assert len(events) == N_ITEMS == done["stats"]["events"]


def test_a_resumed_run_labels_the_items_it_started_with_though_the_corpus_grew(
    settings: Settings, store: Store, producer: RecordProducer, monkeypatch
) -> None:
    seed(store)
    runner = LabelRunner(
        settings.labeler, store, producer, topic=settings.kafka.topics.labels, chunk_items=16
    )
    run_id = runner.create(RunParams(labeling_functions=[])).id
    real_send = producer.send_batch
    sent = []

    def flaky_send(topic: str, items, timeout_s: float = 30.0) -> int:
        if len(sent) == 2:  # the broker goes away during the third chunk
            raise Unavailable("broker gone")
        sent.append(topic)
        return real_send(topic, items, timeout_s)

    monkeypatch.setattr(producer, "send_batch", flaky_send)
    with pytest.raises(Unavailable):
        runner.execute(run_id)
    # Comments arrive meanwhile, with ids before, among and after the run's items.
    grown = ["a000", "a001", "a002", "c010a", "c020a", "c040a", "z999"]
    store.upsert(COMMENTS, [Comment(id=i, text=f"new {i}").to_document() for i in grown])
    store.upsert(
        VOTES,
        [
            Vote(item_id=i, annotator_id=f"w{k}", label=1).to_document()
            for i in grown
            for k in range(5)
        ],
    )
    store.refresh()

    monkeypatch.setattr(producer, "send_batch", real_send)
    done = runner.execute(run_id).to_document()
    assert done["status"] == "succeeded"
    store.refresh()
    labeled = {doc["item_id"] for doc in store.scan(LABELS, {"run": run_id})}
    assert labeled == {f"c{i:03d}" for i in range(N_ITEMS)}  # none skipped, none new
    events = [e for e in label_events(settings, N_ITEMS) if e["run"] == run_id]
    assert Counter(e["item_id"] for e in events).most_common(1)[0][1] == 1  # none repeated
    assert {e["item_id"] for e in events} == labeled


def test_a_raising_labeling_function_is_reported_and_the_run_goes_on(
    settings: Settings, sqlite_store: Store, producer: RecordProducer
) -> None:
    from mlcycle.labeler import lfs

    @lfs.labeling_function("explodes_on_7", task="toxicity")
    def explodes(text: str, metadata: dict) -> int:
        if "7" in text:
            raise RuntimeError("cannot read sevens")
        return lfs.ABSTAIN

    try:
        seed(sqlite_store)
        runner = LabelRunner(
            settings.labeler, sqlite_store, producer, topic=settings.kafka.topics.labels
        )
        params = RunParams(labeling_functions=["explodes_on_7", "shouting"])
        run = runner.execute(runner.create(params).id).to_document()
    finally:
        lfs.unregister("explodes_on_7")
    assert run["status"] == "succeeded" and run["stats"]["labeled"] == N_ITEMS
    report = {lf["name"]: lf for lf in run["report"]["labeling_functions"]}
    errors = report["explodes_on_7"]["errors"]
    assert errors["count"] == sum("7" in f"comment number {i}" for i in range(N_ITEMS))
    assert "cannot read sevens" in errors["message"]


# -- live labels -------------------------------------------------------------------------------


def stream_loop(
    settings: Settings, store: Store, producer: RecordProducer, indexer: CommittedOffsets
) -> ConsumerLoop:
    """The live-label stream as ``run_stream`` wires it; it waits at most 0.5 s per try."""
    return ConsumerLoop(
        settings.kafka,
        topics=stream_topics(settings.kafka.topics),
        group_id=settings.labeler.group_id,
        handler=LabelStream(
            settings.labeler, settings.kafka.topics, store, producer, indexer, indexer_wait_s=0.5
        ),
        service="labeler-stream",
    )


@pytest.fixture
def offsets(settings: Settings) -> Iterator[CommittedOffsets]:
    offsets = CommittedOffsets(settings.kafka, settings.collector.indexer_group_id)
    yield offsets
    offsets.close()


@pytest.fixture
def stream(
    settings: Settings, producer: RecordProducer, offsets: CommittedOffsets
) -> Iterator[tuple[Store, ConsumerLoop]]:
    """The stream and the collector-indexer it waits for, both running."""
    store = open_store(settings.store)
    indexer = indexer_thread(settings, store)
    loop = LoopThread(stream_loop(settings, store, producer, offsets))
    yield store, loop.loop
    loop.stop()
    indexer.stop()
    store.close()


def test_live_labels_wait_for_the_indexer_to_store_earlier_votes(
    settings: Settings, producer: RecordProducer, offsets: CommittedOffsets
) -> None:
    """A vote consumed before its comment counts once the comment comes, however late stored."""
    topics = settings.kafka.topics
    store = open_store(settings.store)
    loop = LoopThread(stream_loop(settings, store, producer, offsets))
    indexer = None
    try:
        stats = loop.loop.stats

        def tried(batches: int) -> bool:  # handled, or waited for the indexer and retried
            return stats.batches + stats.retries >= batches

        vote = Vote(item_id="late", annotator_id="w1", label=1)
        producer.send_batch(topics.votes_raw, [vote.to_message()])
        wait_for(lambda: tried(1))
        producer.send_batch(topics.comments_raw, [Comment(id="late", text="hi").to_message()])
        wait_for(lambda: tried(2))
        # Only now does the indexer store the vote and the comment.
        indexer = indexer_thread(settings, store)
        live = f"{live_run('toxicity')}:late"
        wait_for(lambda: store.get(LABELS, live) is not None, timeout_s=45)
        assert store.get(LABELS, live)["n_votes"] == 1
        assert store.get(LABELS, live)["label"] == 1
    finally:
        loop.stop()
        if indexer is not None:
            indexer.stop()
        store.close()


def test_live_labels_follow_votes_and_wait_for_unknown_items(
    settings: Settings, producer: RecordProducer, stream: tuple[Store, ConsumerLoop]
) -> None:
    store, loop = stream
    topics = settings.kafka.topics
    store.upsert(COMMENTS, [Comment(id="known", text="hello").to_document()])
    votes = [
        Vote(item_id="known", annotator_id="w1", label=1),
        Vote(item_id="known", annotator_id="w2", label=1),
        Vote(item_id="later", annotator_id="w1", label=0),
    ]
    producer.send_batch(topics.votes_raw, (v.to_message() for v in votes))
    live = f"{live_run('toxicity')}:"
    wait_for(lambda: store.get(LABELS, live + "known") is not None)
    assert store.get(LABELS, live + "known")["label"] == 1
    # Every vote has been through the handler, the one for "later" included...
    wait_for(lambda: loop.stats.records >= len(votes))
    assert store.get(LABELS, live + "later") is None  # ...yet its comment has not arrived

    # The indexer would store the vote; here the test does. Then the comment arrives.
    store.upsert(VOTES, [votes[2].to_document()])
    producer.send_batch(topics.comments_raw, [Comment(id="later", text="finally").to_message()])
    wait_for(lambda: store.get(LABELS, live + "later") is not None)
    assert store.get(LABELS, live + "later")["label"] == 0

    # A reviewer disagrees with the crowd on "known": the live label follows the human.
    store.upsert(VOTES, [v.to_document() for v in votes[:2]])
    human = Vote(item_id="known", annotator_id="human:ann", label=0)
    producer.send_batch(topics.votes_reviewed, [human.to_message()])
    wait_for(lambda: store.get(LABELS, live + "known")["label"] == 0)
    events = label_events(settings, 3)
    by_item = {
        item: [e["label"] for e in events if e["item_id"] == item] for item in ("known", "later")
    }
    assert by_item == {"known": [1, 0], "later": [0]}  # in order within an item's partition


def test_a_forged_reviewer_on_votes_raw_never_decides_a_live_label(
    settings: Settings, producer: RecordProducer, stream: tuple[Store, ConsumerLoop]
) -> None:
    store, loop = stream
    topics = settings.kafka.topics
    store.upsert(COMMENTS, [Comment(id="target", text="hello").to_document()])
    crowd = Vote(item_id="target", annotator_id="w1", label=1)
    forged = Vote(item_id="target", annotator_id="human:mallory", label=0)
    # The forger writes straight into the open topic, after the crowd's vote.
    producer.send_batch(topics.votes_raw, [crowd.to_message(), forged.to_message()])
    wait_for(lambda: loop.stats.records >= 2)
    live = store.get(LABELS, f"{live_run('toxicity')}:target")
    assert live is not None
    assert (live["label"], live["n_votes"], live["provenance"]["humans"]) == (1, 1, [])
    # The same vote from the labeler's own topic is a reviewer's, and decides.
    producer.send_batch(topics.votes_reviewed, [forged.to_message()])
    wait_for(lambda: store.get(LABELS, f"{live_run('toxicity')}:target")["label"] == 0)


def test_an_undone_review_leaves_the_store_and_the_live_label_through_the_broker(
    settings: Settings, producer: RecordProducer, stream: tuple[Store, ConsumerLoop]
) -> None:
    store, loop = stream
    topics = settings.kafka.topics
    store.upsert(COMMENTS, [Comment(id="undone", text="hello").to_document()])
    crowd = [Vote(item_id="undone", annotator_id=f"w{k}", label=1) for k in range(2)]
    producer.send_batch(topics.votes_raw, (v.to_message() for v in crowd))
    reviews = HumanLabels(
        settings.labeler, producer, topic=topics.votes_reviewed, keys_required=True
    )
    rita = Caller("rita", frozenset({Scope.LABEL}))
    reviews.submit([HumanLabel(item_id="undone", label=0)], rita)
    live = f"{live_run('toxicity')}:undone"
    wait_for(lambda: (store.get(LABELS, live) or {}).get("label") == 0)
    reviews.retract("undone", "toxicity", rita)
    # Redelivered, and one that is malformed: applied once, the other dead-lettered.
    reviews.retract("undone", "toxicity", rita)
    bad = ("undone", orjson.dumps({"retracts": "toxicity:undone:w1", "item_id": "undone"}))
    producer.send_batch(topics.votes_reviewed, [bad])
    wait_for(lambda: store.get(LABELS, live)["label"] == 1)
    assert store.get(LABELS, live)["provenance"]["humans"] == []
    assert sorted(doc["annotator_id"] for doc in store.scan(VOTES, {"item_id": "undone"})) == [
        "w0",
        "w1",
    ]
    (letter,) = read_all(settings, topics.dlq(topics.votes_reviewed), 1)
    assert "annotator_id" in str(orjson.loads(letter.value)["error"])  # what it lacks


def test_a_vote_outside_the_task_classes_is_dead_lettered(
    settings: Settings, producer: RecordProducer, stream: tuple[Store, ConsumerLoop]
) -> None:
    store, loop = stream
    store.upsert(COMMENTS, [Comment(id="k", text="x").to_document()])
    bad = Vote(item_id="k", annotator_id="w1", label=3)
    good = Vote(item_id="k", annotator_id="w2", label=1)
    producer.send_batch(settings.kafka.topics.votes_raw, [bad.to_message(), good.to_message()])
    dead = read_all(settings, settings.kafka.topics.dlq(settings.kafka.topics.votes_raw), 1)
    assert len(dead) == 1
    headers = dict(dead[0].headers)
    assert b"not a class of task 'toxicity'" in headers["mlcycle-dlq-error"]
    assert headers["mlcycle-dlq-service"] == b"labeler-stream"
    wait_for(lambda: store.get(LABELS, f"{live_run('toxicity')}:k") is not None)
    assert store.get(LABELS, f"{live_run('toxicity')}:k")["n_votes"] == 1


# -- REST ---------------------------------------------------------------------------------------


def test_a_full_label_run_queue_answers_429_and_records_nothing(
    settings: Settings, producer: RecordProducer
) -> None:
    store = open_store(settings.store)
    # Not started: the accepted run waits, as behind a long-running one.
    worker = run_worker(
        LabelRunner(settings.labeler, store, producer, topic=settings.kafka.topics.labels),
        max_queued=1,
    )
    server = BackgroundServer(
        create_app(settings, store=store, producer=producer, worker=worker), "127.0.0.1", 0
    ).start()
    try:
        base = f"http://127.0.0.1:{server.port}/v1/label-runs"
        first = httpx.post(base, json={}, timeout=10)
        assert first.status_code == 202, first.text
        refused = httpx.post(base, json={}, timeout=10)
        assert refused.status_code == 429, refused.text
        assert int(refused.headers["Retry-After"]) >= 1
        store.refresh()
        assert [run.id for run in LabelRuns(store).scan()] == [first.json()["id"]]
    finally:
        server.stop()
        store.close()


@pytest.fixture
def api(
    settings: Settings, producer: RecordProducer, tmp_path: Path
) -> Iterator[tuple[str, Store]]:
    secured = settings.replace(api_keys=("k1", *NAMED_KEYS))
    store = open_store(secured.store)
    worker = run_worker(
        LabelRunner(secured.labeler, store, producer, topic=secured.kafka.topics.labels)
    ).start()
    app = create_app(secured, store=store, producer=producer, worker=worker)
    server = BackgroundServer(app, "127.0.0.1", 0).start()
    yield f"http://127.0.0.1:{server.port}", store
    server.stop()
    worker.stop()
    store.close()


AUTH = {"Authorization": "Bearer k1"}  # a bare legacy key: every scope, the body names reviewers
NAMED_KEYS = ("ann:label:ann-secret", "bob:label+read:bob-secret")
ANN, BOB = {"Authorization": "Bearer ann-secret"}, {"Authorization": "Bearer bob-secret"}


def test_rest_run_labels_review_queue_and_human_labels(
    settings: Settings, api: tuple[str, Store]
) -> None:
    base, store = api
    seed(store)
    started = httpx.post(f"{base}/v1/label-runs", json={"strategy": "majority"}, headers=AUTH)
    assert started.status_code == 202, started.text
    run_id = started.json()["id"]

    def finished() -> bool:
        return (
            httpx.get(f"{base}/v1/label-runs/{run_id}", headers=AUTH).json()["status"]
            == "succeeded"
        )

    wait_for(finished)
    run = httpx.get(f"{base}/v1/label-runs/{run_id}", headers=AUTH).json()
    assert run["stats"]["labeled"] == N_ITEMS
    assert {"labeling_functions", "workers", "conflict_matrix", "calibration"} <= set(run["report"])
    assert httpx.get(f"{base}/v1/label-runs", headers=AUTH).json()["items"][0]["id"] == run_id

    store.refresh()
    label = httpx.get(f"{base}/v1/labels/c004", headers=AUTH).json()
    assert label["run"] == run_id and label["label"] == 1
    page = httpx.get(
        f"{base}/v1/labels", headers=AUTH, params={"split": "train", "limit": 500}
    ).json()
    assert page["run"] == run_id and page["items"]
    assert {item["split"] for item in page["items"]} == {"train"}
    assert httpx.get(f"{base}/v1/labels/nope", headers=AUTH).status_code == 404

    queue = httpx.get(f"{base}/v1/review-queue", headers=AUTH, params={"limit": 5}).json()
    assert queue["run"] == run_id and len(queue["items"]) == 5
    first = queue["items"][0]["item_id"]

    review = {"item_id": first, "label": 1, "reviewer": "ann"}
    accepted = httpx.post(f"{base}/v1/labels", json=review, headers=AUTH)
    assert accepted.status_code == 202, accepted.text
    assert accepted.json() == {
        "accepted": 1,
        "votes": [f"toxicity:{first}:human:ann"],
        "reviewers": ["ann"],
    }
    (record,) = read_all(settings, settings.kafka.topics.votes_reviewed, 1)
    assert orjson.loads(record.value)["annotator_id"] == "human:ann"
    # Once the vote is stored, the item leaves the queue.
    store.upsert(VOTES, [orjson.loads(record.value) | {"id": f"toxicity:{first}:human:ann"}])
    after = httpx.get(f"{base}/v1/review-queue", headers=AUTH, params={"limit": 5}).json()
    assert first not in [item["item_id"] for item in after["items"]]

    # The run looked for suspected label errors on its texts and says how.
    issues = httpx.get(f"{base}/v1/label-issues", headers=AUTH).json()
    assert issues["run"] == run_id
    assert issues["summary"]["checked"] == N_ITEMS and issues["summary"]["folds"] == 5
    assert issues["summary"]["stored"] == len(issues["items"]) or issues["next_cursor"]


def seed_issues(store: Store, run_id: str, n: int, status: str = "succeeded") -> None:
    run = LabelRun(id=run_id, task="toxicity", status=status, label_issues=LabelIssuesSummary())
    LabelRuns(store).save(run)
    LabelIssues(store).save_all(
        LabelIssue(
            id=LabelIssue.id_of(run_id, rank),
            run=run_id,
            rank=rank,
            item_id=f"c{rank:03d}",
            given_label=1,
            suggested_label=0,
            quality=0.01 * rank,
            probability=0.01 * rank,
            probabilities=[1 - 0.01 * rank, 0.01 * rank],
        )
        for rank in range(n)
    )
    store.refresh()


def test_label_issues_are_paged_most_suspect_first(api: tuple[str, Store]) -> None:
    base, store = api
    seed_issues(store, "lr-20261124T000000-aaaaaa", 5)
    url, run = f"{base}/v1/label-issues", "lr-20261124T000000-aaaaaa"
    first = httpx.get(url, headers=AUTH, params={"run": run, "limit": 3}).json()
    assert [item["item_id"] for item in first["items"]] == ["c000", "c001", "c002"]
    assert set(first["items"][0]) == {
        "rank", "item_id", "given_label", "suggested_label", "quality", "probability",
        "probabilities",
    }  # fmt: skip
    rest = httpx.get(
        url, headers=AUTH, params={"run": run, "limit": 3, "cursor": first["next_cursor"]}
    ).json()
    assert [item["item_id"] for item in rest["items"]] == ["c003", "c004"]
    with LabelerClient(base, api_key="k1") as client:  # the same pages through the client
        page = client.label_issues(run=run, limit=3)
        assert [item.item_id for item in page.items] == ["c000", "c001", "c002"]
        assert page.next_cursor == first["next_cursor"] and page.summary is not None
    # No finished run of a task yet: nothing to show, not an error (as the review queue).
    none = httpx.get(url, headers=AUTH, params={"task": "spam"}).json()
    assert none == {"run": None, "summary": None, "items": [], "next_cursor": None}


def test_a_reviewed_item_leaves_the_queue_unless_its_label_overrode_the_review(
    api: tuple[str, Store],
) -> None:
    base, store = api
    run = LabelRun(
        id="lr-20261124T000000-dddddd",
        task="toxicity",
        status="succeeded",
        review_queue=[
            ReviewItem(
                item_id=item, priority=0.5, label=1, probability=0.9, n_votes=4, split="train",
                reasons=reasons,
            )
            for item, reasons in [
                ("overruled", ["disagrees_with_moderators"]),
                ("suspect", ["suspected_error"]),
                ("open", ["uncertain"]),
            ]
        ],
    )  # fmt: skip
    LabelRuns(store).mark_latest(LabelRuns(store).save(run))
    reviews = [Vote(item_id=i, annotator_id="human:ann", label=0) for i in ("overruled", "suspect")]
    store.upsert(VOTES, [vote.to_document() for vote in reviews])
    store.refresh()
    queue = httpx.get(f"{base}/v1/review-queue", headers=AUTH).json()
    assert [item["item_id"] for item in queue["items"]] == ["overruled", "open"]


@pytest.mark.parametrize(
    ("params", "status", "needle"),
    [
        ({"run": "lr-nope"}, 404, "lr-nope"),
        ({"run": "lr-20261124T000000-bbbbbb"}, 400, "has not finished"),
        ({"limit": 0}, 422, "limit"),
        ({"run": "lr-20261124T000000-cccccc", "cursor": "not-a-cursor"}, 400, "cursor"),
    ],
)
def test_label_issue_requests_that_cannot_be_answered_are_4xx_naming_why(
    api: tuple[str, Store], params: dict[str, object], status: int, needle: str
) -> None:
    base, store = api
    seed_issues(store, "lr-20261124T000000-bbbbbb", 1, status="running")
    seed_issues(store, "lr-20261124T000000-cccccc", 1)
    response = httpx.get(f"{base}/v1/label-issues", headers=AUTH, params=params)
    assert response.status_code == status, response.text
    assert needle in response.text


def test_label_runs_are_listed_newest_first_by_the_store(api: tuple[str, Store]) -> None:
    base, store = api
    runs = LabelRuns(store)
    ids = [f"lr-20261124T{n // 60:02d}{n % 60:02d}00-{n:06x}" for n in range(1200)]
    store.upsert(
        RUNS,
        [
            {
                "id": run_id,
                "kind": "label",
                "task": "spam" if n % 2 else "toxicity",
                "status": "succeeded",
            }
            for n, run_id in enumerate(ids)
        ],
    )
    store.refresh()
    assert runs.count() == 1200
    listed = httpx.get(f"{base}/v1/label-runs", headers=AUTH, params={"limit": 200}).json()["items"]
    assert [item["id"] for item in listed] == ids[::-1][:200]
    toxicity = httpx.get(
        f"{base}/v1/label-runs", headers=AUTH, params={"task": "toxicity", "limit": 3}
    ).json()
    assert [item["id"] for item in toxicity["items"]] == [ids[1198], ids[1196], ids[1194]]
    assert set(listed[0]) == {"id", "task", "status", "progress", "created_at"}


@pytest.mark.parametrize(
    ("path", "body", "status", "needle"),
    [
        ("/v1/label-runs", {"strategy": "snorkel"}, 422, "strategy"),
        ("/v1/label-runs", {"labeling_functions": ["nope"]}, 400, "nope"),
        ("/v1/label-runs", {"threshold": 2}, 422, "threshold"),
        ("/v1/label-runs", {"strateggy": "majority"}, 422, "strateggy"),
        ("/v1/labels", {"item_id": "a", "label": 5, "reviewer": "ann"}, 400, "not a class"),
        ("/v1/labels", {"item_id": "a", "label": 1}, 422, "reviewer"),
        ("/v1/labels", [], 400, "empty"),
        ("/v1/labels", {"item_id": "a", "label": "1", "reviewer": "ann"}, 422, "label"),
    ],
)
def test_bad_requests_are_4xx_naming_the_problem(
    api: tuple[str, Store], path: str, body: object, status: int, needle: str
) -> None:
    base, _ = api
    response = httpx.post(f"{base}{path}", json=body, headers=AUTH)
    assert response.status_code == status, response.text
    assert needle in response.text


@pytest.mark.parametrize("path", ["/v1/label-runs", "/v1/labels"])
def test_writes_need_the_api_key(api: tuple[str, Store], path: str) -> None:
    base, _ = api
    assert httpx.post(f"{base}{path}", json={}).status_code == 401


def test_a_named_key_labels_as_itself_and_starts_runs_under_its_name(
    settings: Settings, api: tuple[str, Store]
) -> None:
    base, store = api
    seed(store)
    mine = httpx.post(f"{base}/v1/labels", json={"item_id": "c001", "label": 1}, headers=ANN)
    assert mine.status_code == 202, mine.text
    assert mine.json() == {
        "accepted": 1,
        "votes": ["toxicity:c001:human:ann"],
        "reviewers": ["ann"],
    }
    same = {"item_id": "c002", "label": 0, "reviewer": "ann"}
    assert httpx.post(f"{base}/v1/labels", json=same, headers=ANN).status_code == 202
    forged = {"item_id": "c003", "label": 1, "reviewer": "bob"}
    refused = httpx.post(f"{base}/v1/labels", json=forged, headers=ANN)
    assert refused.status_code == 403, refused.text
    assert refused.json()["error"]["details"] == {"key": "ann", "reviewer": "bob"}
    voters = [
        orjson.loads(r.value)["annotator_id"]
        for r in read_all(settings, settings.kafka.topics.votes_reviewed, 2)
    ]
    assert voters == ["human:ann", "human:ann"]

    # `label` alone does not read; bob's key may do both, and his run carries his name.
    assert httpx.get(f"{base}/v1/label-runs", headers=ANN).status_code == 403
    started = httpx.post(f"{base}/v1/label-runs", json={"strategy": "majority"}, headers=BOB)
    assert started.status_code == 202, started.text
    run = httpx.get(f"{base}/v1/label-runs/{started.json()['id']}", headers=BOB).json()
    assert run["started_by"] == "bob"


def test_unfinished_runs_are_resumed_at_start(
    settings: Settings, sqlite_store: Store, producer: RecordProducer
) -> None:
    seed(sqlite_store)
    runner = LabelRunner(
        settings.labeler, sqlite_store, producer, topic=settings.kafka.topics.labels
    )
    queued = runner.create(RunParams(strategy="majority", labeling_functions=[]))
    sqlite_store.upsert(
        RUNS, [{**queued.to_document(), "status": "running"}]
    )  # as a killed process left it
    worker = run_worker(runner).start()
    try:
        assert resume_unfinished(sqlite_store, worker) == [queued.id]
        wait_for(lambda: LabelRuns(sqlite_store).require(queued.id).succeeded)
    finally:
        worker.stop()


def test_settings_fixture_isolates_the_labeler_group(kafka_broker, tmp_path: Path) -> None:
    a = broker_settings(kafka_broker.bootstrap, tmp_path)
    b = broker_settings(kafka_broker.bootstrap, tmp_path)
    assert a.labeler.group_id != b.labeler.group_id
