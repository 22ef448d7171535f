"""A model version's reference profile: its dev split as the model saw it, in a few kilobytes.

The trainer builds it at export from the dev rows (texts, metadata, the served
scores and labels) and writes it beside the SavedModel as ``profile.json``; the
monitor reads it back without TensorFlow and compares each window of live
traffic with it (:mod:`.detector`).

Numeric quantities (scores, lengths, numeric metadata) are binned at the dev
quantiles, so every bin holds a similar share of the reference: no bin is empty
on the reference side (a divergence never divides by nothing), and the bins are
finest where the data is dense. Ties (a score floor, texts of one length) merge
quantiles into one edge; the first and last bins are open-ended.

The words and n-grams are those the transform sees: the same pre-processing and
the same 64-bit term hashes, so a word "outside the vocabulary" here is exactly
one the model gets no feature for.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import ValidationError

from mlcycle.common.errors import InvalidInput
from mlcycle.common.files import write_atomically
from mlcycle.contracts.monitoring import (
    PROFILE_FILE,
    CalibrationBins,
    Categories,
    Histogram,
    NgramBuckets,
    RatioMoments,
    ReferenceProfile,
)
from mlcycle.featurization.config import PreprocessConfig
from mlcycle.featurization.hashing import to_buckets, words
from mlcycle.featurization.metadata import as_category, as_number
from mlcycle.featurization.preprocess import Cleaned, clean_batch
from mlcycle.featurization.transform import Transform
from mlcycle.featurization.words import batch_terms
from mlcycle.monitoring import statistics as stats

# Quantile bins per numeric quantity: ~5 % of the reference each. Enough to see a shift in
# any part of the distribution, few enough that a 200-record window puts ~10 in each.
QUANTILE_BINS = 20
NGRAM_BUCKETS = 64
NGRAM_EXAMPLES = 3
# Categories kept per categorical metadata field; the rest count as "other or missing".
MAX_CATEGORIES = 20

Records = Sequence[Mapping[str, Any] | None]


def quantile_edges(values: np.ndarray, bins: int = QUANTILE_BINS) -> list[float]:
    """Edges at the quantiles of ``values``, ties merged: at least two, increasing."""
    values = np.asarray(values, np.float64)
    values = values[np.isfinite(values)]
    if len(values) == 0:
        return [0.0, 1.0]
    edges = np.unique(np.quantile(values, np.linspace(0.0, 1.0, bins + 1)))
    if len(edges) < 2:
        # One value only: one bin, whose upper edge is just above it.
        edges = np.array([edges[0], np.nextafter(edges[0], np.inf)])
    return edges.tolist()


def bin_of(edges: Sequence[float] | np.ndarray, values: np.ndarray) -> np.ndarray:
    """Each value's bin: bin i is [edges[i], edges[i + 1]), the first and last open-ended."""
    inner = np.asarray(edges, np.float64)[1:-1]
    return np.searchsorted(inner, np.asarray(values, np.float64), side="right")


def histogram(values: np.ndarray, bins: int = QUANTILE_BINS) -> Histogram:
    """``values`` counted over bins at their own quantiles."""
    edges = quantile_edges(values, bins)
    counts = np.bincount(bin_of(edges, values), minlength=len(edges) - 1)
    return Histogram(edges=edges, counts=counts.astype(float).tolist())


def text_lengths(texts: Sequence[str]) -> np.ndarray:
    """Characters per text, as received (before any clean-up)."""
    return np.fromiter(map(len, texts), np.float64, len(texts))


def preprocess_config(transform: Transform | None) -> PreprocessConfig:
    """The clean-up the model's words went through (the default one without a transform)."""
    return transform.config.preprocess if transform is not None else PreprocessConfig()


def oov_counts(
    batch: Cleaned, transform: Transform | None, n_texts: int
) -> tuple[np.ndarray, np.ndarray] | None:
    """Per text: words outside the transform's vocabulary, and words; None without one."""
    if transform is None or transform.vocabulary is None:
        return None
    found = words(batch)
    known, _ = transform.vocabulary.lookup(found.keys)
    total = np.bincount(found.rows, minlength=n_texts).astype(np.float64)
    unknown = np.bincount(found.rows[~known], minlength=n_texts).astype(np.float64)
    return unknown, total


