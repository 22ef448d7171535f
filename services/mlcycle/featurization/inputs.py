"""Checking and chunking a transform's inputs: texts and their aligned metadata records."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from mlcycle.common.errors import InvalidInput

# Characters per internal chunk: enough texts that numpy's per-call overhead is
# spread thin, few enough that the working arrays stay at a few MB. Bigger
# arrays are not just out of cache: the allocator hands them back to the OS on
# free and every new one pays page faults again (measured 5-10x slower here).
CHUNK_CHARS = 256_000
MAX_CHUNK = 4096

Metadata = Sequence[Mapping[str, Any] | None]


def chunks(texts: Sequence[str], max_chars: int) -> tuple[list[tuple[int, int]], int]:
    """(start, end) of runs of texts of about CHUNK_CHARS characters; all the characters."""
    sizes = np.fromiter((min(len(t), max_chars) + 2 for t in texts), np.int64, len(texts))
    ends = np.searchsorted(np.cumsum(sizes), np.arange(CHUNK_CHARS, sizes.sum(), CHUNK_CHARS))
    bounds = [0]
    for end in [*ends.tolist(), len(texts)]:
        while end - bounds[-1] > MAX_CHUNK:
            bounds.append(bounds[-1] + MAX_CHUNK)
        if end > bounds[-1]:
            bounds.append(end)
    return list(zip(bounds[:-1], bounds[1:], strict=True)), int(sizes.sum())


def check_inputs(texts: Sequence[str], metadata: Metadata | None) -> None:
    if isinstance(texts, str):
        raise InvalidInput("texts must be a sequence of strings, not one string")
    bad = next((i for i, t in enumerate(texts) if not isinstance(t, str)), None)
    if bad is not None:
        raise InvalidInput(f"text {bad} is {type(texts[bad]).__name__}, not a string")
    if metadata is not None:
        if len(metadata) != len(texts):
            raise InvalidInput(f"{len(metadata)} metadata records for {len(texts)} texts")
        bad = next(
            (i for i, r in enumerate(metadata) if r is not None and not isinstance(r, Mapping)),
            None,
        )
        if bad is not None:
            raise InvalidInput(f"metadata record {bad} is not an object")
