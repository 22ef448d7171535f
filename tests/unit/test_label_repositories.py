"""Label runs, labels, votes and comments through their repositories, on a SQLite store."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest

from mlcycle.common.errors import InvalidInput, NotFound
from mlcycle.common.store import COMMENTS, LABELS, RUNS, VOTES
from mlcycle.common.store.sqlite import SqliteStore
from mlcycle.contracts.comments import Comment, StoredComment, Vote
from mlcycle.contracts.label_diagnostics import DiagnosticsReport, Totals
from mlcycle.contracts.label_runs import LabelRun, RunParams, RunProgress, RunStats
from mlcycle.contracts.labels import Label, Provenance, label_id, live_run
from mlcycle.contracts.repositories.comments import Comments
from mlcycle.contracts.repositories.label_runs import LabelRuns
from mlcycle.contracts.repositories.labels import Labels
from mlcycle.contracts.repositories.votes import CastVote, Votes

NOW = datetime(2026, 11, 24, 18, 15, tzinfo=UTC)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteStore]:
    store = SqliteStore(tmp_path / "store.db")
    yield store
    store.close()


def run(run_id: str, status: str = "succeeded", task: str = "toxicity") -> LabelRun:
    return LabelRun(
        id=run_id,
        task=task,
        status=status,  # type: ignore[arg-type]
        params=RunParams(task=task),
        previous_run=None,
        progress=RunProgress(phase="queued", chunks_done=0, chunks_total=None),
        created_at=NOW,
        updated_at=NOW,
    )


def label(run_id: str, item_id: str, value: int = 1, split: str = "train") -> Label:
    return Label(
        id=label_id(run_id, item_id),
        run=run_id,
        item_id=item_id,
        task="toxicity",
        label=value,
        probability=0.9,
        probabilities=[0.1, 0.9] if value else [0.9, 0.1],
        method="majority",
        n_votes=3,
        provenance=Provenance(crowd=["w1", "w2", "w3"]),
        split=split,
        created_at=NOW,
    )


# -- label runs --------------------------------------------------------------------------------


def test_a_run_is_stored_as_far_as_it_got(store: SqliteStore) -> None:
    runs = LabelRuns(store)
    queued = runs.save(run("lr-1", status="queued"))
    doc = store.get(RUNS, "lr-1")
    assert doc == {
        "id": "lr-1",
        "kind": "label",
        "task": "toxicity",
        "status": "queued",
        "params": {
            "strategy": "anchored_dawid_skene",
            "task": "toxicity",
            "threshold": None,
            "labeling_functions": None,
            "gold_min_votes": None,
        },
        "previous_run": None,
        "progress": {
            "phase": "queued",
            "chunks_done": 0,
            "chunks_total": None,
            "items": None,
            "events": 0,
        },
        "created_at": "2026-11-24T18:15:00+00:00",
        "updated_at": "2026-11-24T18:15:00+00:00",
    }
    assert runs.require("lr-1") == queued
    # Reading and writing back a record keeps exactly its fields.
    runs.save(runs.require("lr-1"))
    assert store.get(RUNS, "lr-1") == doc


def test_another_kind_under_a_run_id_is_not_a_label_run(store: SqliteStore) -> None:
    store.upsert(RUNS, [{"id": "job-1", "kind": "train-job", "status": "queued"}])
    runs = LabelRuns(store)
    assert runs.get("job-1") is None
    with pytest.raises(NotFound, match="no label run 'job-1'") as caught:
        runs.require("job-1")
    assert caught.value.details == {"id": "job-1"}


def test_require_succeeded_refuses_an_unfinished_run(store: SqliteStore) -> None:
    runs = LabelRuns(store)
    runs.save(run("lr-1", status="running"))
    runs.save(run("lr-2"))
    with pytest.raises(InvalidInput, match=r"label run lr-1 has not finished \(running\)"):
        runs.require_succeeded("lr-1")
    assert runs.require_succeeded("lr-2").id == "lr-2"
    with pytest.raises(NotFound):
        runs.require_succeeded("lr-nope")


def test_latest_follows_the_pointer_per_task(store: SqliteStore) -> None:
    runs = LabelRuns(store)
    assert runs.latest("toxicity") is None
    with pytest.raises(NotFound, match="no finished label run for task 'toxicity'"):
        runs.resolve(None, "toxicity")
    first, second, other = run("lr-1"), run("lr-2"), run("lr-3", task="spam")
    for record in (first, second, other):
        runs.save(record)
    runs.mark_latest(first)
    runs.mark_latest(other)
    assert runs.latest("toxicity") == first
    runs.mark_latest(second)
    assert runs.latest("toxicity") == second and runs.latest("spam") == other
    assert runs.resolve(None, "toxicity") == second
    assert runs.resolve("lr-1", "toxicity") == first
    assert store.get(RUNS, "latest-label-run-toxicity") == {
        "id": "latest-label-run-toxicity",
        "kind": "label-pointer",
        "run": "lr-2",
    }
    # The pointer is not a run: listings and lookups of runs never show it.
    assert runs.get("latest-label-run-toxicity") is None
    assert [r.id for r in runs.newest()] == ["lr-3", "lr-2", "lr-1"]


def test_newest_sorts_in_the_store_and_filters_by_task(store: SqliteStore) -> None:
    runs = LabelRuns(store)
    ids = [f"lr-20261124T{h:02d}0000-abcdef" for h in range(12)]
    for n, run_id in enumerate(ids):
        runs.save(run(run_id, task="spam" if n % 3 == 0 else "toxicity"))
    assert [r.id for r in runs.newest(limit=3)] == ids[::-1][:3]
    toxicity = [r.id for r in runs.newest("toxicity", limit=100)]
    assert toxicity == [i for n, i in enumerate(ids) if n % 3][::-1]


def test_unfinished_runs_oldest_first(store: SqliteStore) -> None:
    runs = LabelRuns(store)
    for run_id, status in (("lr-3", "queued"), ("lr-1", "running"), ("lr-2", "failed")):
        runs.save(run(run_id, status=status))
    assert [r.id for r in runs.unfinished()] == ["lr-1", "lr-3"]


def test_a_finished_run_round_trips_with_its_figures(store: SqliteStore) -> None:
    runs = LabelRuns(store)
    record = run("lr-1", status="running")
    runs.save(record)
    record.status = "succeeded"
    record.stats = RunStats(items=3, labeled=2, converged=True, events=2)
    record.report = DiagnosticsReport(totals=Totals(items=3))
    record.finished_at = NOW
    runs.save(record)
    back = runs.require("lr-1")
    assert back.succeeded and back.finished
    assert back.stats is not None and back.stats.labeled == 2
    assert store.get(RUNS, "lr-1")["report"]["totals"]["items"] == 3
    assert "error" not in store.get(RUNS, "lr-1")


def test_a_minimal_run_document_still_reads(store: SqliteStore) -> None:
    store.upsert(RUNS, [{"id": "lr-x", "kind": "label", "task": "toxicity", "status": "queued"}])
    minimal = LabelRuns(store).require("lr-x")
    assert minimal.params is None and minimal.progress.chunks_done == 0
    assert minimal.to_document() == {
        "id": "lr-x",
        "kind": "label",
        "task": "toxicity",
        "status": "queued",
    }


# -- labels ------------------------------------------------------------------------------------


def test_labels_by_item_by_run_and_by_split(store: SqliteStore) -> None:
    labels = Labels(store)
    labels.save_all(
        [label("lr-1", "a"), label("lr-1", "b", 0, "dev"), label("lr-1", "c"), label("lr-2", "a")]
    )
    assert labels.of_item("lr-1", "a") == label("lr-1", "a")
    assert labels.of_item("lr-1", "zz") is None
    assert labels.first_of_item(["lr-9", "lr-2", "lr-1"], "a") == label("lr-2", "a")
    assert labels.first_of_item([live_run("toxicity")], "a") is None
    assert [x.item_id for x in labels.of_split("lr-1", "train")] == ["a", "c"]
    assert labels.item_ids("lr-1", "train") == ["a", "c"]
    assert set(labels.in_run("lr-1", ["a", "b", "zz"])) == {"a", "b"}
    decisions = labels.decisions(["lr-1:a", "lr-1:b", "lr-1:zz"])
    assert decisions == {"lr-1:a": (1, "train", 0.9), "lr-1:b": (0, "dev", 0.9)}
    assert not label("lr-1", "a").changed_from(decisions["lr-1:a"])
    assert label("lr-1", "b").changed_from(decisions["lr-1:b"])
    page = labels.page_of_run("lr-1", limit=2)
    assert [x.item_id for x in page.items] == ["a", "b"] and page.next_cursor
    rest = labels.page_of_run("lr-1", limit=2, cursor=page.next_cursor)
    assert [x.item_id for x in rest.items] == ["c"] and rest.next_cursor is None
    assert [x.item_id for x in labels.page_of_run("lr-1", split="dev").items] == ["b"]


def test_a_label_is_stored_and_streamed_as_the_same_json(store: SqliteStore) -> None:
    record = label("lr-1", "a")
    Labels(store).save(record)
    doc = store.get(LABELS, "lr-1:a")
    assert doc == {
        "id": "lr-1:a",
        "run": "lr-1",
        "item_id": "a",
        "task": "toxicity",
        "label": 1,
        "probability": 0.9,
        "probabilities": [0.1, 0.9],
        "method": "majority",
        "n_votes": 3,
        "provenance": {"crowd": ["w1", "w2", "w3"], "labeling_functions": [], "humans": []},
        "split": "train",
        "created_at": "2026-11-24T18:15:00+00:00",
    }
    key, value = record.to_message()
    assert key == "a" and value == orjson.dumps(doc)


def test_a_partial_label_still_counts_among_the_item_ids(store: SqliteStore) -> None:
    store.upsert(LABELS, [{"id": "lr-1:a", "run": "lr-1", "item_id": "a", "split": "train"}])
    assert Labels(store).item_ids("lr-1", "train") == ["a"]


# -- votes and comments ------------------------------------------------------------------------


def test_votes_of_an_item_and_whether_a_human_reviewed_it(store: SqliteStore) -> None:
    votes = [
        Vote(item_id="a", annotator_id="w1", label=1),
        Vote(item_id="a", annotator_id="w2", label=0),
        Vote(item_id="a", annotator_id="w1", label=1, task="spam"),
        Vote(item_id="b", annotator_id="w1", label=1),
        Vote(item_id="b", annotator_id="human:ann", label=0, source="review"),
    ]
    store.upsert(VOTES, [v.to_document() for v in votes])
    repo = Votes(store)
    assert [v.annotator_id for v in repo.of_item("a", "toxicity")] == ["w1", "w2"]
    assert repo.count_of_item("a") == 3 and repo.count_of_item("a", "toxicity") == 2
    assert len(repo.of_item("a", limit=1)) == 1
    assert {v.task for v in repo.all_of_item("a")} == {"spam", "toxicity"}
    assert not repo.reviewed("a") and repo.reviewed("b")
    human = repo.of_item("b")[0]
    assert human.voter_kind == "human" and human.to_document() == votes[4].to_document()
    assert sorted(repo.cast("toxicity")) == [
        CastVote("a", "w1", 1),
        CastVote("a", "w2", 0),
        CastVote("b", "human:ann", 0),
        CastVote("b", "w1", 1),
    ]


def test_comments_keep_fields_other_services_add(store: SqliteStore) -> None:
    comment = Comment(id="c1", text="hello", metadata={"year": 2015})
    scored = {**comment.to_document(), "prediction": {"score": 0.2, "model_version": 3}}
    store.upsert(COMMENTS, [scored, Comment(id="c2", text="world").to_document()])
    comments = Comments(store)
    stored = comments.require("c1")
    assert isinstance(stored, StoredComment) and stored.text == "hello"
    assert stored.to_document() == scored
    with pytest.raises(NotFound, match="no comment with id 'nope'"):
        comments.require("nope")
    assert [c.id for c in comments.in_order(["c2", "nope", "c1"])] == ["c2", "c1"]
    found = comments.search("world")
    assert [c.id for c in found.items] == ["c2"]
    assert [c.id for c in comments.search(limit=1).items] == ["c1"]
