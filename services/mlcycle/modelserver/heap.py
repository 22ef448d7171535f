"""Short garbage-collector pauses with large models loaded: the loaded heap is frozen.

A loaded TensorFlow model is hundreds of thousands of long-lived Python
objects. CPython's full collection walks every one of them with the GIL held,
and under load it runs every few seconds: 100 to 300 ms in which no request
moves, which put p99 at 64 concurrent callers at six times p50. After every
change to what is served, :class:`HeapFreezer` collects once and freezes
what is alive (:func:`~mlcycle.common.heap.freeze_heap`), so later collections
skip the models' objects and take a few milliseconds. The objects of versions
unloaded since are unfrozen and collected first: nothing leaks, and the one
full pass per change is the pause there always was, only no longer repeated
every few seconds.

This is a policy of the ``mlcycle modelserver`` process (:mod:`~mlcycle.modelserver.cli`),
not of the in-process server, whose host owns its own heap.
"""

from __future__ import annotations

import logging

from mlcycle.common.heap import freeze_heap
from mlcycle.modelserver.manager import ModelManager

log = logging.getLogger(__name__)


class HeapFreezer:
    """Re-freezes the heap after each sync pass that changed the served versions."""

    def __init__(self, manager: ModelManager) -> None:
        self.manager = manager
        self._served: frozenset[object] | None = None

    def install(self) -> HeapFreezer:
        """Run after every sync pass of the manager (install before the server starts)."""
        self.manager.add_sync_listener(self.refresh)
        return self

    def refresh(self) -> None:
        """Collect and freeze once the served versions are not those frozen last."""
        served = self.manager.served_versions()
        if served == self._served:
            return
        self._served = served
        objects, seconds = freeze_heap()
        log.info(
            "heap frozen after a change of served versions",
            extra={"objects": objects, "seconds": round(seconds, 3)},
        )
