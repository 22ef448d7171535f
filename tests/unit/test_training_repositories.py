"""Training jobs, trials, model versions and serving pointers through their repositories."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from mlcycle.common.errors import NotFound
from mlcycle.common.store import MODELS, RUNS
from mlcycle.common.store.sqlite import SqliteStore
from mlcycle.contracts.models import Blessing, ModelVersion, RegistryTransition, ServingPointer
from mlcycle.contracts.repositories.model_versions import ModelVersions
from mlcycle.contracts.repositories.serving_pointers import ServingPointers
from mlcycle.contracts.repositories.training_jobs import TrainingJobs
from mlcycle.contracts.repositories.trials import Trials
from mlcycle.contracts.training import JobConfig, JobProgress, TrainingJob, Trial, trial_id


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteStore]:
    store = SqliteStore(tmp_path / "store.sqlite3")
    yield store
    store.close()


def job(job_id: str, status: str = "queued") -> TrainingJob:
    return TrainingJob(
        id=job_id,
        status=status,  # type: ignore[arg-type]
        name="toxicity",
        task="toxicity",
        label_run="lr-1",
        config=JobConfig(trials=2),
        created_at="2026-03-01T00:00:00+00:00",
        updated_at="2026-03-01T00:00:00+00:00",
        progress=JobProgress(stage="queued", trials_total=2),
    )


def model(version: int, name: str = "toxicity") -> ModelVersion:
    registered = RegistryTransition(
        time="t0", action="registered", from_state=None, to_state="candidate", reason="exported"
    )
    return ModelVersion(
        id=f"{name}:{version}",
        name=name,
        version=version,
        state="candidate",
        created_at="t0",
        updated_at="t0",
        transform="tf-1",
        label_run="lr-1",
        metrics={"dev": {"roc_auc": 0.9}},
        params={},
        blessing=Blessing(blessed=False, reason="not judged yet", compared_to=None),
        path=f"/models/{name}/{version}",
        history=[registered],
    )


def test_a_job_round_trips_and_is_stored_with_its_kind(store: SqliteStore) -> None:
    jobs = TrainingJobs(store)
    saved = jobs.save(job("tj-1"))
    assert jobs.require("tj-1") == saved
    stored = store.get(RUNS, "tj-1")
    assert stored is not None and stored["kind"] == "train-job"
    assert stored["config"] == JobConfig(trials=2).model_dump(mode="json")
    assert stored["progress"]["stage"] == "queued"


def test_records_of_another_kind_do_not_answer_as_jobs(store: SqliteStore) -> None:
    trials = Trials(store)
    trials.save(Trial(id=trial_id("tj-1", 0), job="tj-1", number=0, state="complete", metric="x"))
    with pytest.raises(NotFound) as caught:
        TrainingJobs(store).require(trial_id("tj-1", 0))
    assert caught.value.details == {"job": "tj-1:trial-0000"}
    assert TrainingJobs(store).get("tj-1:trial-0000") is None
    assert TrainingJobs(store).count() == 0


def test_unfinished_jobs_oldest_first(store: SqliteStore) -> None:
    jobs = TrainingJobs(store)
    jobs.save_all(
        [
            job("tj-3", "running"),
            job("tj-1", "queued"),
            job("tj-2", "succeeded"),
            job("tj-4", "failed"),
        ]
    )
    assert [j.id for j in jobs.unfinished()] == ["tj-1", "tj-3"]


def test_trials_of_a_job_by_number(store: SqliteStore) -> None:
    trials = Trials(store)
    for number in (10, 2, 1):
        trials.save(
            Trial(
                id=trial_id("tj-1", number),
                job="tj-1",
                number=number,
                state="complete",
                metric="roc_auc",
                params={"hidden_units": 8, "wide": False, "dropout": 0.1, "features": "words"},
            )
        )
    trials.save(Trial(id=trial_id("tj-2", 0), job="tj-2", number=0, state="fail", metric="x"))
    found = trials.of_job("tj-1")
    assert [t.number for t in found] == [1, 2, 10]
    assert found[0].params == {
        "hidden_units": 8,
        "wide": False,
        "dropout": 0.1,
        "features": "words",
    }
    assert isinstance(found[0].params["wide"], bool)


def test_model_versions_listing_and_a_promotion_in_one_write(store: SqliteStore) -> None:
    versions, pointers = ModelVersions(store), ServingPointers(store)
    versions.save_all([model(1), model(3), model(2), model(1, name="attack")])
    assert [m.id for m in versions.listing()] == [
        "attack:1",
        "toxicity:3",
        "toxicity:2",
        "toxicity:1",
    ]
    assert versions.listing("toxicity", "production") == []

    pointer = pointers.of("toxicity")
    assert (pointer.version, pointer.previous) == (None, [])
    promoted = model(3)
    promoted.transition("promoted", "production", "release", "t1", forced=True)
    pointer.version, pointer.updated_at = 3, "t1"
    versions.save_with_pointer([promoted], pointer)

    assert [m.version for m in versions.listing("toxicity", "production")] == [3]
    assert pointers.serving() == {"toxicity": 3}
    assert (
        store.get(MODELS, "serving:toxicity")
        == ServingPointer(
            id="serving:toxicity", name="toxicity", version=3, updated_at="t1"
        ).to_document()
    )
    # The pointer is not a model version, and unset optional facts stay out of the JSON.
    assert {m.id for m in versions.scan()} == {"toxicity:1", "toxicity:2", "toxicity:3", "attack:1"}
    history = store.get(MODELS, "toxicity:3")["history"]  # type: ignore[index]
    assert history[0] == {
        "time": "t0",
        "action": "registered",
        "from_state": None,
        "to_state": "candidate",
        "reason": "exported",
    }
    assert history[1]["forced"] is True and "actor" not in history[1]
    assert store.get(MODELS, "toxicity:3")["blessing"] == {  # type: ignore[index]
        "blessed": False,
        "reason": "not judged yet",
        "compared_to": None,
    }
