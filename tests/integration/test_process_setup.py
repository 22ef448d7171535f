"""What importing mlcycle sets up for the whole process, before anything else loads."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

# A subprocess: each check imports mlcycle in a fresh interpreter.
pytestmark = pytest.mark.integration

SHOW = "import mlcycle, os; print(os.environ['GRPC_EXPERIMENTS'])"


def run(env: dict[str, str]) -> str:
    result = subprocess.run(
        [sys.executable, "-c", SHOW], env=env, capture_output=True, text=True, check=True
    )
    return result.stdout.strip()


def test_grpc_uses_the_classic_poller_unless_the_user_chose() -> None:
    env = {k: v for k, v in os.environ.items() if k != "GRPC_EXPERIMENTS"}
    assert run(env) == "-event_engine_client,-event_engine_listener"
    assert run({**env, "GRPC_EXPERIMENTS": "event_engine_client"}) == "event_engine_client"
