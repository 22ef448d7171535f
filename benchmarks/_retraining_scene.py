"""Scene 7 of ``serving_reliability.py``: a drift alarm retrains and rolls out by itself.

A stack of its own, with every service a retraining run needs (collector, indexer,
labeler, featurizer, trainer, model server, inference), because the run makes its
model from fresh labels rather than from files written beforehand:

1. A subset of Davidson et al.'s tweets (``--retraining-tweets``, drawn with a fixed
   seed into a temporary copy) goes through the project's importer, Kafka and the
   indexer; the labeler labels it (Dawid-Skene over the crowd votes), the featurizer
   fits a transform and builds the shards, and the trainer trains one trial and
   promotes it: the live model, with the profile its monitor compares traffic to.
2. The monitor sees one window of clean traffic (dev comments), then drifted windows
   (the demo's drift: test comments with the toxic share moved and a burst of new
   words) until a signal is in alarm.
3. The retraining runner checks its triggers right after, as ``mlcycle retrain watch``
   does every ``retraining_check_s``: the alarm starts a run, which the runner drives
   with no human step: label, featurize, train (1 trial), bless (within 0.02 ROC-AUC
   of production, the demo's tolerance), then a rollout the registry decides alone on
   live evidence (shadow, canary 5 → 25 → 50 → 100 %, production). The open-loop load
   of the benchmark (dev comments, each made new) runs from the trigger to the end.

Measured, on the wall clock every process shares:

- ``alarm_to_canary_s``: from the alarm (the monitor's ``since`` of the earliest
  signal the run names) to the candidate's first answer as the load received it
  (the first 200 naming the candidate's version: a shadow never answers, so that is
  its first canary answer);
- ``canary_to_production_s``: from that answer to the registry's promotion (the
  rollout's ``finished_at`` in production).

``from_records`` gives the same two from the run's record alone (the rollout's first
canary step rather than its first answer). A candidate the blessing refuses, or a
rollout that does not reach production, leaves the figures null, and ``null_because``
says why.
"""

from __future__ import annotations

import asyncio
import csv
import gzip
import random
import sys
import tempfile
import time
import traceback
from datetime import datetime
from pathlib import Path
from typing import Any

from _harness import serving_settings
from _open_load import Answer, Load, during
from rich.console import Console

from mlcycle.clients import ServiceClients, clients_for
from mlcycle.clients.inference import PREDICT_PATH
from mlcycle.common.errors import Unavailable
from mlcycle.common.infra.process import free_port
from mlcycle.common.settings import Settings
from mlcycle.contracts.label_runs import RunParams
from mlcycle.contracts.retraining import RetrainingRun
from mlcycle.local.demo_monitoring import Labeled, drift, split_comments
from mlcycle.local.demo_rollouts import DEMO_RETRAINING, write_retraining_policy
from mlcycle.local.pipeline import (
    featurize_via_api,
    import_dataset,
    label_via_api,
    train_via_api,
    wait_until_indexed,
    wait_until_served,
)
from mlcycle.local.retraining import RetrainingRunner, cycle_figures
from mlcycle.local.stack import LocalStack

SERVICES = (
    "collector-api",
    "collector-indexer",
    "labeler-api",
    "featurizer-api",
    "trainer-api",
    "modelserver",
    "inference-api",
)
WINDOW = 250  # records per monitor window: small, so the drift shows within seconds
MAX_DRIFTED_WINDOWS = 4
FIRST_MODEL_BUDGET_S = 120.0
WINDOW_WAIT_S = 60.0
MEASURED = (
    "alarm: the monitor's since of the earliest signal the run names; first canary "
    "answer: the first 200 the load received naming the candidate version; production: "
    "the registry's promotion (the rollout's finished_at)"
)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def subset(source: Path, folder: Path, tweets: int) -> Path:
    """``tweets`` rows of Davidson's file drawn with a fixed seed, as a file the importer reads."""
    with gzip.open(source, "rt", encoding="utf-8", newline="") as handle:
        rows = list(csv.reader(handle))
    header, body = rows[0], rows[1:]
    kept = random.Random(21).sample(body, min(tweets, len(body)))
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "labeled_data.csv.gz"
    with gzip.open(path, "wt", encoding="utf-8", newline="") as handle:
        csv.writer(handle).writerows([header, *kept])
    return path