def moments(x: np.ndarray, y: np.ndarray) -> RatioMoments:
    """The ratio sums of per-record numerators ``x`` and denominators ``y``."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    return RatioMoments(
        n=len(x),
        x=float(x.sum()),
        y=float(y.sum()),
        xx=float((x * x).sum()),
        yy=float((y * y).sum()),
        xy=float((x * y).sum()),
    )


def metadata_fields(transform: Transform | None) -> tuple[list[str], list[str]]:
    """The numeric and categorical fields the transform's metadata encoder knows."""
    if transform is None:
        return [], []
    encoder = transform.metadata
    return [f.name for f in encoder.numeric], [f.name for f in encoder.categorical]


def numeric_column(metadata: Records | None, name: str, n: int) -> np.ndarray:
    """A numeric field's values, NaN where missing or not a number."""
    if metadata is None:
        return np.full(n, np.nan)
    values = ((r or {}).get(name) for r in metadata)
    return np.fromiter(
        (np.nan if (v := as_number(x)) is None else v for x in values), np.float64, n
    )


def category_column(metadata: Records | None, name: str, n: int) -> list[str | None]:
    """A categorical field's values as category names, None where missing."""
    if metadata is None:
        return [None] * n
    return [as_category((r or {}).get(name)) for r in metadata]


def category_slots(values: list[str | None], categories: Sequence[str]) -> np.ndarray:
    """Each value's slot: its category's index, else the last ("other or missing")."""
    lookup = {name: i for i, name in enumerate(categories)}
    other = len(categories)
    return np.fromiter((other if v is None else lookup.get(v, other) for v in values), np.int64)


def _categories(values: list[str | None]) -> Categories:
    counted = Counter(v for v in values if v is not None)
    top = sorted(counted.items(), key=lambda kv: (-kv[1], kv[0]))[:MAX_CATEGORIES]
    kept = [name for name, _ in top]
    slots = category_slots(values, kept)
    return Categories(
        categories=kept,
        counts=np.bincount(slots, minlength=len(kept) + 1).astype(float).tolist(),
    )


def _decode(codes: np.ndarray) -> str:
    if codes.dtype == np.uint8:
        return codes.tobytes().decode("ascii")
    return codes.astype(np.uint32).tobytes().decode("utf-32-le")


def text_buckets(
    rows: np.ndarray, bucket: np.ndarray, buckets: int
) -> tuple[np.ndarray, np.ndarray]:
    """The distinct (text, bucket) pairs of some n-grams, by text then bucket.

    A bucket counts once per text that has an n-gram in it, as the vocabulary
    counts document frequencies: a comment repeating a word (or a run of emoji,
    each a few words once transliterated) a hundred times would otherwise move
    a bucket's share on its own, and such texts give the shares a tail no
    sample of the reference predicts.
    """
    size = (int(rows.max()) + 1 if len(rows) else 0) * buckets
    seen = np.zeros(size, bool)  # a texts x buckets grid: no sort needed
    seen[rows.astype(np.int64) * buckets + bucket] = True
    pairs = np.flatnonzero(seen)
    return pairs // buckets, pairs % buckets


def _ngrams(batch: Cleaned, n_texts: int, buckets: int) -> NgramBuckets:
    """Texts per bucket of the word uni- and bigrams, the most frequent n-grams in each,
    and how much the shares vary between texts beyond independent draws (the dispersion)."""
    terms = batch_terms(batch, 2)
    bucket = to_buckets(terms.keys, buckets).astype(np.int64)
    rows, present = text_buckets(terms.rows, bucket, buckets)
    counts = np.bincount(present, minlength=buckets).astype(np.float64)
    examples: list[list[str]] = [[] for _ in range(buckets)]
    if len(terms.keys):
        uniq, first, freq = np.unique(terms.keys, return_index=True, return_counts=True)
        # Most frequent first, so a bucket's examples are what fills it.
        for i in np.lexsort((uniq, -freq)).tolist():
            k = int(bucket[first[i]])
            if len(examples[k]) < NGRAM_EXAMPLES:
                start, end = terms.starts[first[i]], terms.ends[first[i]]
                examples[k].append(_decode(batch.codes[start:end]))
    return NgramBuckets(
        buckets=buckets,
        counts=counts.tolist(),
        examples=examples,
        dispersion=dispersion(rows, present, n_texts, buckets),
    )


