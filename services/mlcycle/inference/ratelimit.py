"""Per-caller rate limiting: one token bucket per API key (or client address without keys).

A bucket holds up to ``burst`` tokens and refills at ``rate`` tokens per
second; a request takes one, or is refused with how long until one is back.
Buckets idle long enough to be full again are equivalent to new ones, so they
are dropped when the table grows, which bounds memory however many addresses
call.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

# Past this many buckets, full ones are dropped.
MAX_BUCKETS = 10_000


class TokenBuckets:
    """Thread-safe token buckets keyed by caller."""

    def __init__(
        self,
        rate: float,
        burst: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_buckets: int = MAX_BUCKETS,
    ) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("a token bucket needs a positive rate and a burst of at least 1")
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._max = max_buckets
        # caller -> (tokens, time of that count)
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def take(self, caller: str) -> float:
        """Take a token for ``caller``: 0.0 when granted, else the seconds until one is back."""
        now = self._clock()
        with self._lock:
            tokens, then = self._buckets.get(caller, (self.burst, now))
            tokens = min(self.burst, tokens + (now - then) * self.rate)
            if tokens >= 1.0:
                self._buckets[caller] = (tokens - 1.0, now)
                if len(self._buckets) > self._max:
                    self._drop_full(now)
                return 0.0
            self._buckets[caller] = (tokens, now)
            return (1.0 - tokens) / self.rate

    def _drop_full(self, now: float) -> None:
        refill_s = self.burst / self.rate
        for caller, (_, then) in list(self._buckets.items()):
            if now - then >= refill_s:
                del self._buckets[caller]

    def __len__(self) -> int:
        return len(self._buckets)
