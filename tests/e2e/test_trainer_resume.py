"""SIGKILL the trainer service mid-search; the restarted service resumes the study."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

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


def _job(base: str, job_id: str) -> dict[str, Any] | None:
    try:
        return dict(httpx.get(f"{base}/v1/jobs/{job_id}", timeout=5).json())
    except httpx.HTTPError:
        return None


def _wait(condition: Any, timeout_s: float, what: str, log: Path) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"{what} within {timeout_s} s; log:\n{log.read_text()[-3000:]}")


def test_a_killed_trainer_resumes_its_search(kafka_settings: Settings, tmp_path: Path) -> None:
    settings = kafka_settings.model_copy(update={"trainer_port": free_port()})
    store = open_store(settings)
    seed(store, "k", n=1500)
    label(settings, store)
    store.close()
    base = f"http://{settings.host}:{settings.trainer_port}"
    log = tmp_path / "trainer.log"

    first = _start(settings, log)
    try:
        _wait(lambda: _ready(base), 60, "the trainer was not ready", log)
        job_id = httpx.post(
            f"{base}/v1/jobs", json={"trials": TRIALS, "search": SEARCH}, timeout=10
        ).json()["id"]
        _wait(
            lambda: ((_job(base, job_id) or {}).get("progress") or {}).get("trials_done", 0) >= 2,
            180,
            "two trials did not finish",
            log,
        )
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    finally:
        if first.poll() is None:
            first.kill()

    store = open_store(settings)
    before = {t["number"]: t for t in store.scan(RUNS, filters={"kind": "trial", "job": job_id})}
    assert get_status(store, job_id) == "running" and len(before) >= 2
    store.close()

    second = _start(settings, log)
    try:
        _wait(lambda: _ready(base), 60, "the restarted trainer was not ready", log)
        done = _wait(
            lambda: (j := _job(base, job_id)) and j["status"] in ("succeeded", "failed") and j,
            300,
            "the resumed job did not finish",
            log,
        )
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(30)
    assert done["status"] == "succeeded", done.get("error")
    store = open_store(settings)
    after = {t["number"]: t for t in store.scan(RUNS, filters={"kind": "trial", "job": job_id})}
    store.close()
    counted = [t for t in after.values() if t.get("error") != "interrupted"]
    assert len(counted) == TRIALS
    # The trials finished before the kill were kept, not run again.
    for number, trial in before.items():
        assert after[number]["params"] == trial["params"]
        assert after[number]["value"] == trial["value"]
    assert done["result"]["model"]["state"] == "production"


def _ready(base: str) -> bool:
    try:
        return httpx.get(f"{base}/readyz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def get_status(store: Any, job_id: str) -> str:
    return str(store.get(RUNS, job_id)["status"])
