"""SIGTERM, then SIGKILL, the trainer service mid-search; each restart resumes the study."""

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


def _trials(settings: Settings, job_id: str) -> dict[int, dict[str, Any]]:
    store = open_store(settings.store)
    try:
        return {t["number"]: t for t in store.scan(RUNS, filters={"kind": "trial", "job": job_id})}
    finally:
        store.close()


def _status(settings: Settings, job_id: str) -> dict[str, Any]:
    store = open_store(settings.store)
    try:
        return dict(store.get(RUNS, job_id))
    finally:
        store.close()


def _trials_done(trainer: TrainerClient, job_id: str, at_least: int) -> bool:
    job = _job(trainer, job_id)
    return job is not None and job.progress.trials_done >= at_least


def test_a_stopped_then_killed_trainer_resumes_its_search_each_time(
    kafka_settings: Settings, tmp_path: Path
) -> None:
    """One search, stopped twice: SIGTERM lets the running trial finish and exits cleanly;
    SIGKILL cuts one off. Each restart resumes the study: the trials finished before are
    kept (same parameters, same value), none is lost or run twice, and the job ends with
    its model in production. (One test, so the suite seeds, labels and searches once.)"""
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
        _wait(lambda: _trials_done(trainer, job_id, 1), 180, "a trial did not finish", log)
        first.send_signal(signal.SIGTERM)
        # It stops taking work at once and exits once the running trial reached its end.
        assert first.wait(120) == 0, log.read_text()[-3000:]
    finally:
        if first.poll() is None:
            first.kill()
    job = _status(settings, job_id)
    stopped = _trials(settings, job_id)
    assert job["status"] == "interrupted", job
    assert 1 <= len(stopped) < TRIALS
    # The trial that was running when the signal came was finished, not cut off.
    assert all(t.get("error") != "interrupted" for t in stopped.values()), stopped
    assert job["progress"]["trials_done"] == len(stopped)

    second = _start(settings, log)
    try:
        _wait(lambda: trainer.ready(timeout_s=2), 60, "the restarted trainer was not ready", log)
        _wait(
            lambda: _trials_done(trainer, job_id, len(stopped) + 1),
            180,
            "the resumed search finished no trial",
            log,
        )
        second.send_signal(signal.SIGKILL)
        second.wait(10)
    finally:
        if second.poll() is None:
            second.kill()
    killed = _trials(settings, job_id)
    assert _status(settings, job_id)["status"] == "running"
    assert len(killed) > len(stopped)

    third = _start(settings, log)
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
        third.send_signal(signal.SIGTERM)
        third.wait(60)
    assert done.status == "succeeded", done.error
    after = _trials(settings, job_id)
    counted = [t for t in after.values() if t.get("error") != "interrupted"]
    assert len(counted) == TRIALS  # no trial lost to either stop, none run twice
    # The trials finished before each stop were kept, not run again.
    for before in (stopped, killed):
        for number, trial in before.items():
            if trial.get("error") == "interrupted":
                continue
            assert after[number]["params"] == trial["params"]
            assert after[number]["value"] == trial["value"]
    assert done.result is not None and done.result.model is not None
    assert done.result.model.state == "production"
