"""A window's sufficient statistics: named counters that add up across records and processes.

Every signal is judged from sums, never from the records themselves, so each
process (inference replicas, the stream scorer) adds its records' counters to
one shared aggregate (a Redis hash: one ``HINCRBYFLOAT`` per counter) and the
window is judged once, whoever closes it. Counter names:

- ``n``: records;
- ``score:<b>``: served scores per bin of the profile's score histogram (binary);
- ``positive:x``: records labelled positive (the proportion's ``y`` is ``n``);
- ``length:<b>``: texts per bin of the profile's length histogram;
- ``oov:n|x|y|xx|yy|xy``: per-record sums of words outside the vocabulary (x) and words (y);
- ``ngrams:<k>``: n-gram occurrences per hashed bucket;
- ``meta:<field>:<b>``: records per bin or category slot of a metadata field;
- ``cbpe:...``: the sums quality is estimated from before labels arrive.

Examples (a few record ids per bin or bucket) are kept beside the counters:
they are not additive, so the first few seen win.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np

from mlcycle.contracts.monitoring import RatioMoments

# Record ids kept per example key.
EXAMPLES_PER_KEY = 3
MOMENT_FIELDS = ("n", "x", "y", "xx", "yy", "xy")


@dataclass
class Tally:
    """Counters and example ids of some records; ``add`` merges another tally in."""

    counts: dict[str, float] = field(default_factory=dict)
    examples: dict[str, list[str]] = field(default_factory=dict)

    @property
    def n(self) -> int:
        """Records tallied."""
        return int(self.counts.get("n", 0))

    def __bool__(self) -> bool:
        return self.n > 0

    def bump(self, name: str, amount: float = 1.0) -> None:
        """Add ``amount`` to counter ``name``."""
        if amount:
            self.counts[name] = self.counts.get(name, 0.0) + float(amount)

    def bump_vector(self, prefix: str, values: np.ndarray) -> None:
        """Add ``values[i]`` to counter ``<prefix>:<i>`` for every non-zero entry."""
        for i in np.flatnonzero(values).tolist():
            self.bump(f"{prefix}:{i}", float(values[i]))

    def bump_moments(self, prefix: str, x: np.ndarray, y: np.ndarray) -> None:
        """Add per-record numerators ``x`` and denominators ``y`` to ``<prefix>:n|x|y|...``."""
        x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
        sums = (len(x), x.sum(), y.sum(), (x * x).sum(), (y * y).sum(), (x * y).sum())
        for name, value in zip(MOMENT_FIELDS, sums, strict=True):
            self.bump(f"{prefix}:{name}", float(value))

    def example(self, key: str, ids: Iterable[str]) -> None:
        """Remember up to :data:`EXAMPLES_PER_KEY` ids under ``key`` (the first ones win)."""
        kept = self.examples.setdefault(key, [])
        for record_id in ids:
            if len(kept) >= EXAMPLES_PER_KEY:
                break
            if record_id not in kept:
                kept.append(record_id)

    def add(self, other: Tally) -> None:
        """Merge ``other`` into this tally."""
        for name, value in other.counts.items():
            self.bump(name, value)
        for key, ids in other.examples.items():
            self.example(key, ids)

    def vector(self, prefix: str, size: int) -> np.ndarray:
        """Counters ``<prefix>:0`` to ``<prefix>:<size - 1>`` as an array (missing ones are 0)."""
        return np.array([self.counts.get(f"{prefix}:{i}", 0.0) for i in range(size)], np.float64)

    def moments(self, prefix: str) -> RatioMoments:
        """The ratio sums under ``prefix``."""
        values = {name: self.counts.get(f"{prefix}:{name}", 0.0) for name in MOMENT_FIELDS}
        return RatioMoments(**{**values, "n": int(values["n"])})

    @classmethod
    def from_counts(
        cls, counts: Mapping[str, float], examples: Mapping[str, list[str]] | None = None
    ) -> Tally:
        """A tally from stored counters (and examples), e.g. a Redis hash read back."""
        return cls(
            {str(k): float(v) for k, v in counts.items()},
            {str(k): list(v)[:EXAMPLES_PER_KEY] for k, v in (examples or {}).items()},
        )