def run(data: Path, tweets: int, rps: float) -> dict[str, Any]:
    """The whole scene in a temporary data directory; its figures."""
    with tempfile.TemporaryDirectory(prefix="mlcycle-bench-retraining-") as tmp:
        root = Path(tmp)
        policy = write_retraining_policy(root)
        settings = serving_settings(
            root,
            trainer_port=free_port(),
            rollout_tick_s=1.0,
            retraining_policy_file=str(policy),
            retraining_poll_s=1.0,
            monitor_window_records=WINDOW,
            monitor_min_window_records=100,
        )
        stack = LocalStack(settings, services=SERVICES, log_dir=root / "logs")
        try:
            settings = stack.start(timeout_s=120.0)
            with clients_for(settings) as clients:
                return _scene(settings, clients, subset(data, root / "subset", tweets), rps)
        except Exception as exc:  # the other scenes' figures are still printed
            log(traceback.format_exc())
            why = f"the scene failed: {type(exc).__name__}: {exc}"
            return {"alarm_to_canary_s": None, "canary_to_production_s": None, "null_because": why}
        finally:
            stack.stop()


def _scene(settings: Settings, clients: ServiceClients, path: Path, rps: float) -> dict[str, Any]:
    quiet = Console(quiet=True)
    started = time.monotonic()
    log(f"  importing {path.name} (a Davidson subset) through Kafka")
    imported = import_dataset(settings, "davidson", [path], console=quiet)
    wait_until_indexed(settings.kafka, settings.collector.indexer_group_id)
    labeled = label_via_api(clients.labeler, RunParams(task=settings.labeler.task), console=quiet)
    featurize_via_api(clients.featurizer, labeled.id)
    log(f"  label run {labeled.id}; training the first model (1 trial)")
    first = train_via_api(
        clients.trainer, labeled.id, 1, console=quiet, time_budget_s=FIRST_MODEL_BUDGET_S
    )
    version = clients.trainer.production_version(settings.trainer.model_name)
    if version is None:
        model = first.result.model if first.result else None
        raise Unavailable(f"the first model did not reach production: {model}")
    wait_until_served(clients, version)
    setup_s = time.monotonic() - started
    rng = random.Random(3)
    clean = split_comments(clients, labeled.id, "dev", 3 * WINDOW, rng)
    tested = split_comments(clients, labeled.id, "test", WINDOW, rng)
    log(f"  v{version} in production after {setup_s:.0f} s; clean, then drifted traffic")
    _window(clients, version, rng.sample(clean, min(WINDOW, len(clean))))
    alarms: list[str] = []
    for n in range(MAX_DRIFTED_WINDOWS):
        alarms = _window(clients, version, drift(tested, WINDOW, random.Random(7 + n)))
        if alarms:
            break
    if not alarms:
        return {
            "alarm_to_canary_s": None,
            "canary_to_production_s": None,
            "null_because": f"no drift alarm after {MAX_DRIFTED_WINDOWS} drifted windows",
        }
    log(f"  alarm on {', '.join(alarms)}; the retraining runner checks its triggers")
    runner = RetrainingRunner(clients, settings, console=quiet)
    requested = runner.check()
    if requested is None or requested.trigger != "drift":
        why = "no run started" if requested is None else f"trigger {requested.trigger}"
        return {"alarm_to_canary_s": None, "canary_to_production_s": None, "null_because": why}
    texts = [c.text for c in clean]
    ended, answers = asyncio.run(_under_load(clients, runner, requested.id, texts, rps))
    figures = cycle(ended, answers, clients)
    figures |= {
        "measured": MEASURED,
        "data": f"{imported.comments} Davidson tweets, {imported.votes} crowd votes",
        "first_model": version,
        "setup_s": round(setup_s, 1),
        "policy": DEMO_RETRAINING.model_dump(
            include={"trials", "train_time_budget_s", "bless_margin"}
        )
        | {"min_samples": 100, "monitor_window_records": WINDOW},
        "load": {"rps": rps, "requests": len(answers)},
    }
    return figures


async def _under_load(
    clients: ServiceClients, runner: RetrainingRunner, run_id: str, texts: list[str], rps: float
) -> tuple[RetrainingRun, list[Answer]]:
    """Drive the run in a thread while the open-loop load goes on."""
    headers = {"Content-Type": "application/json", **clients.inference.headers}
    load = Load(clients.inference.url(PREDICT_PATH), headers, rps, texts)
    running = asyncio.create_task(load.run())
    try:
        _, _, ended = await during(load, runner.run, run_id)
    finally:
        load.stop()
        await running
    return ended, load.answers


