"""Label quality on real crowd-labeled corpora: each strategy's accuracy and calibration.

What is measured, per dataset in ../shared/data (read with the project's
importers; binary ``toxicity`` votes):
- gold: items with at least 5 crowd votes (a dataset whose items all have
  fewer uses its maximum votes per item instead, and says so); the gold label
  is the majority of *all* their votes. Items whose full vote is a tie are
  dropped from the gold set and counted.
- hiding: on each gold item keep 1 to 3 of its votes (uniform, at most one
  fewer than it has, so something is always hidden), chosen with a seeded
  RNG; every other item keeps all its votes.
- strategies, fit on all of the dataset's kept votes (EM allowed as many
  iterations as a label run allows it) and scored on the gold items only:
  ``mean_threshold``, ``majority``, ``dawid_skene``, ``anchored_dawid_skene``;
  ``lfs_only`` (the default strategy over the registered toxicity labeling
  functions' votes alone, on every item of the dataset); ``lfs_crowd``
  (``dawid_skene`` over those plus the kept crowd votes); and
  ``anchored_lfs_crowd`` (``anchored_dawid_skene`` over the same voters: what
  a label run does by default). Labeling functions see the text and the item
  metadata, less the fields that carry the dataset's own labels. An item with
  no vote at all gets the class prior and the label -1, which counts as
  wrong: nothing is left out of the score.
- figures: accuracy of the hard label and top-label ECE (10 bins) of the soft
  label against gold; medians over the seeds (``--seeds``). Two more for
  reading them: ``lfs_only`` accuracy on the gold items some function voted
  on, and ``dawid_skene`` accuracy with no vote hidden (where the model's
  latent class differs from the majority's, this is below 1).
The baseline is ``majority``, run in the same process on the same kept votes.

Peers (``_label_peers``), on the same kept votes of the same seeds: crowd-kit's
``DawidSkene``, ``GLAD``, ``MACE`` and ``Wawa``; Snorkel's ``LabelModel`` over
the voters of ``lfs_crowd``; cleanlab's CROWDLAB with a classifier's
out-of-fold probabilities (logistic regression on the default featurization,
fitted against the kept votes' majority). ``anchored_lfs_crowd_clf`` is
mlcycle's default with that same classifier as one more voter. mlcycle's
default (``"default"`` in the JSON) is ``anchored_lfs_crowd``: a label run's
defaults are ``anchored_dawid_skene`` over the crowd and every labeling
function of the task (decision 0021, which chose it on the first five
datasets; ``hatexplain`` was added after the choice as a check, failed it,
and led to grading labeling functions against people's votes alone).
Seconds are the median wall time of one fit on one seed's votes (the
classifier's cross-validation is timed apart, ``classifier``; the default
transform's fit and featurization once per dataset, ``featurize``).
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import orjson
from _harness import median
from _label_peers import Features, classifier_probs, run_peers, with_classifier_voter
from _labels_report import (
    DEFAULT,
    GOLD_MIN_VOTES,
    METHODS,
    STRATEGIES,
    print_dataset,
    print_summary,
)

from mlcycle.contracts.comments import Comment, Vote
from mlcycle.contracts.label_runs import DEFAULT_STRATEGY
from mlcycle.evaluation.calibration import expected_calibration_error
from mlcycle.importers import get_importer
from mlcycle.labeler.aggregate import aggregate
from mlcycle.labeler.labeling import MAX_EM_ITERATIONS
from mlcycle.labeler.lfs import apply_lfs, registered
from mlcycle.labeler.votes import ABSTAIN, VoteMatrix

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
MAX_KEPT = 3
# Metadata fields in which a source ships its own labels; labeling functions must not see them.
# (other_info holds, for HS-Brexit, the same annotators' votes on related tasks; HateXplain's
# rationales and targets are marked only by annotators who found the post hateful or offensive.)
LABEL_FIELDS = frozenset(
    {"hard_label", "soft_label", "class", "other_info", "rationales", "targets"}
)
# name -> (importer, folder, files in the folder or None for the whole folder, note)
DATASETS: dict[str, tuple[str, str, tuple[str, ...] | None, str]] = {
    "md_agreement": ("lewidi", "md_agreement", None, ""),
    "convabuse": ("lewidi", "convabuse", None, ""),
    "hs_brexit": ("lewidi", "hs_brexit", None, ""),
    "armis": ("lewidi", "armis", None, "Arabic text: the English labeling functions barely fire"),
    "davidson": (
        "davidson",
        "davidson_hate_offensive",
        None,
        "annotator ids are synthetic, one per vote, so Dawid-Skene cannot learn any "
        "worker's reliability, only the crowd's pooled confusion",
    ),
    "hatexplain": (
        "hatexplain",
        "hatexplain_valtest",
        ("hatexplain_validation.jsonl.gz", "hatexplain_test.jsonl.gz"),
        "added after decision 0021 chose the default on the five datasets above; it showed "
        "labeling functions vouching for each other, mended since, so it is unseen no more",
    ),
}


@dataclass
class Corpus:
    """One dataset's items (texts, label-free metadata) and its full crowd vote matrix."""

    votes: VoteMatrix
    texts: list[str]
    metadata: list[dict]


