"""Serving under trouble: a version rollout, a model-server crash and a Redis outage, under load.

Setup as in ``serving.py``: a model trained on Davidson's train split is
exported as version 1 and pinned in ``models.config``; the model server and
the inference service run as their own processes, with a Redis this script
starts itself so it can stop it. A steady open-loop load of ``--rps``
single-comment ``POST /v1/predict`` requests (new texts, so every one goes to
the model server) runs through three scenes, and every answer is recorded:
status, latency, the model version it names, and the error message.

1. rollout: version 2 (the same network retrained one more epoch) is exported
   and promoted the way the registry does it (``models.config`` rewritten to
   pin version 2). The model server loads and warms it before unloading
   version 1. Expected: zero failed requests, and every answer names a version
   that was being served (1 before the switch, 2 after).
2. crash: the model server is killed (SIGKILL) and restarted after
   ``--down-s`` seconds. Expected while it is down: 503 answers naming the
   model server, no 500 and no request slower than the inference deadline
   allows; after the restart, recovery by itself. Reported: the answers by
   status, the slowest answer, and the seconds from restart to the first 200.
3. cache: Redis is stopped, then started again. Expected: predictions go on
   (all 200) and ``/readyz`` says degraded while it is down.

Before the load starts, the cost of a rollout to the answers is measured
(``_rollout_overhead.py``: shadow at 100 %, canary at 5 %, against neither). After
the three scenes, rollouts decided by the registry's controller on live evidence
(``_rollout_scenes.py``):

4. good canary: a version trained like production goes through shadow and every
   canary step to production. Expected: promoted, 0 failed requests, every answer
   naming production or the candidate.
5. bad canary: a version trained on shuffled labels, forced straight into canary
   (with shadow first it would never answer). Expected: rolled back by itself, 0
   failed requests; reported: the seconds from its first answer to the rollback
   and how many answers it gave.
6. server killed mid-canary: the model server dies while a canary runs and comes
   back after ``--down-s``. Expected: no step taken while it is down (missing data
   is never evidence), and the rollout resumes once it is back.
7. retraining: a drift alarm starts a retraining run that goes from labels to production
   with no human step (``_retraining_scene.py``, on a stack of its own; ``--only
   retraining`` runs it alone). Reported: the seconds from the alarm to the new model's
   first canary answer, and from there to production.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import functools
import logging
import signal
import sys
import tempfile
import time
from pathlib import Path

import _retraining_scene as retraining_scene
import _rollout_overhead as rollout_overhead
import _rollout_scenes as rollout_scenes
import orjson
from _harness import stack_settings
from _open_load import Answer, Load, during
from _rollout_scenes import BAD, COPY_OF_1, GOOD, KILLED
from quality import SPLITS, binary_task, load_davidson
from rich.console import Console
from rich.table import Table
from serving import DAVIDSON

from mlcycle.clients import (
    DeadlinePassed,
    ServiceClients,
    ServiceUnreachable,
    clients_for,
    poll_until,
)
from mlcycle.clients.inference import PREDICT_PATH
from mlcycle.common.errors import Unavailable
from mlcycle.common.infra.process import free_port
from mlcycle.common.infra.redis import EmbeddedRedis
from mlcycle.local.pipeline import wait_until_served
from mlcycle.local.stack import LocalStack

SCENES = ("rollout", "crash", "cache", "good_canary", "bad_canary", "server_killed_mid_canary")


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# -- scenes ---------------------------------------------------------------------------------------


def rollout(clients: ServiceClients) -> dict:
    """Promote version 2 through the registry's API; wait until its label ``stable`` serves."""
    promoted_at = time.perf_counter()
    clients.trainer.promote(2, "benchmark: a retrained version")
    seen: list[tuple[float, set[int]]] = []

    def v2_serves() -> bool:
        versions = clients.modelserver.available_versions(timeout_s=5.0)
        seen.append((time.perf_counter(), versions))
        return 2 in versions

    try:
        poll_until(v2_serves, timeout=120, interval=0.05, what="version 2 was not served")
    except DeadlinePassed:
        pass  # the polls say what was served meanwhile
    time.sleep(3.0)  # load after the switch, too
    return {"promoted_at": promoted_at, "seen": seen}