def dispersion(rows: np.ndarray, bucket: np.ndarray, n_texts: int, buckets: int) -> float:
    """How many times fewer independent n-grams a sample of texts is worth, for the bucket
    shares: the detector draws its no-drift samples with that many fewer n-grams.

    Below 1 when the texts vary less than independent draws would: a bucket counts
    at most once per text (:func:`text_buckets`), so a common bucket is nearly
    certain in every text rather than Poisson-distributed.

    N-grams cluster within texts (a topic brings its own words), so a window's
    bucket shares vary more than independent n-grams would make them.
    Two measures, the larger wins:

    - on average: with c_ik the count of text i in bucket k, L_i its total,
      p_k the shares and m the mean L_i, a share varies as
      Var_i(c_ik - p_k L_i) / (n m²) over samples of n texts, against
      p_k (1 - p_k) / (n m) for independent n-grams; summed with weights 1 / p_k
      (as a divergence weighs them), their ratio;
    - in the tail: topics move many buckets together, so the divergence's tail is
      heavier than its mean says. Resampling the dev texts themselves (a window, and
      a reference of the dev's size, as the detector draws them) gives the
      divergence's 90th and 99th percentiles; the factor that brings the
      independent draws' percentiles up to them.
    """
    if n_texts < 2 or len(rows) == 0:
        return 1.0
    per_text = np.bincount(rows.astype(np.int64) * buckets + bucket, minlength=n_texts * buckets)
    per_text = per_text.reshape(n_texts, buckets).astype(np.float64)
    lengths = per_text.sum(axis=1)
    p = per_text.sum(axis=0) / lengths.sum()
    present = p > 0
    if present.sum() < 2:
        return 1.0
    residual = per_text[:, present] - np.outer(lengths, p[present])
    clustered = (residual.var(axis=0, ddof=1) / p[present]).sum()
    independent = lengths.mean() * (present.sum() - 1)
    return float(max(MIN_DISPERSION, clustered / independent, _tail_dispersion(per_text)))


# Dispersion is measured, not assumed: this floor only guards against a degenerate dev split.
MIN_DISPERSION = 0.05
# Resamples of the dev texts behind the tail measure of the dispersion, and the window drawn.
TAIL_RESAMPLES = 2000
TAIL_WINDOW = 1000
_TAIL_QUANTILES = [0.9, 0.99]


