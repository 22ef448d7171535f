"""A closed-loop load driver and the demo's load test of ``POST /v1/predict``.

:func:`drive` runs ``clients`` asyncio tasks that each call back to back for a
fixed time (closed loop: a client sends its next request when the previous one
answered), recording every call's latency and what the call returned, so a
caller can tell kinds of requests apart afterwards. The serving benchmark
drives its rungs with it; :func:`predict_load` drives the inference service
with single-comment requests, alternating repeats of texts already scored (the
Redis cache answers: hits) with texts never seen before (featurized and
scored by the model server: misses).
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import uvloop

from mlcycle.clients import clients_for
from mlcycle.clients.inference import PREDICT_PATH, predict_body
from mlcycle.common.settings import Settings

Call = Callable[[int], Awaitable[Any]]
HIT, MISS = "hit", "miss"


@dataclass
class Run:
    """One driven load: every latency (ms), what each call returned, requests per second."""

    latencies_ms: list[float]
    rps: float
    outcomes: list[Any] = field(default_factory=list)
    seconds: float = 0.0

    def percentile(self, q: float, outcome: Any = None) -> float:
        """The ``q`` quantile (0..1) of the latencies, of the calls that returned ``outcome``."""
        values = self.latencies_ms
        if outcome is not None:
            values = [v for v, o in zip(values, self.outcomes, strict=True) if o == outcome]
        ordered = sorted(values)
        return ordered[min(len(ordered) - 1, int(len(ordered) * q))] if ordered else float("nan")

    def count(self, outcome: Any) -> int:
        """How many calls returned ``outcome``."""
        return sum(1 for o in self.outcomes if o == outcome)


async def drive(
    call: Call,
    clients: int,
    seconds: float,
    *,
    on_tick: Callable[[float, int], None] | None = None,
) -> Run:
    """``clients`` tasks calling back to back for ``seconds``; errors abort the run.

    ``call(i)`` gets a number unique to the call; its return value is kept in
    ``Run.outcomes``. ``on_tick(elapsed_s, calls_done)`` is called about every
    0.2 s while the load runs (a progress bar, say).
    """
    latencies: list[float] = []
    outcomes: list[Any] = []
    counter = itertools.count()
    started = time.perf_counter()
    deadline = started + seconds

    async def client() -> None:
        while time.perf_counter() < deadline:
            began = time.perf_counter()
            outcome = await call(next(counter))
            latencies.append((time.perf_counter() - began) * 1000)
            outcomes.append(outcome)

    async def ticker() -> None:
        while on_tick is not None and time.perf_counter() < deadline:
            on_tick(time.perf_counter() - started, len(latencies))
            await asyncio.sleep(0.2)

    tick = asyncio.create_task(ticker())
    try:
        await asyncio.gather(*(client() for _ in range(clients)))
    finally:
        tick.cancel()
    elapsed = time.perf_counter() - started
    if on_tick is not None:
        on_tick(elapsed, len(latencies))
    return Run(latencies, len(latencies) / elapsed, outcomes, elapsed)


def predict_load(
    settings: Settings,
    *,
    repeats: list[str],
    fresh: Callable[[int], str],
    clients: int,
    seconds: float,
    on_tick: Callable[[float, int], None] | None = None,
) -> Run:
    """Single-comment ``POST /v1/predict`` calls for ``seconds``: even calls hits, odd misses.

    ``repeats`` are scored once first, so the cache holds them and the even
    calls (cycling through them) are hits; odd call ``i`` sends ``fresh(i)``,
    a text never sent before. Outcomes are :data:`HIT` or :data:`MISS`; any
    answer but 200 with a score aborts the run.
    """
    # On uvloop, as the services run: the load generator shares the cores with what it
    # measures, so the less CPU its own event loop takes, the less it skews the figures.
    return uvloop.run(_predict_load(settings, repeats, fresh, clients, seconds, on_tick))


async def _predict_load(
    settings: Settings,
    repeats: list[str],
    fresh: Callable[[int], str],
    clients: int,
    seconds: float,
    on_tick: Callable[[float, int], None] | None,
) -> Run:
    # The hot loop runs on its own asyncio HTTP client; where and with which key come from
    # the inference service's client.
    inference = clients_for(settings).inference
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(
        base_url=inference.base_url, headers=inference.headers, timeout=30.0, limits=limits
    ) as client:

        async def predict(text: str) -> None:
            answer = await client.post(PREDICT_PATH, json=predict_body([text]))
            if answer.status_code != 200 or "score" not in answer.json()["predictions"][0]:
                raise RuntimeError(f"POST /v1/predict answered {answer.status_code}: {answer.text}")

        for text in repeats:  # warm the cache: from now on these are hits
            await predict(text)

        async def call(i: int) -> str:
            if i % 2 == 0:
                await predict(repeats[(i // 2) % len(repeats)])
                return HIT
            await predict(fresh(i))
            return MISS

        return await drive(call, clients, seconds, on_tick=on_tick)