def crash(stack: LocalStack, clients: ServiceClients, down_s: float) -> dict:
    """SIGKILL the model server, keep it down ``down_s`` seconds, start it again."""
    stack.kill("modelserver", signal.SIGKILL)
    killed_at = time.perf_counter()
    time.sleep(down_s)
    stack.start_service("modelserver")
    restarted_at = time.perf_counter()
    stack.wait_ready("modelserver", 120)
    wait_until_served(clients, 2)
    time.sleep(3.0)
    return {"killed_at": killed_at, "restarted_at": restarted_at}


def cache_outage(redis: EmbeddedRedis, clients: ServiceClients, down_s: float) -> dict:
    """Stop Redis for ``down_s`` seconds; note what /readyz said meanwhile; start it again."""
    port = redis.port
    redis.stop()
    stopped_at = time.perf_counter()
    time.sleep(min(2.0, down_s))
    ready = readyz(clients)
    time.sleep(max(0.0, down_s - 2.0))
    redis_again = EmbeddedRedis(port=port)
    redis_again.start()
    time.sleep(3.0)
    return {"stopped_at": stopped_at, "readyz": ready, "redis": redis_again}


def readyz(clients: ServiceClients) -> dict[str, object]:
    """The inference service's ``/readyz`` status and what its body says (its status or code)."""
    try:
        ready = clients.inference.readiness(timeout_s=5.0)
    except ServiceUnreachable:
        raise
    except Unavailable as exc:  # it answered 503: a dependency it needs is down
        return {"status": exc.http_status, "body_status": exc.code}
    return {"status": 200, "body_status": ready.status}


# -- report ---------------------------------------------------------------------------------------


def by_status(answers: list[Answer]) -> dict[str, int]:
    return dict(sorted(collections.Counter(str(a.status) for a in answers).items()))


def rollout_figures(load: Load, start: float, end: float, result: dict) -> dict:
    answers = load.between(start, end)
    failed = [a for a in answers if a.status != 200]
    # A version was being served at a moment if the model server listed it AVAILABLE
    # at the poll before or after that moment.
    polls = result["seen"]
    unexpected = 0
    for answer in answers:
        if answer.status != 200:
            continue
        around = [v for t, v in polls if abs(t - answer.sent_at) < 2.0] or [{1, 2}]
        if not any(answer.version in versions for versions in around):
            unexpected += 1
    versions = collections.Counter(a.version for a in answers if a.status == 200)
    return {
        "requests": len(answers),
        "failed": len(failed),
        "by_version": {str(k): v for k, v in sorted(versions.items())},
        "answers_naming_an_unserved_version": unexpected,
        "last_version": answers[-1].version if answers else None,
    }


def crash_figures(load: Load, start: float, end: float, result: dict) -> dict:
    answers = load.between(start, end)
    down = [a for a in answers if result["killed_at"] <= a.sent_at < result["restarted_at"]]
    after = [a for a in answers if a.sent_at >= result["restarted_at"]]
    first_ok = next((a.sent_at for a in after if a.status == 200), None)
    messages = collections.Counter(a.error for a in down if a.status == 503)
    return {
        "requests": len(answers),
        "by_status_while_down": by_status(down),
        "server_errors_5xx_other_than_503": sum(
            1 for a in answers if a.status >= 500 and a.status != 503 or a.status == 0
        ),
        "slowest_ms": max((a.latency_ms for a in answers), default=0.0),
        "recovered_s_after_restart": None
        if first_ok is None
        else round(first_ok - result["restarted_at"], 2),
        "failed_after_recovery": sum(
            1 for a in after if first_ok is not None and a.sent_at > first_ok and a.status != 200
        ),
        "error_message": messages.most_common(1)[0][0] if messages else "",
    }


