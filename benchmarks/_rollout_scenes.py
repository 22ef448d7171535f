"""Rollout scenes of ``serving_reliability.py``: a good canary, a bad one, a server killed mid-way.

Each scene starts a rollout through the trainer's REST API and lets the registry's
controller decide by itself on the evidence the inference service pools, while the
open-loop load of ``serving_reliability.py`` goes on; the answers it recorded say
which version gave each one. The versions are registered before the stack starts
(as a training job would), the shuffled-label one unblessed, so its rollout is an
admin's forced drill.

The benchmark's policy is the default one with smaller samples, so a scene takes a
minute at 100 requests/s rather than many: ``min_samples`` 100 pairs per phase and
step, and a tick every second.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

import _rollout_overhead as rollout_overhead
import numpy as np
from serving import build_model

from mlcycle.clients import ServiceClients
from mlcycle.common.settings import Settings
from mlcycle.common.store import open_store
from mlcycle.contracts.rollouts import Rollout, RolloutPolicy
from mlcycle.local.stack import LocalStack
from mlcycle.trainer.registry import ModelRegistry

# The versions the rollout scenes try (see build_versions), and the overhead's copy of 1.
BAD, GOOD, KILLED, COPY_OF_1 = 3, 4, 5, 9
POLICY = RolloutPolicy(min_samples=100, canary_steps=(5.0, 25.0, 50.0, 100.0))
SCENE_TIMEOUT_S = 420.0


def build_versions(settings: Settings, texts: dict, labels: dict) -> None:
    """Versions 1, 2 and 4 trained on the true labels (2, 3 and 4 epochs), 3 on shuffled
    ones, 5 a copy of 2, and a copy of 1 for the overhead; 1 serves, the rest registered."""
    build_model(settings, texts, labels, version=1, pin=False)
    build_model(settings, texts, labels, version=2, epochs=3, pin=False)
    shuffled = {split: np.random.default_rng(7).permutation(y) for split, y in labels.items()}
    build_model(settings, texts, shuffled, version=BAD, pin=False)
    build_model(settings, texts, labels, version=GOOD, epochs=4, pin=False)
    rollout_overhead.copy_version(settings, 2, KILLED)
    rollout_overhead.copy_version(settings, 1, COPY_OF_1)
    register_versions(settings, good=[1, 2, GOOD, KILLED], bad=[BAD], serving=1)


def register_versions(settings: Settings, good: list[int], bad: list[int], serving: int) -> None:
    """Record the exported versions as a training job would: good ones blessed, bad unblessed;
    serve ``serving``."""
    name = settings.trainer.model_name
    store = open_store(settings.store)
    try:
        registry = ModelRegistry(settings.trainer, store)
        for version in sorted(good + bad):
            folder = settings.trainer.models_dir / name / str(version)
            registry.register(
                name,
                version,
                job=None,
                transform="bench",
                label_run="bench",
                metrics={},
                params={},
                path=str(folder),
            )
            if version in good:
                registry.bless(name, version, "benchmark: trained on the true labels")
            else:
                registry.unbless(name, version, "benchmark: trained on shuffled labels")
        registry.promote(name, serving, "benchmark: the first model")
    finally:
        store.close()


def epoch(iso: str | None) -> float | None:
    """Seconds since the epoch of an ISO time (the rollout's clock is the wall clock)."""
    return None if iso is None else datetime.fromisoformat(iso).timestamp()


def follow(clients: ServiceClients, rollout_id: str, until: Callable[[Rollout], bool]) -> Rollout:
    """Poll the rollout until ``until`` holds (or the scene times out); the last state."""
    deadline = time.monotonic() + SCENE_TIMEOUT_S
    while True:
        rollout = clients.trainer.rollout(rollout_id).rollout
        if until(rollout) or time.monotonic() > deadline:
            return rollout
        time.sleep(0.5)


def finished(rollout: Rollout) -> bool:
    return not rollout.active


def roll_out(
    clients: ServiceClients, version: int, why: str, policy: RolloutPolicy, *, force: bool = False
) -> dict[str, Any]:
    """Start a rollout of ``version`` and follow it to its end."""
    started = time.time()
    view = clients.trainer.start_rollout(version, why, policy=policy, force=force)
    rollout = follow(clients, view.rollout.id, finished)
    return {"started": started, "ended": time.time(), "rollout": rollout}


def killed_mid_canary(
    stack: LocalStack, clients: ServiceClients, version: int, down_s: float
) -> dict[str, Any]:
    """Start a canary, kill the model server once the canary answers, restart it after
    ``down_s``, and follow the rollout to its end."""
    started = time.time()
    policy = POLICY.model_copy(update={"skip_shadow": True})
    why = "benchmark: a server dies mid-canary"
    view = clients.trainer.start_rollout(version, why, policy=policy)
    time.sleep(3.0)  # the canary answers its share for a moment
    stack.kill("modelserver")
    killed = time.time()
    time.sleep(down_s)
    stack.start_service("modelserver")
    stack.wait_ready("modelserver", 120)
    restarted = time.time()
    rollout = follow(clients, view.rollout.id, finished)
    return {
        "started": started,
        "killed": killed,
        "restarted": restarted,
        "ended": time.time(),
        "rollout": rollout,
    }


# -- figures --------------------------------------------------------------------------------------


def decided(rollout: Rollout, *actions: str) -> list[float]:
    """When the rollout took each decision of ``actions`` (epoch seconds)."""
    return [epoch(d.time) or 0.0 for d in rollout.decisions if d.action in actions]


def good_canary_figures(answers: list[Any], result: dict[str, Any]) -> dict[str, Any]:
    rollout: Rollout = result["rollout"]
    during = [a for a in answers if result["started"] <= a.wall < result["ended"]]
    serving = {rollout.baseline, rollout.candidate}
    return {
        "promoted": rollout.phase == "production",
        "failed_requests": sum(1 for a in during if a.status != 200),
        "unserved_version_answers": sum(
            1 for a in during if a.status == 200 and a.version not in serving
        ),
        "answers_from_candidate": sum(1 for a in during if a.version == rollout.candidate),
        "seconds_to_production": round(result["ended"] - result["started"], 1),
        "steps": [
            f"{d.action}@{d.canary_percent:g}" for d in rollout.decisions if d.action != "hold"
        ],
    }


def bad_canary_figures(answers: list[Any], result: dict[str, Any]) -> dict[str, Any]:
    rollout: Rollout = result["rollout"]
    during = [a for a in answers if result["started"] <= a.wall < result["ended"]]
    from_bad = [a for a in during if a.version == rollout.candidate]
    rolled_back_at = next(iter(decided(rollout, "rollback")), None)
    first = min((a.wall for a in from_bad), default=None)
    reason = next((d.reason for d in rollout.decisions if d.action == "rollback"), "")
    return {
        "rolled_back": rollout.phase == "rolled_back",
        "seconds_to_rollback": None
        if first is None or rolled_back_at is None
        else round(rolled_back_at - first, 2),
        "answers_from_bad": len(from_bad),
        "failed_requests": sum(1 for a in during if a.status != 200),
        "reason": reason,
    }


def killed_figures(answers: list[Any], result: dict[str, Any]) -> dict[str, Any]:
    rollout: Rollout = result["rollout"]
    moves = decided(rollout, "advance", "promote")
    down = [t for t in moves if result["killed"] <= t <= result["restarted"]]
    after = [t for t in moves if t > result["restarted"]]
    holds = [
        d.reason
        for d in rollout.decisions
        if d.action == "hold" and result["killed"] <= (epoch(d.time) or 0.0)
    ]
    return {
        "promotions_on_missing_data": len(down),
        "resumed": bool(after),
        "promoted": rollout.phase == "production",
        "phase": rollout.phase,
        "hold_reason": holds[0] if holds else "",
        "last_reason": rollout.decisions[-1].reason if rollout.decisions else "",
    }
