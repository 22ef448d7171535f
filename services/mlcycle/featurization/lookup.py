"""A read-only hash table from 64-bit keys to indices, looked up a whole array at a time.

The word vocabulary is found by its terms' 64-bit hashes. ``np.searchsorted`` on
sorted keys costs ~90 ns a query at 50,000 terms (a dozen dependent, cache-
missing steps); an open-addressing table at most half full answers most
queries with one gather, so a batch's lookups are a few vectorized rounds.
A key's home slot is the top bits of the key times an odd constant (so even
keys that are not uniformly spread use the whole table); collisions probe
linearly.
"""

from __future__ import annotations

import numpy as np

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


class KeyTable:
    """Maps each of ``keys`` (distinct uint64) to its position in ``keys``."""

    def __init__(self, keys: np.ndarray) -> None:
        bits = max(4, int(2 * len(keys)).bit_length())  # at most half full
        self._shift = np.uint64(64 - bits)
        self._mask = (1 << bits) - 1
        self._keys = np.zeros(1 << bits, np.uint64)
        self._index = np.full(1 << bits, -1, np.int64)
        pending = np.arange(len(keys))
        slots = self._home(keys)
        # Insert in rounds: each free slot goes to its first claimant; the others
        # (and those who found their slot taken) move one slot on. Every slot a
        # key passes is occupied, which is what lookups rely on.
        while len(pending):
            free = self._index[slots] < 0
            claimed, first = np.unique(slots[free], return_index=True)
            winners = pending[free][first]
            self._keys[claimed] = keys[winners]
            self._index[claimed] = winners
            placed = np.zeros(len(pending), bool)
            placed[np.flatnonzero(free)[first]] = True
            pending, slots = pending[~placed], (slots[~placed] + 1) & self._mask
        self._keys.flags.writeable = self._index.flags.writeable = False

    def arrays(self) -> tuple[np.ndarray, np.ndarray, int, int]:
        """(slot keys, slot indices, home shift, slot mask): the table for compiled lookups."""
        return self._keys, self._index, int(self._shift), self._mask

    def _home(self, keys: np.ndarray) -> np.ndarray:
        return ((keys * _GOLDEN) >> self._shift).astype(np.int64)

    def find(self, keys: np.ndarray) -> np.ndarray:
        """The index of each of ``keys``, -1 for keys not in the table."""
        found = np.full(len(keys), -1, np.int64)
        which = np.arange(len(keys))
        slots = self._home(keys)
        while len(which):
            index = self._index[slots]
            hit = (index >= 0) & (self._keys[slots] == keys)
            found[which[hit]] = index[hit]
            go_on = (index >= 0) & ~hit
            which, keys, slots = which[go_on], keys[go_on], (slots[go_on] + 1) & self._mask
        return found
