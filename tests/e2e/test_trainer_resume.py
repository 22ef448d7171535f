"""SIGKILL the trainer service mid-search; the restarted service resumes the study."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from mlcycle.clients import DeadlinePassed, TrainerClient, clients_for, poll_until
from mlcycle.clients.trainer import TrainingJob
from mlcycle.common.errors import Unavailable
from mlcycle.common.infra.process import free_port
from mlcycle.common.settings import Settings, settings_to_env
from mlcycle.common.store import RUNS, open_store
from tests.integration.test_trainer import label, seed

pytestmark = pytest.mark.e2e

SEARCH = {
    "features": ["current"],
    "hidden_units": [64, 128],
    "hidden_layers": 1,
    "dropout": 0.1,
    "learning_rate": [0.005, 0.01],
    "batch_size": 16,
    "epochs": 6,
}
TRIALS = 5


def _start(settings: Settings, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, **settings_to_env(settings)}
    with open(log, "ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "mlcycle", "trainer", "api"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def _job(trainer: TrainerClient, job_id: str) -> TrainingJob | None:
    try:
        return trainer.job(job_id)
    except Unavailable:
        return None


def _wait(condition: Any, timeout_s: float, what: str, log: Path) -> Any:
    try:
        return poll_until(condition, timeout=timeout_s, interval=0.2, what=what)
    except DeadlinePassed as exc:
        raise AssertionError(f"{exc.message}; log:\n{log.read_text()[-3000:]}") from None


def test_a_killed_trainer_resumes_its_search(kafka_settings: Settings, tmp_path: Path) -> None:
    settings = kafka_settings.replace(trainer_port=free_port())
    store = open_store(settings.store)
    seed(store, "k", n=1500)
    label(settings, store)
    store.close()
    trainer = clients_for(settings).trainer
    log = tmp_path / "trainer.log"

    first = _start(settings, log)
    try:
        _wait(lambda: trainer.ready(timeout_s=2), 60, "the trainer was not ready", log)
        job_id = trainer.start_job({"trials": TRIALS, "search": SEARCH}).id
        _wait(
            lambda: (job := _job(trainer, job_id)) is not None and job.progress.trials_done >= 2,
            180,
            "two trials did not finish",
            log,
        )
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    finally:
        if first.poll() is None:
            first.kill()

    store = open_store(settings.store)
    before = {t["number"]: t for t in store.scan(RUNS, filters={"kind": "trial", "job": job_id})}
    assert get_status(store, job_id) == "running" and len(before) >= 2
    store.close()

    second = _start(settings, log)
    try:
        _wait(lambda: trainer.ready(timeout_s=2), 60, "the restarted trainer was not ready", log)
        done = _wait(
            lambda: (j := _job(trainer, job_id)) is not None and j.finished and j,
            300,
            "the resumed job did not finish",
            log,
        )
    finally:
        trainer.close()
        second.send_signal(signal.SIGTERM)
        second.wait(30)
    assert done.status == "succeeded", done.error
    store = open_store(settings.store)
    after = {t["number"]: t for t in store.scan(RUNS, filters={"kind": "trial", "job": job_id})}
    store.close()
    counted = [t for t in after.values() if t.get("error") != "interrupted"]
    assert len(counted) == TRIALS
    # The trials finished before the kill were kept, not run again.
    for number, trial in before.items():
        assert after[number]["params"] == trial["params"]
        assert after[number]["value"] == trial["value"]
    assert done.result is not None and done.result.model is not None
    assert done.result.model.state == "production"


def get_status(store: Any, job_id: str) -> str:
    return str(store.get(RUNS, job_id)["status"])


def test_sigterm_lets_the_running_trial_finish_then_the_restarted_trainer_resumes(
    kafka_settings: Settings, tmp_path: Path
) -> None:
    settings = kafka_settings.replace(trainer_port=free_port())
    store = open_store(settings.store)
    seed(store, "k", n=1500)
    label(settings, store)
    store.close()
    trainer = clients_for(settings).trainer
    log = tmp_path / "trainer.log"

    first = _start(settings, log)
    try:
        _wait(lambda: trainer.ready(timeout_s=2), 60, "the trainer was not ready", log)
        job_id = trainer.start_job({"trials": TRIALS, "search": SEARCH}).id
        _wait(
            lambda: (job := _job(trainer, job_id)) is not None and job.progress.trials_done >= 1,
            180,
            "a trial did not finish",
            log,
        )
        first.send_signal(signal.SIGTERM)
        # It stops taking work at once and exits once the running trial reached its end.
        assert first.wait(120) == 0, log.read_text()[-3000:]
    finally:
        if first.poll() is None:
            first.kill()

    store = open_store(settings.store)
    job = store.get(RUNS, job_id)
    before = {t["number"]: t for t in store.scan(RUNS, filters={"kind": "trial", "job": job_id})}
    store.close()
    assert job["status"] == "interrupted", job
    assert 1 <= len(before) < TRIALS
    # The trial that was running when the signal came was finished, not cut off.
    assert all(t.get("error") != "interrupted" for t in before.values()), before
    assert job["progress"]["trials_done"] == len(before)

    second = _start(settings, log)
    try:
        _wait(lambda: trainer.ready(timeout_s=2), 60, "the restarted trainer was not ready", log)
        done = _wait(
            lambda: (j := _job(trainer, job_id)) is not None and j.finished and j,
            300,
            "the resumed job did not finish",
            log,
        )
    finally:
        trainer.close()
        second.send_signal(signal.SIGTERM)
        second.wait(60)
    assert done.status == "succeeded", done.error
    store = open_store(settings.store)
    after = {t["number"]: t for t in store.scan(RUNS, filters={"kind": "trial", "job": job_id})}
    store.close()
    assert len(after) == TRIALS  # no trial was lost to the stop, none run twice
    for number, trial in before.items():
        assert after[number]["params"] == trial["params"]
        assert after[number]["value"] == trial["value"]
