"""``GET /v1/jobs`` lists the newest jobs first, sorted and paged by the store (both backends)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from mlcycle.cli import app as cli
from mlcycle.common.http import BackgroundServer
from mlcycle.common.settings import load_settings
from mlcycle.common.store import Store
from mlcycle.common.worker import JobWorker
from mlcycle.contracts.label_runs import LabelRun
from mlcycle.contracts.repositories.label_runs import LabelRuns
from mlcycle.contracts.repositories.training_jobs import TrainingJobs
from mlcycle.contracts.training import JobConfig, JobProgress, TrainingJob, new_job_id
from mlcycle.trainer.api import create_app
from mlcycle.trainer.jobs import JobRunner
from mlcycle.trainer.registry import ModelRegistry
from mlcycle.trainer.stages.context import JobEnvironment

pytestmark = pytest.mark.integration

JOBS = 1200
START = datetime(2026, 3, 1, tzinfo=UTC)


class NotingWorker(JobWorker):
    """Keeps submitted job ids instead of running them."""

    def submit(self, job_id: str) -> None:
        self.noted = [*getattr(self, "noted", []), job_id]


def stored_jobs(count: int) -> list[TrainingJob]:
    """``count`` queued jobs created a second apart, in a shuffled write order."""
    jobs = []
    for i in range(count):
        created = START + timedelta(seconds=i)
        jobs.append(
            TrainingJob(
                id=new_job_id(created),
                name="toxicity",
                task="toxicity",
                label_run="lr-1",
                config=JobConfig(trials=1),
                created_at=created.isoformat(),
                updated_at=created.isoformat(),
                progress=JobProgress(stage="queued", trials_total=1),
            )
        )
    return jobs[1::2] + jobs[::2]


@pytest.fixture
def service(store: Store, tmp_path: Path) -> Iterator[str]:
    settings = load_settings(data_dir=tmp_path)
    registry = ModelRegistry(settings.trainer, store)
    worker = NotingWorker(
        JobRunner(settings.trainer, store, registry, JobEnvironment.of(settings)), name="noted"
    )
    app = create_app(settings, store=store, worker=worker, registry=registry)
    server = BackgroundServer(app, "127.0.0.1", 0).start()
    yield f"http://127.0.0.1:{server.port}"
    server.stop()


def test_the_newest_jobs_come_first_past_a_thousand(service: str, store: Store) -> None:
    jobs = stored_jobs(JOBS)
    TrainingJobs(store).save_all(jobs)
    store.refresh()
    newest_first = [job.id for job in sorted(jobs, key=lambda j: j.created_at, reverse=True)]

    listed = httpx.get(f"{service}/v1/jobs", timeout=30)
    assert listed.status_code == 200, listed.text
    body = listed.json()
    assert [job["id"] for job in body["jobs"]] == newest_first[:20]
    assert body["jobs"][0]["created_at"] == (START + timedelta(seconds=JOBS - 1)).isoformat()
    assert body["jobs"][0]["status"] == "queued" and body["active"] is None

    few = httpx.get(f"{service}/v1/jobs", params={"limit": 5}, timeout=30).json()["jobs"]
    assert [job["id"] for job in few] == newest_first[:5]
    most = httpx.get(f"{service}/v1/jobs", params={"limit": 200}, timeout=30).json()["jobs"]
    assert [job["id"] for job in most] == newest_first[:200]


def test_jobs_created_in_the_same_second_list_by_creation_time(service: str, store: Store) -> None:
    # Ids sort by creation time only to the second; within one, by a random suffix.
    suffixes = ["ffffff", "a00000", "500000", "000000"]
    jobs = [
        stored_jobs(1)[0].model_copy(
            update={
                "id": f"tj-20260301T000000-{suffix}",
                "created_at": (START + timedelta(microseconds=10 * i)).isoformat(),
            }
        )
        for i, suffix in enumerate(suffixes)
    ]
    TrainingJobs(store).save_all(jobs)
    store.refresh()
    listed = httpx.get(f"{service}/v1/jobs", timeout=30).json()["jobs"]
    assert [job["id"] for job in listed] == [job.id for job in reversed(jobs)]


def test_a_full_job_queue_answers_429_with_retry_after_and_records_nothing(
    store: Store, tmp_path: Path
) -> None:
    settings = load_settings(data_dir=tmp_path, max_queued_jobs=2)
    LabelRuns(store).save(LabelRun(id="lr-1", task="toxicity", status="succeeded"))
    registry = ModelRegistry(settings.trainer, store)
    # Not started: the two accepted jobs wait, as behind a long-running one.
    worker = JobWorker(
        JobRunner(settings.trainer, store, registry, JobEnvironment.of(settings)),
        name="train-jobs",
        max_queued=settings.edge.max_queued_jobs,
    )
    app = create_app(settings, store=store, worker=worker, registry=registry)
    server = BackgroundServer(app, "127.0.0.1", 0).start()
    try:
        base = f"http://127.0.0.1:{server.port}/v1/jobs"
        accepted = [httpx.post(base, json={"label_run": "lr-1"}, timeout=10) for _ in range(2)]
        assert [r.status_code for r in accepted] == [202, 202]
        refused = httpx.post(base, json={"label_run": "lr-1"}, timeout=10)
        assert refused.status_code == 429, refused.text
        assert int(refused.headers["Retry-After"]) >= 1
        assert "MLCYCLE_MAX_QUEUED_JOBS" in refused.json()["error"]["message"]
        store.refresh()
        assert sorted(job.id for job in TrainingJobs(store).scan()) == sorted(
            r.json()["id"] for r in accepted
        )
    finally:
        server.stop()


def test_trainer_submit_queues_a_job_through_the_api_with_the_service_key(
    store: Store, tmp_path: Path
) -> None:
    settings = load_settings(data_dir=tmp_path, api_keys=("s3cret",))
    runs = LabelRuns(store)
    runs.mark_latest(runs.save(LabelRun(id="lr-1", task="toxicity", status="succeeded")))
    registry = ModelRegistry(settings.trainer, store)
    worker = JobWorker(
        JobRunner(settings.trainer, store, registry, JobEnvironment.of(settings)), name="jobs"
    )
    server = BackgroundServer(
        create_app(settings, store=store, worker=worker, registry=registry), "127.0.0.1", 0
    ).start()
    try:
        url = f"http://127.0.0.1:{server.port}"
        argv = ["trainer", "submit", "--url", url, "--time-budget", "60", "--no-promote"]
        wrong = CliRunner().invoke(cli, argv, env={"MLCYCLE_SERVICE_KEY": "nope"})
        assert wrong.exit_code == 2, wrong.output
        done = CliRunner().invoke(cli, argv, env={"MLCYCLE_SERVICE_KEY": "s3cret"})
        assert done.exit_code == 0, done.output
        job_id = done.stdout.strip().splitlines()[-1]
        store.refresh()
        (job,) = TrainingJobs(store).scan()
        assert job.id == job_id
        assert job.config.time_budget_s == 60
        assert job.config.auto_promote is False
        assert job.label_run == "lr-1"
    finally:
        server.stop()