def cache_figures(load: Load, start: float, end: float, result: dict) -> dict:
    answers = load.between(start, end)
    return {
        "requests": len(answers),
        "by_status": by_status(answers),
        "readyz_while_down": result["readyz"],
    }


async def scenes(args: argparse.Namespace, stack: LocalStack, redis: EmbeddedRedis, data) -> dict:
    settings = stack.settings
    clients = clients_for(settings)
    texts = data[0]["test"]
    figures: dict[str, dict] = {}
    log("rollout overhead: shadow at 100 %, canary at 5 %, routing alone, and neither")
    overhead = await asyncio.to_thread(
        rollout_overhead.measure,
        settings,
        clients,
        texts,
        stable=1,
        copy=COPY_OF_1,
        seconds=args.seconds,
        repeats=args.repeats,
        processes={name: stack.processes[name].pid for name in ("inference-api", "modelserver")},
    )
    figures["overhead"] = overhead
    log(f"  {overhead}")
    if args.only == "overhead":
        return figures
    headers = {"Content-Type": "application/json", **clients.inference.headers}
    load = Load(clients.inference.url(PREDICT_PATH), headers, args.rps, texts)
    running = asyncio.create_task(load.run())
    await asyncio.sleep(3.0)
    log("scene 1: rollout of version 2")
    start, end, result = await during(load, rollout, clients)
    figures["rollout"] = rollout_figures(load, start, end, result)
    log("scene 2: model server crash and restart")
    start, end, result = await during(load, crash, stack, clients, args.down_s)
    figures["crash"] = crash_figures(load, start, end, result)
    log("scene 3: Redis outage")
    start, end, result = await during(load, cache_outage, redis, clients, args.down_s)
    figures["cache"] = cache_figures(load, start, end, result)
    restarted_redis = result["redis"]  # the rollouts' evidence is pooled in it
    try:
        figures |= await rollout_scenes_under(load, stack, clients, args)
    finally:
        load.stop()
        await running
        restarted_redis.stop()
    clients.close()
    figures["load"] = {"rps": args.rps, "requests": len(load.answers)}
    return figures


async def rollout_scenes_under(
    load: Load, stack: LocalStack, clients: ServiceClients, args: argparse.Namespace
) -> dict[str, dict]:
    """Scenes 4-6: rollouts the registry decides by itself while the load goes on."""
    figures: dict[str, dict] = {}
    policy = rollout_scenes.POLICY
    log("scene 4: a good canary (version 4) through shadow and every step")
    _, _, result = await during(
        load, rollout_scenes.roll_out, clients, GOOD, "benchmark: a good candidate", policy
    )
    figures["good_canary"] = rollout_scenes.good_canary_figures(load.answers, result)
    log(f"  {figures['good_canary']}")
    log("scene 5: a bad canary (version 3, shuffled labels), forced into canary")
    drill = policy.model_copy(update={"skip_shadow": True})
    forced = functools.partial(rollout_scenes.roll_out, force=True)
    _, _, result = await during(load, forced, clients, BAD, "benchmark: a bad drill", drill)
    figures["bad_canary"] = rollout_scenes.bad_canary_figures(load.answers, result)
    log(f"  {figures['bad_canary']}")
    log("scene 6: the model server killed mid-canary (version 5)")
    _, _, result = await during(
        load, rollout_scenes.killed_mid_canary, stack, clients, KILLED, args.down_s
    )
    figures["server_killed_mid_canary"] = rollout_scenes.killed_figures(load.answers, result)
    log(f"  {figures['server_killed_mid_canary']}")
    return figures


def report(figures: dict, retraining: dict) -> None:
    console = Console()
    if "rollout" in figures:
        serving_report(console, figures)
    elif "overhead" in figures:
        console.print(rollout_overhead.summary(figures["overhead"]))
    if retraining:
        console.print(retraining_scene.summary(retraining))


