"""Label speed: vote aggregation at Wikipedia Talk Labels size, and labeling functions.

What is measured, in one process on synthetic data of the wikidetox shape
(the real corpus is not available offline):
- aggregation: 160,000 items, 10 votes each from distinct workers out of
  4,000 (1,600,000 votes; 15% toxic). Workers have a fixed accuracy: 85%
  careful (uniform 0.7-0.98), 10% noisy (0.5-0.7), 5% adversarial (0.2-0.4).
  The votes are built once into a ``VoteMatrix`` (``from_arrays``, timed
  and reported, not in the ratios). Each strategy's ``aggregate`` call is
  timed, median over ``--rounds`` (``--ds-rounds`` for Dawid-Skene), next to
  the baseline: one ``numpy.bincount`` of the same votes into per-item class
  counts, the least any aggregation must do. Ratio = strategy / baseline.
  Accuracy against the hidden truth is printed for information.
- the peer: crowd-kit's ``DawidSkene`` (default settings: at most 100 EM
  iterations, tol 1e-5) on the same votes, given as the pandas frame of
  (task, worker, label) it takes; building the frame is timed apart
  (``crowdkit_frame``) and not counted. Median over ``--peer-rounds``. Two
  ratios, crowd-kit's seconds over mlcycle's: over the default strategy
  (``anchored_dawid_skene``, what a label run does; the target is 10x), and
  over ``dawid_skene``, EM run to its own stopping rule like crowd-kit's.
- labeling functions: every registered ``toxicity`` labeling function applied
  with ``apply_lfs`` to 160,000 synthetic comments
  (``mlcycle.importers.synthetic``), median over rounds, in comments/s, next
  (each timed text is three of them joined, ~70 words like a talk-page
  comment; the rate on single ~25-word comments is printed too), next
  to a baseline Python loop doing one trivial heuristic per comment
  (``"idiot" in text.lower()``). Then the label model (the default strategy over
  the ``lf:`` votes) is timed once and scored against the hidden truth.
- peak resident memory of the process (``ru_maxrss``).
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from collections.abc import Callable

import numpy as np
import orjson
from _harness import median

from mlcycle.contracts.label_runs import DEFAULT_STRATEGY
from mlcycle.importers.synthetic import synthetic_records
from mlcycle.labeler.aggregate import LEARNING_STRATEGIES, STRATEGIES, aggregate
from mlcycle.labeler.lfs import apply_lfs, registered
from mlcycle.labeler.votes import ABSTAIN, VoteMatrix

SEED = 2024


def synthetic_votes(
    n_items: int, per_item: int, n_workers: int, seed: int = SEED
) -> tuple[VoteMatrix, np.ndarray]:
    """A vote matrix of ``per_item`` distinct workers per item, and the hidden truth."""
    rng = np.random.default_rng(seed)
    truth = (rng.random(n_items) < 0.15).astype(np.int64)
    kind = rng.random(n_workers)
    accuracy = np.where(
        kind < 0.85,
        rng.uniform(0.7, 0.98, n_workers),
        np.where(kind < 0.95, rng.uniform(0.5, 0.7, n_workers), rng.uniform(0.2, 0.4, n_workers)),
    )
    # Distinct workers per item: a random start plus positive gaps summing to less than
    # the number of workers, modulo that number.
    gaps = rng.integers(1, n_workers // per_item, size=(n_items, per_item))
    start = rng.integers(0, n_workers, size=(n_items, 1))
    workers = ((start + np.cumsum(gaps, axis=1)) % n_workers).ravel()
    items = np.repeat(np.arange(n_items), per_item)
    right = rng.random(items.size) < accuracy[workers]
    labels = np.where(right, truth[items], 1 - truth[items])
    votes = VoteMatrix.from_arrays(
        items,
        workers,
        labels,
        2,
        item_ids=[str(1000 + i) for i in range(n_items)],
        voter_ids=[f"worker-{w}" for w in range(n_workers)],
    )
    return votes, truth


def timed(fn: Callable[[], object], rounds: int) -> tuple[float, object]:
    """The median wall time of ``rounds`` calls, and the last result."""
    times, result = [], None
    for _ in range(rounds):
        started = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - started)
    return median(times), result


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far (ru_maxrss is in KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def bench_aggregation(args: argparse.Namespace) -> dict[str, object]:
    started = time.perf_counter()
    votes, truth = synthetic_votes(args.items, args.votes_per_item, args.workers)
    build_s = time.perf_counter() - started
    print(
        f"{votes.n_votes:,} votes on {votes.n_items:,} items by {votes.n_voters:,} workers "
        f"(VoteMatrix.from_arrays {build_s:.2f} s)",
        file=sys.stderr,
    )
    flat = votes.items.astype(np.int64) * votes.n_classes + votes.labels
    size = votes.n_items * votes.n_classes
    baseline, _ = timed(lambda: np.bincount(flat, minlength=size), args.rounds)
    seconds: dict[str, float] = {"bincount_baseline": baseline}
    accuracy, iterations = {}, None
    for strategy in STRATEGIES:
        rounds = args.ds_rounds if strategy in LEARNING_STRATEGIES else args.rounds
        seconds[strategy], result = timed(lambda s=strategy: aggregate(votes, s), rounds)
        accuracy[strategy] = float((result.labels == truth).mean())
        if strategy == "dawid_skene":
            iterations = (result.iterations, result.converged)
        print(f"{strategy}: {seconds[strategy]:.3f} s", file=sys.stderr)
    peer = bench_crowdkit(votes, truth, args.peer_rounds)
    if peer:
        seconds["crowdkit_dawid_skene"] = peer["crowdkit_dawid_skene"]
        accuracy["crowdkit_dawid_skene"] = peer["crowdkit_accuracy"]

    print()
    print(f"{'aggregation (median)':<24}{'seconds':>10}{'x bincount':>12}{'accuracy':>10}")
    for name, value in seconds.items():
        ratio = value / baseline
        acc = f"{accuracy[name]:.4f}" if name in accuracy else ""
        print(f"{name:<24}{value:>10.4f}{ratio:>12.1f}{acc:>10}")
    print(f"dawid_skene: {iterations[0]} EM iterations, converged={iterations[1]}")
    if peer:
        print(
            f"crowd-kit DawidSkene {peer['crowdkit_dawid_skene']:.2f} s (its pandas frame built "
            f"in {peer['crowdkit_frame']:.2f} s, not counted; "
            f"{peer['crowdkit_iterations']:.0f} EM iterations)"
        )
        for name, target in (
            (DEFAULT_STRATEGY, " (the default; target >= 10x)"),
            ("dawid_skene", ""),
        ):
            ratio = peer["crowdkit_dawid_skene"] / seconds[name]
            print(f"  vs mlcycle {name} {seconds[name]:.2f} s: {ratio:.1f}x faster{target}")
    return {
        "n_votes": votes.n_votes,
        "n_items": votes.n_items,
        "n_workers": votes.n_voters,
        "build_s": round(build_s, 3),
        "seconds": {k: round(v, 4) for k, v in seconds.items()},
        "ratio_to_bincount": {
            k: round(v / baseline, 1) for k, v in seconds.items() if k in STRATEGIES
        },
        "accuracy": {k: round(v, 4) for k, v in accuracy.items()},
        "dawid_skene_iterations": iterations[0],
        "crowdkit_frame_s": round(peer["crowdkit_frame"], 3) if peer else None,
        "crowdkit_dawid_skene_iterations": peer["crowdkit_iterations"] if peer else None,
        "default": DEFAULT_STRATEGY,
        # crowd-kit's seconds over the default strategy's, and over full EM's.
        "crowdkit_speedup": round(seconds["crowdkit_dawid_skene"] / seconds[DEFAULT_STRATEGY], 1)
        if peer
        else None,
        "crowdkit_speedup_dawid_skene": round(
            seconds["crowdkit_dawid_skene"] / seconds["dawid_skene"], 1
        )
        if peer
        else None,
    }


def bench_crowdkit(votes: VoteMatrix, truth: np.ndarray, rounds: int) -> dict[str, float]:
    """crowd-kit's Dawid-Skene on ``votes``; empty (and says why) when it cannot run."""
    if rounds < 1:
        return {}
    try:
        import pandas as pd
        from crowdkit.aggregation import DawidSkene
    except ImportError as exc:
        print(f"crowd-kit not installed ({exc}): pip install -e '.[bench]'", file=sys.stderr)
        return {}
    started = time.perf_counter()
    frame = pd.DataFrame({"task": votes.items, "worker": votes.voters, "label": votes.labels})
    frame_s = time.perf_counter() - started
    print("crowdkit DawidSkene ...", file=sys.stderr)
    peer_s, model = timed(lambda: DawidSkene().fit(frame), rounds)
    predicted = np.full(votes.n_items, -1)
    predicted[model.labels_.index.to_numpy(np.int64)] = model.labels_.to_numpy(np.int64)
    return {
        "crowdkit_iterations": len(model.loss_history_),
        "crowdkit_dawid_skene": peer_s,
        "crowdkit_frame": frame_s,
        "crowdkit_accuracy": float((predicted == truth).mean()),
    }