def load(importer_name: str, paths: list[Path]) -> tuple[Corpus, dict]:
    """Read ``paths`` with the named importer; toxicity votes only."""
    importer = get_importer(importer_name)
    item_ids, texts, metadata, triplets = [], [], [], []
    for record in importer.read(paths):
        if isinstance(record, Comment):
            item_ids.append(record.id)
            texts.append(record.text)
            metadata.append({k: v for k, v in record.metadata.items() if k not in LABEL_FIELDS})
        elif isinstance(record, Vote) and record.task == "toxicity":
            if isinstance(record.label, int) and record.label in (0, 1):
                triplets.append((record.item_id, record.annotator_id, record.label))
    votes = VoteMatrix.from_triplets(triplets, 2, item_ids=item_ids)
    if votes.n_items != len(item_ids):  # votes for items without a comment: keep them textless
        texts += [""] * (votes.n_items - len(item_ids))
        metadata += [{}] * (votes.n_items - len(item_ids))
    return Corpus(votes, texts, metadata), importer.stats.as_dict()


def lf_votes(corpus: Corpus, first_voter: int) -> tuple[np.ndarray, ...]:
    """(items, voters, labels, names) of the labeling functions' non-abstain votes."""
    application = apply_lfs(registered("toxicity"), corpus.texts, corpus.metadata)
    rows, cols = np.nonzero(application.votes != ABSTAIN)
    labels = application.votes[rows, cols].astype(np.int64)
    names = np.array([f"lf:{n}" for n in application.names], dtype=object)
    return rows, cols + first_voter, labels, names


