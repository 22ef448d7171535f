"""freeze_heap: later collections skip what was alive, and a second call releases what died."""

from __future__ import annotations

import gc
import weakref

import pytest

from mlcycle.common.heap import freeze_heap


class _Node:
    def __init__(self) -> None:
        self.me = self  # a cycle: only the collector frees it


@pytest.fixture(autouse=True)
def _unfrozen():
    yield
    gc.unfreeze()


def test_objects_alive_at_the_freeze_are_left_out_of_later_collections() -> None:
    node = _Node()
    objects, seconds = freeze_heap()
    # Frozen objects another thread of the session frees meanwhile leave the count.
    assert 0 < gc.get_freeze_count() <= objects
    assert seconds >= 0
    assert not any(o is node for o in gc.get_objects())  # frozen: no generation holds it
    gc.unfreeze()
    assert any(o is node for o in gc.get_objects())


def test_a_cycle_released_after_a_freeze_is_collected_by_the_next_one() -> None:
    node = _Node()
    alive = weakref.ref(node)
    freeze_heap()
    del node
    gc.collect()
    assert alive() is not None  # frozen, so a plain collection keeps it
    freeze_heap()
    assert alive() is None
