"""Wait for a condition by asking again and again, up to a deadline: the one loop for it."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from mlcycle.common.errors import Unavailable

T = TypeVar("T")


class DeadlinePassed(Unavailable):
    """What :func:`poll_until` waited for did not happen in time."""


def poll_until(
    check: Callable[[], T | None],
    *,
    timeout: float,
    interval: float,
    what: str,
    ignore: tuple[type[BaseException], ...] = (),
) -> T:
    """Call ``check()`` every ``interval`` seconds until it returns something truthy; return it.

    ``what`` says what failed to happen, e.g. "the indexer did not catch up": after
    ``timeout`` seconds without success the wait ends with
    :class:`DeadlinePassed` (an Unavailable), "<what> within <timeout> s". An exception of a type in
    ``ignore`` counts as "not yet" (a service still starting refuses connections).
    ``check`` runs at least once, and once more at the deadline.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = check()
        except ignore:
            value = None
        if value:
            return value
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise DeadlinePassed(f"{what} within {timeout:.0f} s")
        time.sleep(min(interval, remaining))