def hide(votes: VoteMatrix, gold_items: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Per vote, whether it is kept: 1..3 random votes of each gold item, all of the others."""
    n_votes = votes.votes_per_item()
    keep_n = np.full(votes.n_items, np.iinfo(np.int32).max)
    cap = np.minimum(MAX_KEPT, n_votes[gold_items] - 1)
    keep_n[gold_items] = rng.integers(1, cap + 1)
    # Rank each vote within its item by a random key; keep the first keep_n of each item.
    order = np.lexsort((rng.random(votes.n_votes), votes.items))
    starts = np.r_[0, np.cumsum(n_votes)[:-1]]
    rank = np.empty(votes.n_votes, dtype=np.int64)
    rank[order] = np.arange(votes.n_votes) - starts[votes.items[order]]
    return rank < keep_n[votes.items]


def combined(crowd: VoteMatrix, lf: tuple[np.ndarray, ...]) -> VoteMatrix:
    """Crowd votes plus labeling-function votes (voters after the crowd's) in one matrix."""
    items, voters, labels, names = lf
    return VoteMatrix.from_arrays(
        np.r_[crowd.items, items],
        np.r_[crowd.voters, voters],
        np.r_[crowd.labels, labels],
        2,
        item_ids=crowd.item_ids,
        voter_ids=(*crowd.voter_ids, *names),
    )


def evaluate(corpus: Corpus, seeds: list[int]) -> dict:
    """The protocol of the module docstring on one corpus."""
    full = corpus.votes
    counts, n_votes = full.counts(), full.votes_per_item()
    threshold = min(GOLD_MIN_VOTES, int(n_votes.max()))
    many = n_votes >= threshold
    tie = many & (counts[:, 0] == counts[:, 1])
    gold_items = np.flatnonzero(many & ~tie)
    gold = counts[gold_items].argmax(axis=1)
    lf = lf_votes(corpus, full.n_voters)
    started = time.perf_counter()
    no_crowd = combined(full.select(np.zeros(full.n_votes, bool)), lf)
    lf_only = aggregate(no_crowd, DEFAULT_STRATEGY, max_iter=MAX_EM_ITERATIONS)
    lf_only_s = time.perf_counter() - started
    features = Features.of(corpus.texts)
    covered = lf_only.n_votes[gold_items] > 0
    lf_covered_accuracy = (
        round(float((lf_only.labels[gold_items][covered] == gold[covered]).mean()), 4)
        if covered.any()
        else None
    )
    # Dawid-Skene on every vote, nothing hidden: how far its latent class is from the gold.
    ds_labels = aggregate(full, "dawid_skene", max_iter=MAX_EM_ITERATIONS).labels
    ds_all = float((ds_labels[gold_items] == gold).mean())
    scores: dict[str, dict[str, list[float]]] = {"accuracy": {}, "ece": {}, "seconds": {}}
    scores["seconds"]["lfs_only"] = [lf_only_s]
    errors: dict[str, str] = {}
    kept_per_item = []
    for seed in seeds:
        kept = full.select(hide(full, gold_items, np.random.default_rng(seed)))
        kept_per_item.append(float(kept.votes_per_item()[gold_items].mean()))
        started = time.perf_counter()
        clf = classifier_probs(features, kept, seed)
        scores["seconds"].setdefault("classifier", []).append(time.perf_counter() - started)
        voted = np.flatnonzero(kept.votes_per_item() > 0)
        with_lfs = combined(kept, lf)
        ours = {s: (kept, s) for s in STRATEGIES[:4]}
        ours["lfs_crowd"] = (with_lfs, "dawid_skene")
        ours["anchored_lfs_crowd"] = (with_lfs, DEFAULT_STRATEGY)
        with_clf = with_classifier_voter(with_lfs, clf, voted)
        ours["anchored_lfs_crowd_clf"] = (with_clf, DEFAULT_STRATEGY)
        results = {}
        for name, (votes, strategy) in ours.items():
            started = time.perf_counter()
            result = aggregate(votes, strategy, max_iter=MAX_EM_ITERATIONS)
            scores["seconds"].setdefault(name, []).append(time.perf_counter() - started)
            results[name] = (result.probs, result.labels)
        results["lfs_only"] = (lf_only.probs, lf_only.labels)
        # A peer that failed on an earlier seed is not run again: null for the dataset.
        for name, peer in run_peers(kept, with_lfs, clf, seed, skip=set(errors)).items():
            if peer.error is not None:
                errors[name] = peer.error
                print(f"  {name} failed: {peer.error}", file=sys.stderr)
                continue
            scores["seconds"].setdefault(name, []).append(peer.seconds)
            results[name] = (peer.probs, peer.labels)
        for name, (probs, labels) in results.items():
            right = labels[gold_items] == gold
            ece = expected_calibration_error(probs[gold_items], gold)
            scores["accuracy"].setdefault(name, []).append(float(right.mean()))
            scores["ece"].setdefault(name, []).append(ece)
    for name in errors:  # a peer counts only if it ran on every seed
        for figure in scores.values():
            figure.pop(name, None)
    return {
        "items": full.n_items,
        "votes": full.n_votes,
        "annotators": full.n_voters,
        "gold_min_votes": threshold,
        "gold_items": int(len(gold_items)),
        "gold_positive_share": round(float(gold.mean()), 4),
        "ties_dropped": int(tie.sum()),
        "kept_votes_per_gold_item": round(median(kept_per_item), 3),
        "lf_coverage_on_gold": round(float(covered.mean()), 4),
        "lfs_only_accuracy_on_covered": lf_covered_accuracy,
        "dawid_skene_all_votes_accuracy": round(ds_all, 4),
        "accuracy": _medians(scores["accuracy"], 4),
        # Per seed, for paired reading: a median's lead can be one seed's.
        "accuracy_per_seed": {k: [round(a, 4) for a in v] for k, v in scores["accuracy"].items()},
        "ece": _medians(scores["ece"], 4),
        "seconds": {**_medians(scores["seconds"], 3), "featurize": round(features.seconds, 3)},
        "peer_errors": errors,
    }


def _medians(figures: Mapping[str, list[float]], digits: int) -> dict[str, float | None]:
    """Each method's median, in METHODS order; null for a method with no figure."""
    extra = [k for k in figures if k not in METHODS]
    return {
        k: (round(median(figures[k]), digits) if k in figures else None) for k in (*METHODS, *extra)
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5, help="hiding repeats (medians reported)")
    parser.add_argument("--data", type=Path, default=DATA, help="the shared data folder")
    args = parser.parse_args()
    if not args.data.is_dir():
        sys.exit(f"no data folder at {args.data.resolve()}: see ../shared/data/README.md")
    seeds = list(range(args.seeds))
    # The importers warn per unreadable row; here a whole unreadable file is reported once.
    logging.getLogger("mlcycle.importers").setLevel(logging.ERROR)

    datasets, skipped = {}, {}
    for name, (fmt, folder, files, note) in DATASETS.items():
        where = args.data / folder
        paths = [where / f for f in files] if files else [where]
        if not all(p.exists() for p in paths):
            skipped[name] = f"not found under {args.data}"
            continue
        corpus, stats = load(fmt, paths)
        if corpus.votes.n_votes == 0:
            skipped[name] = (
                f"the {fmt} importer yields no binary toxicity votes from it "
                f"(skipped rows: {stats['skipped_reasons']})"
            )
            continue
        if corpus.votes.votes_per_item().max() < 2:
            skipped[name] = "no item has 2 votes: nothing can be hidden and still leave one"
            continue
        print(f"{name}: evaluating ...", file=sys.stderr)
        datasets[name] = evaluate(corpus, seeds)
        if note:
            datasets[name]["note"] = note
        print_dataset(name, datasets[name], note)

    print_summary(datasets, skipped, len(seeds))
    result = {
        "benchmark": "labels",
        "seeds": seeds,
        "default": DEFAULT,
        "datasets": datasets,
        "skipped": skipped,
    }
    print(orjson.dumps(result).decode())


if __name__ == "__main__":
    main()
