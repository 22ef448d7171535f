"""The labels benchmark's method names, tables and verdicts: what ``labels.py`` prints."""

from __future__ import annotations

from collections.abc import Mapping

from _label_peers import PEERS

GOLD_MIN_VOTES = 5
FOLDS_NOTE = "logistic regression, 5-fold out-of-fold over the items with a kept vote"
STRATEGIES = (
    "mean_threshold",
    "majority",
    "dawid_skene",
    "anchored_dawid_skene",
    "lfs_only",
    "lfs_crowd",
    "anchored_lfs_crowd",
)
# What a label run does with its default parameters (RunParams: DEFAULT_STRATEGY, every LF).
DEFAULT = "anchored_lfs_crowd"
# mlcycle's own strategies next to the peers, in the order of the tables.
METHODS = (*STRATEGIES, "anchored_lfs_crowd_clf", *PEERS)


def verdict(name: str, figures: Mapping) -> str:
    """One plain sentence: is Dawid-Skene at least as accurate as majority here?"""
    ds, mv = figures["accuracy"]["dawid_skene"], figures["accuracy"]["majority"]
    if ds >= mv:
        return f"{name}: Dawid-Skene is at least as accurate as majority ({ds:.4f} vs {mv:.4f})."
    return (
        f"{name}: Dawid-Skene is LESS accurate than majority here ({ds:.4f} vs {mv:.4f}); "
        f"with no vote hidden it agrees with the majority gold on "
        f"{figures['dawid_skene_all_votes_accuracy']:.4f} of the items."
    )


def print_dataset(name: str, figures: Mapping, note: str) -> None:
    print()
    print(
        f"== {name}: {figures['items']:,} items, {figures['votes']:,} votes, "
        f"{figures['annotators']:,} annotators"
    )
    threshold = figures["gold_min_votes"]
    if threshold < GOLD_MIN_VOTES:
        print(f"   no item has {GOLD_MIN_VOTES} votes: gold uses items with {threshold} votes")
    print(
        f"   gold: {figures['gold_items']:,} items with >= {threshold} votes "
        f"({figures['ties_dropped']:,} ties dropped), {figures['gold_positive_share']:.1%} "
        f"positive; {figures['kept_votes_per_gold_item']} votes kept per gold item on average; "
        f"labeling functions cover {figures['lf_coverage_on_gold']:.1%} of gold items"
    )
    covered = figures["lfs_only_accuracy_on_covered"]
    print(
        f"   lfs_only on the gold items the functions cover: "
        f"{'n/a' if covered is None else f'{covered:.4f}'}; dawid_skene with no vote "
        f"hidden agrees with gold on {figures['dawid_skene_all_votes_accuracy']:.4f}"
    )
    if note:
        print(f"   note: {note}")
    print(
        f"   featurize (default transform, once): {figures['seconds']['featurize']:.2f} s; "
        f"classifier ({FOLDS_NOTE}): {figures['seconds']['classifier']:.2f} s a seed"
    )
    print(f"   {'method':<24}{'accuracy':>10}{'ECE':>10}{'seconds':>10}")
    for method in METHODS:
        acc, ece = figures["accuracy"][method], figures["ece"][method]
        seconds = figures["seconds"][method]
        if acc is None:
            why = figures["peer_errors"][method]
            print(f"   {method:<24}{'null':>10}{'null':>10}   failed: {why}")
            continue
        tag = "  <- default" if method == DEFAULT else ""
        print(f"   {method:<24}{acc:>10.4f}{ece:>10.4f}{seconds:>10.3f}{tag}")
    print("   " + verdict(name, figures))
    print("   " + peer_verdict(name, figures))


def peer_verdict(name: str, figures: Mapping) -> str:
    """One plain sentence: is the default at least as accurate as the best peer here?"""
    ran = {p: figures["accuracy"][p] for p in PEERS if figures["accuracy"][p] is not None}
    ours = figures["accuracy"][DEFAULT]
    if not ran:
        return f"{name}: no peer ran."
    best = max(ran, key=lambda p: ran[p])
    gap = ours - ran[best]
    word = "at least as accurate as" if gap >= 0 else "LESS accurate than"
    seeds = figures["accuracy_per_seed"]
    paired = [a - b for a, b in zip(seeds[DEFAULT], seeds[best], strict=True)]
    level = sum(d >= 0 for d in paired)
    return (
        f"{name}: the default ({DEFAULT}, {ours:.4f}) is {word} the best peer "
        f"({best}, {ran[best]:.4f}): {gap:+.4f}; ahead or level on {level} of {len(paired)} "
        f"seeds (paired differences {min(paired):+.4f} to {max(paired):+.4f})."
    )


def print_summary(
    datasets: Mapping[str, Mapping], skipped: Mapping[str, str], n_seeds: int
) -> None:
    """The strategies' and the peers' tables over every dataset, then each verdict."""
    print()
    print(f"summary: median accuracy over {n_seeds} seeds (ECE in brackets)")
    print(f"{'dataset':<14}" + "".join(f"{s:>22}" for s in STRATEGIES))
    for name, figures in datasets.items():
        cells = [f"{figures['accuracy'][s]:.3f} ({figures['ece'][s]:.3f})" for s in STRATEGIES]
        print(f"{name:<14}" + "".join(f"{c:>22}" for c in cells))
    for name, reason in skipped.items():
        print(f"skipped {name}: {reason}")
    print()
    print(f"peers: median accuracy over {n_seeds} seeds (ECE in brackets; null: failed)")
    peer_columns = ("lfs_crowd", DEFAULT, "anchored_lfs_crowd_clf", *PEERS)
    print(f"{'dataset':<14}" + "".join(f"{s:>24}" for s in peer_columns))
    for name, figures in datasets.items():
        cells = [
            "null"
            if figures["accuracy"][s] is None
            else f"{figures['accuracy'][s]:.3f} ({figures['ece'][s]:.3f})"
            for s in peer_columns
        ]
        print(f"{name:<14}" + "".join(f"{c:>24}" for c in cells))
    for name, figures in datasets.items():
        print(verdict(name, figures))
    for name, figures in datasets.items():
        print(peer_verdict(name, figures))