def _tail_dispersion(per_text: np.ndarray) -> float:
    """The tail measure of :func:`dispersion` from ``per_text`` (texts x buckets counts)."""
    n_texts = len(per_text)
    window = min(TAIL_WINDOW, n_texts)
    totals = per_text.sum(axis=0)
    rng = np.random.default_rng(n_texts)
    p = totals / totals.sum()
    # The reference's own resampling noise is that of a window of its size: a second window's
    # deviation from the shares, shrunk by sqrt(window / dev rows) (a mix of the two, so no
    # share goes negative). Chunked so the gathered rows stay at a few MB.
    shrink = np.sqrt(window / n_texts)
    chunk = max(1, 50_000 // window)
    found = []
    for start in range(0, TAIL_RESAMPLES, chunk):
        size = min(chunk, TAIL_RESAMPLES - start)
        live = per_text[rng.integers(0, n_texts, (size, window))].sum(axis=1)
        other = stats.shares(per_text[rng.integers(0, n_texts, (size, window))].sum(axis=1))
        found.append(stats.js_divergence(p + shrink * (other - p), live))
    resampled = np.quantile(np.concatenate(found), _TAIL_QUANTILES)
    per_text_ngrams = totals.sum() / n_texts
    independent = stats.null_quantiles(
        "js",
        totals,
        int(totals.sum()),
        max(int(window * per_text_ngrams), 1),
        _TAIL_QUANTILES,
        draws=TAIL_RESAMPLES,
        seed=(n_texts, window),
    )
    ratios = [r / i for r, i in zip(resampled, independent, strict=True) if i > 0]
    return max(ratios, default=1.0)


def calibration(
    scores: np.ndarray, labels: np.ndarray, edges: list[float], score_prior: float | None
) -> CalibrationBins | None:
    """Per score bin: dev rows, and their positive share with dev's prior moved to the
    served scores' prior (positives weighted by prior / dev prior, negatives likewise)."""
    positive = np.asarray(labels) == 1
    dev_prior = float(positive.mean()) if len(positive) else 0.0
    if not 0.0 < dev_prior < 1.0:
        return None
    prior = dev_prior if score_prior is None else float(score_prior)
    weights = np.where(positive, prior / dev_prior, (1.0 - prior) / (1.0 - dev_prior))
    slots = bin_of(edges, scores)
    size = len(edges) - 1
    counts = np.bincount(slots, minlength=size)
    mass = np.bincount(slots, weights=weights, minlength=size)
    hits = np.bincount(slots, weights=weights * positive, minlength=size)
    rates = [float(h / m) if c else None for c, h, m in zip(counts, hits, mass, strict=True)]
    return CalibrationBins(edges=edges, counts=counts.tolist(), positive_rate=rates)


def build_profile(
    *,
    model: str,
    version: int,
    transform: Transform | None,
    texts: Sequence[str],
    metadata: Records | None,
    scores: np.ndarray | None,
    labels: np.ndarray | None,
    threshold: float | None,
    score_prior: float | None,
    ngram_buckets: int = NGRAM_BUCKETS,
) -> ReferenceProfile:
    """Profile ``model`` version ``version``'s dev rows.

    ``scores`` are the served positive-class scores (binary models; None for
    multi-class), ``labels`` dev's hard labels, ``threshold`` the served one and
    ``score_prior`` the class prior the scores are calibrated to.
    """
    n = len(texts)
    if metadata is not None and len(metadata) != n:
        raise InvalidInput("metadata must align with texts")
    if scores is not None and len(scores) != n:
        raise InvalidInput("scores must align with texts")
    batch = clean_batch(texts, preprocess_config(transform))
    score_hist = positive = calib = None
    if scores is not None and n:
        scores = np.asarray(scores, np.float64)
        score_hist = histogram(scores)
        if threshold is not None:
            flagged = (scores >= threshold).astype(np.float64)
            positive = moments(flagged, np.ones(n))
        if labels is not None and len(labels) == n:
            calib = calibration(scores, np.asarray(labels), score_hist.edges, score_prior)
    oov = oov_counts(batch, transform, n)
    numeric, categorical = metadata_fields(transform)
    fields: dict[str, Histogram | Categories] = {}
    for name in numeric:
        values = numeric_column(metadata, name, n)
        if np.isfinite(values).any():
            fields[name] = histogram(values[np.isfinite(values)])
    for name in categorical:
        fields[name] = _categories(category_column(metadata, name, n))
    return ReferenceProfile(
        model=model,
        model_version=version,
        transform=transform.version if transform is not None else None,
        created_at=datetime.now(UTC),
        rows=n,
        threshold=threshold,
        score_prior=score_prior,
        score=score_hist,
        positive=positive,
        length=histogram(text_lengths(texts)),
        oov=None if oov is None else moments(*oov),
        ngrams=_ngrams(batch, n, ngram_buckets),
        metadata=fields,
        calibration=calib,
    )


def write_profile(directory: Path, profile: ReferenceProfile) -> Path:
    """Write ``<directory>/profile.json`` atomically; returns its path."""
    path = Path(directory) / PROFILE_FILE
    write_atomically(path, profile.model_dump_json(indent=None).encode("utf-8"))
    return path


def read_profile(directory: Path) -> ReferenceProfile | None:
    """The profile beside a SavedModel, or None when there is none (models exported before
    profiles existed); :class:`InvalidInput` when it is there but malformed."""
    path = Path(directory) / PROFILE_FILE
    if not path.is_file():
        return None
    try:
        return ReferenceProfile.model_validate_json(path.read_bytes())
    except (ValidationError, ValueError) as exc:
        raise InvalidInput(f"malformed reference profile {path}: {exc}") from exc
