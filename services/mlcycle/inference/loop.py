"""Event loops for blocking callers of the asyncio clients.

The score cache and the model server's Predict are written once, for asyncio. A
caller that blocks (the streaming scorer's consumer loop, readiness checks,
lineage requests on worker threads) hands their coroutines to an event loop
running on another thread and waits for the result: a :class:`LoopRunner` over a
loop that already runs (the API's own), or a :class:`LoopThread`, a private
loop on a daemon thread. An asyncio client's connections belong to the loop
that made them, so a blocking wrapper creates its client on its loop and only
ever uses it there.

A process should bind ``grpc.aio`` to one loop only: gRPC wakes every bound loop
on every completion, so a second loop, even idle, costs the first a fifth more
CPU per call.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

# How long closing waits for a private loop's thread to end.
JOIN_TIMEOUT_S = 5.0


class LoopRunner:
    """Runs coroutines for blocking callers on an event loop that runs on another thread."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._closed = False

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run ``coroutine`` on the loop and block until it is done; its result or its error."""
        if self._closed:
            coroutine.close()
            raise RuntimeError("the event loop runner is closed")
        if _running_loop() is self._loop:
            coroutine.close()
            raise RuntimeError("a blocking call on its own event loop: await the coroutine")
        if not self._accepting():
            coroutine.close()
            raise RuntimeError("the event loop is not running")
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()

    def close(self) -> None:
        """Refuse further work (the loop itself belongs to whoever runs it)."""
        self._closed = True

    def _accepting(self) -> bool:
        # A borrowed loop that stopped would never run the coroutine: refuse, not hang.
        return self._loop.is_running()


class LoopThread(LoopRunner):
    """A private event loop running on a daemon thread; thread-safe, several callers at once."""

    def __init__(self, name: str = "mlcycle-loop") -> None:
        super().__init__(asyncio.new_event_loop())
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_forever()

    def _accepting(self) -> bool:
        return True  # its thread may not have entered the loop yet; it runs until closed

    def close(self) -> None:
        """Stop the loop and its thread (whatever still runs on it is abandoned)."""
        if self._closed:
            return
        super().close()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(JOIN_TIMEOUT_S)
        if not self._thread.is_alive():
            self._loop.close()


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None
