"""A private event loop on a thread of its own, for blocking callers of the asyncio clients.

The score cache and the model-server client are written once, for asyncio. A
caller that blocks (the streaming scorer's consumer loop, the version tracker's
thread, readiness checks, lineage requests on worker threads) runs their
coroutines on a :class:`LoopThread`: :meth:`~LoopThread.run` hands a coroutine to
the loop and waits for its result. An asyncio client's connections belong to the
loop that made them, so a blocking wrapper creates its client on its loop and
only ever uses it there.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

# How long closing waits for the loop's thread to end.
JOIN_TIMEOUT_S = 5.0


class LoopThread:
    """An event loop running on a daemon thread; thread-safe, several callers at once."""

    def __init__(self, name: str = "mlcycle-loop") -> None:
        self._loop = asyncio.new_event_loop()
        self._closed = False
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_forever()

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run ``coroutine`` on the loop and block until it is done; its result or its error."""
        if threading.current_thread() is self._thread:
            coroutine.close()
            raise RuntimeError("LoopThread.run called from its own loop: await the coroutine")
        if self._closed:
            coroutine.close()
            raise RuntimeError("the event loop thread is closed")
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()

    def close(self) -> None:
        """Stop the loop and its thread (whatever still runs on it is abandoned)."""
        if self._closed:
            return
        self._closed = True
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(JOIN_TIMEOUT_S)
        if not self._thread.is_alive():
            self._loop.close()