def _window(clients: ServiceClients, version: int, comments: list[Labeled]) -> list[str]:
    """Send one window's comments with their ids; once the monitor has judged it, the
    signals in alarm."""
    before = max((s.windows for s in _signals(clients, version)), default=0)
    for start in range(0, len(comments), 50):
        chunk = comments[start : start + 50]
        clients.inference.predict([c.text for c in chunk], ids=[c.id for c in chunk])
    deadline = time.monotonic() + WINDOW_WAIT_S
    while time.monotonic() < deadline:
        signals = _signals(clients, version)
        if max((s.windows for s in signals), default=0) > before:
            return sorted(s.signal for s in signals if s.alarm)
        time.sleep(0.25)
    raise Unavailable(f"the monitor judged no window of v{version} within {WINDOW_WAIT_S:.0f} s")


def _signals(clients: ServiceClients, version: int) -> list[Any]:
    state = clients.inference.monitoring(version)
    return [s for v in state.versions if v.model_version == version for s in v.signals]


def cycle(run: RetrainingRun, answers: list[Answer], clients: ServiceClients) -> dict[str, Any]:
    """The cycle's figures: from the alarm to the candidate's first answer the load got, and
    from there to the promotion; null (and why) where the run did not get that far."""
    since = run.why.get("since")
    alarms = [str(t) for t in since.values() if t] if isinstance(since, dict) else []
    alarm = _epoch(min(alarms)) if alarms else None
    stages = {s.name: _seconds(s.started_at, s.finished_at) for s in run.stages}
    figures: dict[str, Any] = {
        "alarm_to_canary_s": None,
        "canary_to_production_s": None,
        "run": run.id,
        "trigger": run.trigger,
        "signals": run.why.get("signals"),
        "status": run.status,
        "stages_s": stages,
        "from_records": {k: _round(v) for k, v in cycle_figures(run).items()},
        "failed_requests": sum(1 for a in answers if a.status != 200),
    }
    stage = run.stage("rollout")
    rollout_id = stage.detail.get("rollout") if stage is not None else None
    if not rollout_id:
        failed = next((s for s in run.stages if s.status != "succeeded"), None)
        where = f"{failed.name}: " if failed is not None else ""
        return figures | {"null_because": f"{where}{run.reason or run.status}"}
    rollout = clients.trainer.rollout(str(rollout_id)).rollout
    first = min(
        (
            a.wall + a.latency_ms / 1000
            for a in answers
            if a.status == 200 and a.version == rollout.candidate
        ),
        default=None,
    )
    promoted = _epoch(rollout.finished_at) if rollout.phase == "production" else None
    figures |= {
        "candidate": rollout.candidate,
        "outcome": rollout.phase,
        "answers_from_candidate": sum(1 for a in answers if a.version == rollout.candidate),
        "steps": [
            f"{d.action}@{d.canary_percent:g}" for d in rollout.decisions if d.action != "hold"
        ],
    }
    if alarm is not None and first is not None:
        figures["alarm_to_canary_s"] = round(first - alarm, 1)
    if first is not None and promoted is not None:
        figures["canary_to_production_s"] = round(promoted - first, 1)
    if promoted is None:
        last = rollout.decisions[-1].reason if rollout.decisions else ""
        figures["null_because"] = f"rollout ended {rollout.phase}: {last}"
    elif first is None:
        figures["null_because"] = "the load received no answer from the candidate"
    return figures


def summary(figures: dict[str, Any]) -> str:
    """The scene's figures in a sentence."""
    if figures.get("null_because"):
        return f"retraining on a drift alarm: no figure, {figures['null_because']}"
    return (
        f"retraining on a drift alarm: {figures['alarm_to_canary_s']} s from the alarm to the "
        f"first canary answer, {figures['canary_to_production_s']} s from there to production"
    )


def _round(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds, 1)


def _epoch(iso: str | None) -> float | None:
    return None if not iso else datetime.fromisoformat(iso).timestamp()


def _seconds(start: str | None, end: str | None) -> float | None:
    if not start or not end:
        return None
    return round((datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds(), 1)