def bench_lfs(args: argparse.Namespace) -> dict[str, object]:
    comments = list(synthetic_records(args.items, votes_per_comment=0, seed=SEED))
    texts = [c.text for c in comments]
    metadata = [c.metadata for c in comments]
    truth = np.array([c.metadata["true_toxicity"] for c in comments])
    lfs = registered("toxicity")
    lf_s, application = timed(lambda: apply_lfs(lfs, texts, metadata), args.rounds)
    # Synthetic comments are shorter (~25 words) than Wikipedia talk comments (~70): the
    # headline rate is measured on three joined together, the conservative figure.
    long_texts = [" ".join(texts[i : i + 3]) for i in range(len(texts))]
    long_s, _ = timed(lambda: apply_lfs(lfs, long_texts, metadata), args.rounds)
    base_s, _ = timed(lambda: [("idiot" in t.lower()) for t in long_texts], args.rounds)
    rate, base_rate = len(texts) / long_s, len(texts) / base_s
    short_rate = len(texts) / lf_s
    words = {
        "short": round(float(np.mean([len(t.split()) for t in texts])), 1),
        "long": round(float(np.mean([len(t.split()) for t in long_texts])), 1),
    }

    rows, cols = np.nonzero(application.votes != ABSTAIN)
    votes = VoteMatrix.from_arrays(
        rows,
        cols,
        application.votes[rows, cols],
        2,
        item_ids=[c.id for c in comments],
        voter_ids=[f"lf:{name}" for name in application.names],
    )
    model_s, model = timed(lambda: aggregate(votes, DEFAULT_STRATEGY), 1)
    covered = model.n_votes > 0
    print()
    print(f"{'labeling functions (median)':<34}{'comments/s':>12}")
    for size, per_s in (("long", rate), ("short", short_rate)):
        name = f"apply_lfs, {len(lfs)} LFs, ~{words[size]:.0f} words"
        print(f"{name:<34}{per_s:>12,.0f}")
    print(f"{'baseline: one trivial heuristic':<34}{base_rate:>12,.0f}")
    print(
        f"label model over lf: votes: {model_s:.2f} s, {model.iterations} iterations "
        f"(converged={model.converged}); "
        f"coverage {covered.mean():.3f}, accuracy on covered items "
        f"{(model.labels[covered] == truth[covered]).mean():.4f}, "
        f"on all items (uncovered count as wrong) {(model.labels == truth).mean():.4f}"
    )
    if application.errors:
        print(f"labeling-function errors: {sorted(application.errors)}")
    return {
        "lf_comments_per_s": round(rate),
        "lf_short_comments_per_s": round(short_rate),
        "lf_mean_words": words,
        "lf_baseline_comments_per_s": round(base_rate),
        "lf_ratio_to_baseline": round(rate / base_rate, 3),
        "n_lfs": len(lfs),
        "lf_coverage": round(float(covered.mean()), 4),
        "lf_label_model_s": round(model_s, 3),
        "lf_label_model_iterations": model.iterations,
        "lf_label_model_accuracy_covered": round(
            float((model.labels[covered] == truth[covered]).mean()), 4
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=160_000)
    parser.add_argument("--votes-per-item", type=int, default=10)
    parser.add_argument("--workers", type=int, default=4_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--ds-rounds", type=int, default=3)
    parser.add_argument(
        "--peer-rounds", type=int, default=3, help="crowd-kit DawidSkene rounds (0: skip it)"
    )
    args = parser.parse_args()

    result: dict[str, object] = {"benchmark": "label_speed"}
    result.update(bench_aggregation(args))
    result.update(bench_lfs(args))
    result["peak_rss_mb"] = round(peak_rss_mb(), 1)
    result["targets"] = {
        "majority_s": 10,
        "mean_threshold_s": 10,
        "dawid_skene_s": 60,
        "lf_comments_per_s": 20_000,
        "peak_rss_mb": 2048,
    }
    print(f"peak RSS {result['peak_rss_mb']} MB")
    print(orjson.dumps(result).decode())


if __name__ == "__main__":
    main()