def serving_report(console: Console, figures: dict) -> None:
    table = Table(title="serving under trouble")
    table.add_column("scene")
    table.add_column("figure")
    table.add_column("value", justify="right")
    for scene in SCENES:
        for name, value in figures[scene].items():
            table.add_row(scene, name, str(value))
    console.print(table)
    console.print(rollout_overhead.summary(figures["overhead"]))
    rollout_ok = (
        figures["rollout"]["failed"] == 0
        and figures["rollout"]["answers_naming_an_unserved_version"] == 0
    )
    crash_ok = (
        figures["crash"]["server_errors_5xx_other_than_503"] == 0
        and figures["crash"]["recovered_s_after_restart"] is not None
        and figures["crash"]["failed_after_recovery"] == 0
    )
    cache_ok = set(figures["cache"]["by_status"]) == {"200"}
    good, bad = figures["good_canary"], figures["bad_canary"]
    killed = figures["server_killed_mid_canary"]
    verdicts = {
        "rollout": rollout_ok,
        "crash": crash_ok,
        "cache": cache_ok,
        "good canary": good["promoted"]
        and good["failed_requests"] == 0
        and good["unserved_version_answers"] == 0,
        "bad canary": bad["rolled_back"] and bad["failed_requests"] == 0,
        "killed mid-canary": killed["promotions_on_missing_data"] == 0 and killed["resumed"],
    }
    for name, ok in verdicts.items():
        console.print(f"{name}: {'met' if ok else 'MISSED'}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DAVIDSON)
    parser.add_argument("--rps", type=float, default=100.0)
    parser.add_argument("--down-s", type=float, default=5.0)
    parser.add_argument("--seconds", type=float, default=4.0, help="per overhead run")
    parser.add_argument("--repeats", type=int, default=5, help="overhead runs per mode")
    parser.add_argument("--retraining-tweets", type=int, default=5000, help="scene 7's data")
    parser.add_argument("--only", choices=("retraining", "overhead"), help="run this scene alone")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if not args.data.is_file():
        log(f"no Davidson data at {args.data}: see ../shared/data/*/SOURCE.md")
        return 2
    figures = {} if args.only == "retraining" else serving_scenes(args)
    retraining: dict = {}
    if args.only != "overhead":
        log("scene 7: a retraining cycle triggered by a drift alarm (a stack of its own)")
        retraining = retraining_scene.run(args.data, args.retraining_tweets, args.rps)
        log(f"  {retraining}")
    report(figures, retraining)
    overhead = figures.pop("overhead", {})
    headline = {key: overhead[key] for key in ("shadow", "canary_overhead") if key in overhead}
    line = {"benchmark": "serving_reliability", **headline, **figures}
    line |= {"retraining": retraining} if retraining else {}
    print(orjson.dumps(line | ({"overhead": overhead} if overhead else {})).decode())
    return 0


def serving_scenes(args: argparse.Namespace) -> dict:
    """Scenes 1-6 and the overhead, on the serving stack."""
    corpus = load_davidson(args.data)
    task = binary_task(corpus)
    rows = {s: corpus.rows(s) for s in SPLITS}
    texts = {s: corpus.texts_of(rows[s]) for s in SPLITS}
    labels = {s: task.labels[rows[s]] for s in SPLITS}
    with tempfile.TemporaryDirectory(prefix="mlcycle-bench-reliability-") as tmp:
        redis = EmbeddedRedis(port=free_port(), data_dir=Path(tmp) / "redis").start()
        settings = stack_settings(
            Path(tmp),
            redis_url=redis.url,
            model_server_port=free_port(),
            model_server_rest_port=free_port(),
            inference_port=free_port(),
            inference_stream_metrics_port=free_port(),
            trainer_port=free_port(),
            rollout_tick_s=1.0,
        )
        rollout_scenes.build_versions(settings, texts, labels)
        stack = LocalStack(
            settings,
            services=("modelserver", "inference-api", "trainer-api"),
            log_dir=Path(tmp) / "logs",
        )
        try:
            stack.start()
            with clients_for(stack.settings) as clients:
                wait_until_served(clients, 1)
            return asyncio.run(scenes(args, stack, redis, (texts, labels)))
        finally:
            stack.stop()
            redis.stop()


if __name__ == "__main__":
    sys.exit(main())
