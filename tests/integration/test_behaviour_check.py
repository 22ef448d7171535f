"""``mlcycle check`` against a real served model: the inference API over loopback HTTP, the
model server and a SavedModel trained the way the trainer does.

The rates it prints must be the model's own: the same SavedModel scored directly,
cut at the served threshold, gives the same pass or fail for every case.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from mlcycle.common.http import BackgroundServer
from mlcycle.common.infra.redis import EmbeddedRedis
from mlcycle.common.settings import CHECKOUT_SUITE
from mlcycle.evaluation.behaviour import load_suite
from mlcycle.inference.api import create_app
from mlcycle.inference.runtime import InferenceRuntime
from tests.fixtures.inference import World, built_models, mlcycle_command

pytestmark = pytest.mark.integration

KEY = "check-key"
THRESHOLD = 0.5  # what built_models' version 1 serves with


@pytest.fixture(scope="module")
def served(
    tmp_path_factory: pytest.TempPathFactory, redis_server: EmbeddedRedis
) -> Iterator[tuple[str, World]]:
    world = World(
        built_models(tmp_path_factory.mktemp("check-models")), tmp_path_factory.mktemp("check")
    )
    world.start_server()
    settings = world.settings(redis_url=redis_server.url, api_keys=(KEY,))
    runtime = InferenceRuntime.open(settings)
    server = BackgroundServer(create_app(settings, runtime), "127.0.0.1", 0).start()
    yield f"http://127.0.0.1:{server.port}", world
    server.stop()
    runtime.close()
    world.stop_server()


def test_check_reports_the_served_models_pass_rates(served: tuple[str, World]) -> None:
    url, world = served
    suite = load_suite(CHECKOUT_SUITE)
    texts = suite.texts()
    toxic = world.direct_scores(1, texts) >= THRESHOLD
    expected = np.array([case.toxic for c in suite.capabilities for case in c.cases])
    passed = toxic == expected

    done = mlcycle_command(
        "check",
        "--suite",
        str(CHECKOUT_SUITE),
        "--url",
        url,
        "--api-key",
        KEY,
        "--json",
        "--batch",
        "40",
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["cases"] == len(suite) and report["model_versions"] == [1]
    assert report["pass_rate"] == pytest.approx(passed.mean(), abs=1e-4)
    at = 0
    for capability in suite.capabilities:
        n = len(capability.cases)
        rate = report["capabilities"][capability.capability]["rate"]
        assert rate == pytest.approx(passed[at : at + n].mean(), abs=1e-4), capability.capability
        at += n
    worst = min(report["capabilities"].items(), key=lambda item: item[1]["rate"])
    assert report["worst_rate"] == worst[1]["rate"]
    failed = {t for ts in report["failures"].values() for t in ts}
    assert failed == {t for t, ok in zip(texts, passed, strict=True) if not ok}

    # The table, and a gate the model misses: exit code 1 naming what was missed.
    gated = mlcycle_command(
        "check",
        "--suite",
        str(CHECKOUT_SUITE),
        "--url",
        url,
        "--api-key",
        KEY,
        "--min-capability-rate",
        "1.0",
    )
    assert gated.returncode == 1, gated.stderr
    assert "overall:" in gated.stdout and "worst capability" in gated.stdout
    assert f"missed: {worst[0]}" in gated.stdout.replace("\n", " ")


def test_check_refuses_a_bad_suite_naming_the_file(
    served: tuple[str, World], tmp_path: Path
) -> None:
    url, _ = served
    (tmp_path / "threats.json").write_text('{"capability": "threats", "cases": [}')
    done = mlcycle_command("check", "--suite", str(tmp_path), "--url", url, "--api-key", KEY)
    said = "".join(done.stderr.split())  # the console wraps long lines
    assert done.returncode == 2
    assert "threats.json:notvalidJSON" in said and "line1column" in said
    refused = mlcycle_command(
        "check", "--suite", str(CHECKOUT_SUITE), "--url", url, "--api-key", "wrong"
    )
    assert refused.returncode == 2 and "401" in refused.stderr
