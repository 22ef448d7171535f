"""The drift statistics (effect sizes, not p-values) and their no-drift distributions.

- distributions over bins, buckets or categories: the Jensen-Shannon divergence
  (base 2, so in [0, 1]) or, for ordered bins, the Kolmogorov-Smirnov distance
  between the binned CDFs (the largest gap, in [0, 1]);
- ratios (a proportion, or words outside the vocabulary over words): the
  difference live minus reference, with the standard error of a ratio of
  totals, which treats the record, not the token, as the unit drawn.

A threshold is a quantile of the statistic when nothing drifted. For the
distribution statistics it comes from a parametric bootstrap: a reference of the
profile's size and a window of the live size are both drawn from the reference
shares (the reference is itself a sample, so its own noise is part of what a
no-drift window looks like), many times, and the statistic taken between them.
Draws are seeded by the signal and the sizes, so every process computes the
same threshold; and, being a pure function of its arguments, a threshold computed
once in a process is remembered (:data:`_REMEMBERED` of them): a version loaded
again, or a second version with the same profile, does not repeat the bootstrap.
"""

from __future__ import annotations

import hashlib
import math
import threading
import zlib
from collections import OrderedDict
from statistics import NormalDist

import numpy as np

from mlcycle.contracts.monitoring import RatioMoments

# Bootstrap draws: enough that the (1 - alpha) quantile rests on ~100 draws above it,
# within bounds that keep a threshold's computation well under a second (~5 ms per 1000
# draws of 20 bins; 1000-record windows under a 100k budget take ~10k draws).
MIN_DRAWS = 4_000
MAX_DRAWS = 100_000
TAIL_DRAWS = 100
_CHUNK = 20_000
# Bootstrapped quantiles kept per process, least recently used out first: a version's
# thresholds are a few dozen (signals x window sizes on the grid).
_REMEMBERED = 512
_quantiles: OrderedDict[tuple[object, ...], list[float]] = OrderedDict()
_quantiles_lock = threading.Lock()


def shares(counts: np.ndarray) -> np.ndarray:
    """Counts (a vector, or one per row) as shares summing to 1 (0 for an empty row)."""
    counts = np.asarray(counts, np.float64)
    total = counts.sum(axis=-1, keepdims=True)
    return np.divide(counts, total, out=np.zeros_like(counts), where=total > 0)


def js_divergence(p: np.ndarray, q: np.ndarray) -> np.ndarray | float:
    """Jensen-Shannon divergence (bits) between count vectors, row by row.

    As entropies: H(m) - (H(p) + H(q)) / 2 with m the mixture, which needs three
    logarithms per cell and no masking (this runs on 10^5 bootstrap rows).
    """
    p, q = shares(p), shares(q)
    mixed = _xlogx(0.5 * (p + q)).sum(axis=-1)
    value = 0.5 * (_xlogx(p).sum(axis=-1) + _xlogx(q).sum(axis=-1)) - mixed
    return np.maximum(value, 0.0) / np.log(2.0)


def _xlogx(x: np.ndarray) -> np.ndarray:
    """x log x, 0 at 0."""
    return x * np.log(np.maximum(x, 1e-300))


def ks_distance(p: np.ndarray, q: np.ndarray) -> np.ndarray | float:
    """The largest gap between the binned CDFs of count vectors, row by row."""
    gap = np.cumsum(shares(p), axis=-1) - np.cumsum(shares(q), axis=-1)
    return np.abs(gap).max(axis=-1)


STATISTICS = {"js": js_divergence, "ks": ks_distance}


def draws_for(alpha: float) -> int:
    """Bootstrap draws for a (1 - alpha) quantile."""
    return int(min(MAX_DRAWS, max(MIN_DRAWS, math.ceil(TAIL_DRAWS / max(alpha, 1e-12)))))


def null_quantiles(
    kind: str,
    reference: np.ndarray,
    reference_size: int,
    window_size: int,
    quantiles: list[float],
    *,
    draws: int,
    seed: tuple[int, ...],
) -> list[float]:
    """Quantiles of statistic ``kind`` between a reference of ``reference_size`` and a window
    of ``window_size``, both drawn from ``reference``'s shares (no drift)."""
    counts = np.ascontiguousarray(reference, dtype=np.float64)
    key = (
        kind,
        hashlib.blake2b(counts.tobytes(), digest_size=16).digest(),
        counts.shape,
        reference_size,
        window_size,
        tuple(quantiles),
        draws,
        tuple(seed),
    )
    with _quantiles_lock:
        if key in _quantiles:
            _quantiles.move_to_end(key)
            return list(_quantiles[key])
    found = _bootstrap(kind, counts, reference_size, window_size, quantiles, draws, seed)
    with _quantiles_lock:
        _quantiles[key] = found
        while len(_quantiles) > _REMEMBERED:
            _quantiles.popitem(last=False)
    return list(found)


def _bootstrap(
    kind: str,
    reference: np.ndarray,
    reference_size: int,
    window_size: int,
    quantiles: list[float],
    draws: int,
    seed: tuple[int, ...],
) -> list[float]:
    statistic = STATISTICS[kind]
    p = shares(reference)
    rng = np.random.default_rng(list(seed))
    values = np.empty(draws)
    for start in range(0, draws, _CHUNK):
        size = min(_CHUNK, draws - start)
        # Poisson counts are a multinomial of a Poisson total (within ~1/sqrt(n) of the
        # size): the same shares, drawn ~30x faster than numpy's row-by-row multinomial.
        ref = rng.poisson(max(reference_size, 1) * p, size=(size, len(p)))
        live = rng.poisson(max(window_size, 1) * p, size=(size, len(p)))
        values[start : start + size] = statistic(ref, live)
    return np.quantile(values, quantiles, method="higher").tolist()


def seed_of(signal: str, *sizes: int) -> tuple[int, ...]:
    """A bootstrap seed fixed by the signal's name and the sizes (same in every process)."""
    return (zlib.crc32(signal.encode("utf-8")), *sizes)


# -- ratios ------------------------------------------------------------------------------------


def ratio(m: RatioMoments) -> float | None:
    """Σx / Σy, or None without denominators."""
    return m.x / m.y if m.y > 0 else None


def ratio_unit_variance(m: RatioMoments) -> float:
    """n × Var(Σx / Σy): the variance of the ratio estimator for one record's worth.

    With r = Σx/Σy and ȳ = Σy/n, Var(r̂) ≈ Σ(x_i - r y_i)² / (n ȳ)² (the
    linearized ratio estimator; records are the units, so words clustered in a
    text count once, as their text). For a proportion (y_i = 1) it is r(1 - r).
    A floor of half a unit in the numerator keeps a reference ratio of 0 or 1
    from claiming no variance at all.
    """
    if m.n < 1 or m.y <= 0:
        return 0.0
    r = m.x / m.y
    residual = max(m.xx - 2.0 * r * m.xy + r * r * m.yy, 0.0)
    mean_y = m.y / m.n
    variance = residual / (m.n * mean_y * mean_y)
    q = min(0.5 / m.y, 0.5)
    return max(variance, q * (1.0 - q) / mean_y)


def ratio_threshold(reference: RatioMoments, window_records: int, quantile: float) -> float:
    """The two-sided ``quantile`` of |live ratio - reference ratio| when nothing drifted:
    both ratios' standard errors, the live one for a window of ``window_records`` records
    from the reference's distribution."""
    unit = ratio_unit_variance(reference)
    se = math.sqrt(unit / max(window_records, 1) + unit / max(reference.n, 1))
    z = NormalDist().inv_cdf(0.5 + 0.5 * quantile)
    return z * se
