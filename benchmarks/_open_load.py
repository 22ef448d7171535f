"""The open-loop load the reliability scenes run under: every answer recorded with its version.

One request every 1/rps seconds, whatever the answers take; each text is new (a counter
is appended), so every request reaches the model server. Each answer keeps its status,
latency, the model version it names and its error message.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson

from mlcycle.clients.inference import predict_body


@dataclass
class Answer:
    """One request's outcome (``sent_at`` on the monotonic clock, ``wall`` the same moment
    on the wall clock the rollouts' decisions are timed by)."""

    sent_at: float
    status: int
    latency_ms: float
    version: int | None = None
    error: str = ""
    wall: float = field(default_factory=time.time)


@dataclass
class Load:
    """An open-loop load: one request every 1/rps seconds, whatever the answers take."""

    url: str
    headers: dict[str, str]
    rps: float
    texts: list[str]
    answers: list[Answer] = field(default_factory=list)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self) -> None:
        counter = itertools.count()
        pending: set[asyncio.Task] = set()
        timeout = aiohttp.ClientTimeout(total=30)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            interval = 1.0 / self.rps
            next_at = time.perf_counter()
            while not self._stop.is_set():
                i = next(counter)
                text = f"{self.texts[i % len(self.texts)]} #{i}"
                task = asyncio.create_task(self._one(session, text))
                pending.add(task)
                task.add_done_callback(pending.discard)
                next_at += interval
                await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
            await asyncio.gather(*pending)

    def stop(self) -> None:
        self._stop.set()

    async def _one(self, session: aiohttp.ClientSession, text: str) -> None:
        started = time.perf_counter()
        body = orjson.dumps(predict_body([text]))
        try:
            async with session.post(self.url, data=body, headers=self.headers) as response:
                payload = await response.read()
                status = response.status
        except aiohttp.ClientError as exc:
            self.answers.append(Answer(started, 0, _ms(started), error=str(exc)))
            return
        answer = Answer(started, status, _ms(started), wall=time.time() - _ms(started) / 1000)
        try:
            decoded = orjson.loads(payload)
            if status == 200:
                answer.version = int(decoded["predictions"][0]["model_version"])
            else:
                answer.error = str(decoded["error"]["message"])
        except (ValueError, KeyError, TypeError, IndexError):
            answer.error = payload[:200].decode("utf-8", "replace")
        self.answers.append(answer)

    def between(self, start: float, end: float) -> list[Answer]:
        return [a for a in self.answers if start <= a.sent_at < end]


def _ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000


async def during(load: Load, scene: Callable[..., Any], *args: object) -> tuple[float, float, Any]:
    """Run ``scene`` in a thread while ``load`` goes on; (start, end, scene's result)."""
    start = time.perf_counter()
    result = await asyncio.to_thread(scene, *args)
    return start, time.perf_counter(), result
