"""Featurization speed and memory, next to scikit-learn's HashingVectorizer, on one core.

Everything runs in this one process, pinned to the first CPU it may use, with
numpy/BLAS thread pools set to one thread before numpy is imported.

What is measured:
- fit: seconds for ``fit(texts, metadata, FeatureConfig())`` (the default config:
  word vocabulary, char 2-4-grams in 2**18 buckets, inferred metadata) on
  160,000 synthetic comments of ~70 words (three ``synthetic_records`` texts
  joined, with the first one's metadata); median over the rounds.
- apply, synthetic: comments/s of ``Transform.apply`` over the same 160,000,
  in calls of 50,000 (the default rows per feature shard), each call's output
  released before the next; median over the rounds. Also, once after those
  rounds, the rate of a single call over all 160,000 (its ~0.9 GB of output
  built at once).
- apply, Davidson: comments/s over the 24,783 tweets of Davidson et al. (read
  with the project's importer, never copied), one call, with a transform
  fitted on them; median over the rounds.
- peak RSS: ``ru_maxrss`` once the 160,000 are fitted and featurized in one
  call, before anything else runs; it includes the interpreter, the libraries
  and the input texts (``rss_before_featurizing_mb`` is the resident size
  just before the first fit).
- baseline: scikit-learn's ``HashingVectorizer`` on the same texts, already
  pre-processed by our pipeline (so its time excludes the pre-processing that
  ours includes): char 2-4-grams (``analyzer="char"``, 2**18 features, no
  alternate sign, L2) plus words (the pre-processed tokens, 2**18 features); its
  rate is texts / (char time + word time), on a 20,000-text sample, median over
  the rounds. The ratio is ours / scikit-learn's, same texts, same process.
- gRPC p50: ``mlcycle.featurizer.grpc_api.measure_featurize_p50_ms`` with the
  synthetic transform (a loopback server in this process, single-comment
  Featurize calls); null when that module is not there.

A warm-up pass (the first fit and the single 160k call) runs before the timed
rounds. Context figure: ``first_touch_ms_per_mb``, the cost of writing 64 MB
of freshly allocated memory once. On some VMs it is ~20x what it is on bare
metal (the host backs guest pages lazily and takes freed ones back within
seconds); every figure that materializes a large output pays it, the single
160k call most (~0.9 GB of output).
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ[_var] = "1"
_CPU = min(os.sched_getaffinity(0))
os.sched_setaffinity(0, {_CPU})

import argparse  # noqa: E402  (the pinning above must precede numpy's import)
import gc  # noqa: E402
import resource  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
import orjson  # noqa: E402
import psutil  # noqa: E402
from _harness import median  # noqa: E402
from sklearn.feature_extraction.text import HashingVectorizer  # noqa: E402

from mlcycle.contracts.comments import Comment  # noqa: E402
from mlcycle.featurization.config import FeatureConfig  # noqa: E402
from mlcycle.featurization.preprocess import preprocess_batch  # noqa: E402
from mlcycle.featurization.transform import Transform, fit  # noqa: E402
from mlcycle.importers import get_importer  # noqa: E402
from mlcycle.importers.synthetic import synthetic_records  # noqa: E402

DAVIDSON = Path("../shared/data/davidson_hate_offensive/labeled_data.csv.gz")
SHARD_ROWS = 50_000
SKLEARN_SAMPLE = 20_000
TARGETS = {"apply_per_s_one_core": 20_000, "fit_seconds_160k": 20.0, "peak_rss_mb": 2048}


def first_touch_ms_per_mb(megabytes: int = 64) -> float:
    """Milliseconds per MB to write once to freshly allocated memory."""
    started = time.perf_counter()
    block = np.empty(megabytes << 18, np.float32)
    block[::1024] = 1.0  # one write per 4 KiB page
    elapsed = time.perf_counter() - started
    del block
    return 1000 * elapsed / megabytes


def synthetic(n: int) -> tuple[list[str], list[dict[str, Any]]]:
    """``n`` comments of ~70 words: three synthetic texts joined, the first one's metadata."""
    texts: list[str] = []
    metadata: list[dict[str, Any]] = []
    group: list[Comment] = []
    for record in synthetic_records(3 * n, votes_per_comment=0):
        if isinstance(record, Comment):
            group.append(record)
            if len(group) == 3:
                texts.append(" ".join(c.text for c in group))
                metadata.append(dict(group[0].metadata))
                group = []
    return texts, metadata


