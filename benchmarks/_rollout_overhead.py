"""What shadow scoring and canary routing cost the answers: ``predict_miss`` at 8 clients.

Version ``copy`` is the production SavedModel copied under a new number (same weights,
same transform), so any difference comes from the rollout machinery itself: routing
every instance, scoring the shadow (or production beside a canary answer) off the
answer's path, and pooling the evidence. The modes are set the way the registry sets
them, by ``models.config`` (both versions, labelled) and ``routing.json``; the inference
service re-reads the routing every second. Modes alternate within each repeat (off,
shadow at 100 %, canary at 5 %, and routing alone: a canary at 0.01 %, so every request
is routed and its evidence pooled while almost none is answered by the copy), and the
figures are medians over repeats.

Beside throughput and p50, each mode's CPU time per request of the inference and model
server processes (user + system, read from the OS before and after each run, the
off-path work's round included) says where a mode's cost goes: the routing itself, or
the second version's model calls.
"""

from __future__ import annotations

import asyncio
import shutil
import statistics
import time
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import psutil

from mlcycle.clients import ServiceClients
from mlcycle.clients.inference import PREDICT_PATH, predict_body
from mlcycle.common.settings import Settings
from mlcycle.contracts.models import ServingPointer, pointer_id
from mlcycle.contracts.rollouts import RoutingTable
from mlcycle.contracts.serving import serving_config_path, write_routing_table
from mlcycle.local.loadtest import Run, drive
from mlcycle.trainer.serving_config import render_serving_config

CLIENTS = 8
CANARY_SHARE = 0.05
# "routing": every request routed and its evidence pooled, almost none answered by the copy.
ROUTING_ONLY_SHARE = 0.0001
MODES = ("off", "shadow", "canary", "routing")
# After a run, the off-path worker's last round (it polls every half second) is waited for,
# so its CPU counts in the run's.
OFFPATH_ROUND_S = 0.6


def pointer(settings: Settings, stable: int, copy: int, mode: str) -> ServingPointer:
    """The serving pointer of one mode (``revision`` grows so the replicas notice)."""
    name = settings.trainer.model_name
    fields: dict[str, Any] = {"id": pointer_id(name), "name": name, "version": stable}
    if mode == "shadow":
        fields |= {"shadow": copy, "shadow_share": 1.0, "rollout": "bench-overhead"}
    elif mode in ("canary", "routing"):
        share = CANARY_SHARE if mode == "canary" else ROUTING_ONLY_SHARE
        fields |= {"canary": copy, "canary_share": share, "rollout": "bench-overhead"}
    fields["revision"] = int(time.time() * 1000)
    return ServingPointer(**fields)


def set_mode(settings: Settings, stable: int, copy: int, mode: str) -> None:
    """Write the serving config (both versions loaded) and the routing of ``mode``."""
    models = settings.trainer.models_dir
    current = pointer(settings, stable, copy, mode)
    both = current.model_copy(update={"previous": [copy]})  # keep the copy loaded in every mode
    serving_config_path(models).write_text(
        render_serving_config([both], str(models)), encoding="utf-8"
    )
    write_routing_table(models, RoutingTable(models={current.name: current.routing_state()}))


def copy_version(settings: Settings, source: int, target: int) -> Path:
    """Version ``target``: the SavedModel of ``source`` under a new number."""
    folder = settings.trainer.models_dir / settings.trainer.model_name
    shutil.copytree(folder / str(source), folder / str(target), dirs_exist_ok=True)
    metadata = folder / str(target) / "metadata.json"
    meta = orjson.loads(metadata.read_bytes())
    metadata.write_bytes(orjson.dumps({**meta, "version": target}))
    return folder / str(target)


async def _drive_mode(url: str, headers: dict[str, str], texts: list[str], seconds: float) -> Run:
    tag = time.time_ns()
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(timeout=timeout) as session:

        async def call(i: int) -> int:
            body = orjson.dumps(predict_body([f"{texts[i % len(texts)]} ~{tag}-{i}"]))
            async with session.post(url, data=body, headers=headers) as response:
                await response.read()
                return response.status

        return await drive(call, CLIENTS, seconds)


def _cpu_s(processes: dict[str, psutil.Process]) -> dict[str, float]:
    return {name: sum(p.cpu_times()[:2]) for name, p in processes.items()}


def measure(
    settings: Settings,
    clients: ServiceClients,
    texts: list[str],
    *,
    stable: int,
    copy: int,
    seconds: float,
    repeats: int,
    processes: dict[str, int] | None = None,
) -> dict[str, Any]:
    """Throughput and p50 of unseen single-comment requests per mode; medians and ratios.

    ``processes``: name -> pid of the processes whose CPU time per request is read.
    """
    url = clients.inference.url(PREDICT_PATH)
    headers = {"Content-Type": "application/json", **clients.inference.headers}
    watched = {name: psutil.Process(pid) for name, pid in (processes or {}).items()}
    runs: dict[str, list[Run]] = {mode: [] for mode in MODES}
    cpu: dict[str, list[dict[str, float]]] = {mode: [] for mode in MODES}
    for repeat in range(repeats):
        order = MODES if repeat % 2 == 0 else MODES[::-1]
        for mode in order:
            set_mode(settings, stable, copy, mode)
            time.sleep(2.5)  # every replica has re-read the routing
            asyncio.run(_drive_mode(url, headers, texts, 1.0))  # warm the mode
            before = _cpu_s(watched)
            run = asyncio.run(_drive_mode(url, headers, texts, seconds))
            time.sleep(OFFPATH_ROUND_S)
            after = _cpu_s(watched)
            runs[mode].append(run)
            n = max(1, len(run.outcomes))
            cpu[mode].append({k: (after[k] - before[k]) / n * 1e3 for k in watched})
    set_mode(settings, stable, copy, "off")
    rps = {m: statistics.median(r.rps for r in runs[m]) for m in MODES}
    p50 = {m: statistics.median(r.percentile(0.5) for r in runs[m]) for m in MODES}
    failed = {m: sum(len(r.outcomes) - r.count(200) for r in runs[m]) for m in MODES}
    cpu_ms = {m: {k: statistics.median(c[k] for c in cpu[m]) for k in watched} for m in MODES}
    return {
        "rps": rps,
        "p50_ms": p50,
        "failed": failed,
        "cpu_ms_per_request": cpu_ms,
        "shadow": {
            "throughput_ratio": rps["shadow"] / rps["off"],
            "p50_delta_ms": p50["shadow"] - p50["off"],
        },
        "canary_overhead": {
            "throughput_ratio": rps["canary"] / rps["off"],
            "canary_share": CANARY_SHARE,
            "routing_only_throughput_ratio": rps["routing"] / rps["off"],
        },
    }


def summary(overhead: dict[str, Any]) -> str:
    """The ratios against their targets, and where each mode's CPU goes."""
    shadow, canary = overhead["shadow"], overhead["canary_overhead"]
    cpu = "; ".join(
        f"{mode} {c.get('inference-api', 0):.3f} / {c.get('modelserver', 0):.3f}"
        for mode, c in overhead["cpu_ms_per_request"].items()
    )
    return (
        f"shadow at 100 %: {shadow['throughput_ratio']:.3f}x throughput, "
        f"p50 {shadow['p50_delta_ms']:+.2f} ms (targets >= 0.9x, <= +0.3 ms); "
        f"canary at 5 %: {canary['throughput_ratio']:.3f}x (target >= 0.97x); "
        f"routing alone: {canary['routing_only_throughput_ratio']:.3f}x\n"
        f"CPU ms per request (inference / model server): {cpu}"
    )