def davidson(path: Path) -> tuple[list[str], list[dict[str, Any]]] | None:
    if not path.is_file():
        return None
    comments = [r for r in get_importer("davidson").read([path]) if isinstance(r, Comment)]
    return [c.text for c in comments], [dict(c.metadata) for c in comments]


def timed(action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def apply_in_calls(transform: Transform, texts: list[str], metadata: list[dict]) -> None:
    for start in range(0, len(texts), SHARD_ROWS):
        end = start + SHARD_ROWS
        transform.apply(texts[start:end], metadata[start:end])


def sklearn_rate(texts: list[str], rounds: int) -> float:
    """Texts/s of HashingVectorizer char 2-4-grams + words on pre-processed ``texts``."""
    common = {"n_features": 2**18, "alternate_sign": False, "lowercase": False, "dtype": "float32"}
    char = HashingVectorizer(analyzer="char", ngram_range=(2, 4), **common)
    word = HashingVectorizer(analyzer="word", token_pattern=r"\S+", **common)
    seconds = [
        timed(lambda: char.transform(texts)) + timed(lambda: word.transform(texts))
        for _ in range(rounds)
    ]
    return len(texts) / median(seconds)


def grpc_p50_ms(transform: Transform) -> tuple[float | None, str]:
    try:
        from mlcycle.featurizer import grpc_api
    except ImportError as exc:
        return None, f"mlcycle.featurizer.grpc_api not importable ({exc})"
    measure = getattr(grpc_api, "measure_featurize_p50_ms", None)
    if measure is None:
        return None, "grpc_api has no measure_featurize_p50_ms yet"
    with tempfile.TemporaryDirectory(prefix="mlcycle-bench-") as root:
        transform.save(Path(root))
        return float(measure(Path(root), transform.version, n=500)), "loopback, 500 calls"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--comments", type=int, default=160_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--davidson", type=Path, default=DAVIDSON)
    args = parser.parse_args()
    rounds = max(1, args.rounds)

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    fresh_memory = first_touch_ms_per_mb()
    texts, metadata = synthetic(args.comments)
    gc.collect()
    data_rss_mb = psutil.Process().memory_info().rss / 2**20
    n = len(texts)
    log(f"cpu {_CPU}; {n:,} synthetic comments, {sum(map(len, texts)) / n:.0f} chars on average")

    # Warm-up, and the whole featurization for the memory figure.
    started = time.perf_counter()
    transform = fit(texts, metadata, FeatureConfig())
    fits = [time.perf_counter() - started]
    started = time.perf_counter()
    whole = transform.apply(texts, metadata)
    warm_up_rate = n / (time.perf_counter() - started)
    nnz_per_row = whole.indptr[-1] / n
    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    del whole
    gc.collect()
    log(f"warm-up: fit {fits[0]:.1f} s, one call {warm_up_rate:,.0f}/s")
    log(f"peak RSS {peak_rss_mb:.0f} MB, of which {data_rss_mb:.0f} MB before featurizing")

    for round_no in range(rounds - 1):
        fits.append(timed(lambda: fit(texts, metadata, FeatureConfig())))
        log(f"fit round {round_no + 2}: {fits[-1]:.2f} s")
    rates = []
    for round_no in range(rounds):
        rates.append(n / timed(lambda: apply_in_calls(transform, texts, metadata)))
        log(f"apply round {round_no + 1}: {rates[-1]:,.0f}/s")
    single_call_rate = n / timed(lambda: transform.apply(texts, metadata))
    log(f"apply, one call of {n:,}: {single_call_rate:,.0f}/s")

    tweets = davidson(args.davidson)
    davidson_rate = davidson_sklearn = None
    if tweets is None:
        log(f"Davidson data not found at {args.davidson}: skipped")
    else:
        tweet_transform = fit(*tweets)
        tweet_transform.apply(*tweets)
        davidson_rate = len(tweets[0]) / median(
            [timed(lambda: tweet_transform.apply(*tweets)) for _ in range(rounds)]
        )
        cleaned, _ = preprocess_batch(tweets[0], tweet_transform.config.preprocess)
        davidson_sklearn = sklearn_rate(cleaned, rounds)
        log(f"Davidson: {davidson_rate:,.0f}/s, HashingVectorizer {davidson_sklearn:,.0f}/s")

    sample, _ = preprocess_batch(texts[:SKLEARN_SAMPLE], transform.config.preprocess)
    baseline = sklearn_rate(sample, rounds)
    p50, grpc_note = grpc_p50_ms(transform)
    log(f"gRPC: {grpc_note}")

    apply_rate = median(rates)
    result = {
        "benchmark": "featurize",
        "comments": n,
        "rounds": rounds,
        "nnz_per_row": round(float(nnz_per_row), 1),
        "apply_per_s_one_core": round(apply_rate),
        "apply_per_s_one_call_160k": round(single_call_rate),
        "apply_per_s_davidson": None if davidson_rate is None else round(davidson_rate),
        "fit_seconds_160k": round(median(fits), 2),
        "peak_rss_mb": round(peak_rss_mb),
        "rss_before_featurizing_mb": round(data_rss_mb),
        "hashing_vectorizer_per_s": round(baseline),
        "hashing_vectorizer_per_s_davidson": None
        if davidson_sklearn is None
        else round(davidson_sklearn),
        "ratio_vs_hashing_vectorizer": round(apply_rate / baseline, 2),
        "ratio_vs_hashing_vectorizer_davidson": None
        if davidson_rate is None or davidson_sklearn is None
        else round(davidson_rate / davidson_sklearn, 2),
        "grpc_p50_ms": None if p50 is None else round(p50, 3),
        "first_touch_ms_per_mb": round(fresh_memory, 3),
        "targets": TARGETS,
    }

    def show(value: object, fmt: str = ",.0f") -> str:
        return "n/a" if value is None else format(value, fmt)

    rows = [
        ("fit, 160k synthetic (s)", show(result["fit_seconds_160k"], ".2f"), "<= 20"),
        ("apply, synthetic, 50k per call (/s)", show(apply_rate), ">= 20,000"),
        ("apply, synthetic, one 160k call (/s)", show(single_call_rate), ""),
        ("apply, Davidson tweets (/s)", show(davidson_rate), ">= 20,000"),
        ("HashingVectorizer, synthetic (/s)", show(baseline), "baseline"),
        ("HashingVectorizer, Davidson (/s)", show(davidson_sklearn), "baseline"),
        ("ratio ours / HashingVectorizer", show(result["ratio_vs_hashing_vectorizer"], ".2f"), ""),
        ("peak RSS, 160k featurized (MB)", show(peak_rss_mb), "< 2,048"),
        ("  of which before featurizing (MB)", show(data_rss_mb), ""),
        ("gRPC Featurize p50 (ms)", show(p50, ".3f"), ""),
        ("fresh memory, first write (ms/MB)", show(fresh_memory, ".2f"), "context"),
    ]
    print()
    print(f"{'measure (median of rounds, one core)':<40}{'value':>12}{'target':>12}")
    for name, value, target in rows:
        print(f"{name:<40}{value:>12}{target:>12}")
    print(orjson.dumps(result).decode())


if __name__ == "__main__":
    main()
