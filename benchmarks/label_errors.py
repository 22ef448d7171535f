"""Finding planted label errors on Davidson: the review queue's ranking against two peers.

What is measured:
- corpus: Davidson et al.'s hate/offensive tweets (../shared/data, read with the project's
  importer through ``_corpora``), as the binary ``toxicity`` task; items whose crowd vote
  ties are left out (as ``_corpora`` does).
- noise: for each noise rate (5 %, 10 %) and seed, that share of the items, drawn with the
  seeded RNG, has *every* crowd vote flipped: the crowd was consistently wrong about it,
  which no vote-counting can see. The label run is the default strategy
  (``anchored_dawid_skene``) over the crowd (no labeling functions, so the votes are the
  only evidence the label model has). The errors
  to find are the items whose label differs from the clean run's (the flipped ones).
- k = the noise rate's count of items (5 % or 10 % of the corpus), the number a reviewer
  would look at to fix them all. With k equal to the number of flips, precision at k and
  recall at k are the same number; recall at 2k (the table only) says how much further
  down the rest are.
- rankings, each a full order of the labeled items:
  ``mlcycle``: the review queue's order (``labeling.review_queue`` with the run's
  suspects, the label run's own code: cross-validated logistic regressions on the default
  transform's features, at most 20,000 items fitted on, flagged by cleanlab);
  ``uncertainty``: the queue without suspects (the label model's uncertainty only, the
  ranking before suspects were added); ``random``: a seeded shuffle.
- ``cleanlab``: cleanlab's own ``find_label_issues`` on the same out-of-sample
  probabilities, ranked by self-confidence (printed for reference, also as a set).
- medians over the seeds (``--seeds``, default 3); the finder's wall time is the run's own
  (featurize, five fits, cleanlab), on this machine.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import orjson
from _corpora import DATA, ENGLISH, TASK
from _corpora import available as available_corpora
from _corpora import load as load_corpus
from _harness import median

from mlcycle.common.settings import load_settings
from mlcycle.contracts.comments import StoredComment, Vote
from mlcycle.contracts.label_runs import DEFAULT_STRATEGY, RunParams
from mlcycle.contracts.repositories.votes import CastVote
from mlcycle.importers import get_importer
from mlcycle.labeler.label_issues import Suspects, find_in_run
from mlcycle.labeler.labeling import Corpus, compute, review_queue

NOISE = (0.05, 0.10)
RANKINGS = ("mlcycle", "uncertainty", "random")
PARAMS = RunParams(strategy=DEFAULT_STRATEGY, labeling_functions=[])


def davidson() -> tuple[Corpus, list[CastVote]]:
    """Davidson's decided items and their crowd votes on ``toxicity``."""
    items = load_corpus(["davidson"])
    keep = set(items.ids.tolist())
    fmt, files = ENGLISH["davidson"]
    votes = [
        CastVote(record.item_id, record.annotator_id, int(record.label))
        for record in get_importer(fmt).read([DATA / f for f in files])
        if isinstance(record, Vote) and record.task == TASK and record.item_id in keep
    ]
    corpus = Corpus.from_comments(
        StoredComment(id=item_id, text=text)
        for item_id, text in zip(items.ids.tolist(), items.texts, strict=True)
    )
    return corpus, votes


def flipped(votes: list[CastVote], items: set[str]) -> list[CastVote]:
    """``votes`` with every vote on ``items`` turned to the other class."""
    return [
        CastVote(v.item_id, v.annotator_id, 1 - int(v.label)) if v.item_id in items else v
        for v in votes
    ]


def scores(order: np.ndarray, errors: set[int], k: int) -> tuple[float, float, float]:
    """(precision at k, recall at k, recall at 2k) of a ranking of corpus indices."""
    top = set(order[:k].tolist())
    hits = len(top & errors)
    return hits / k, hits / len(errors), len(set(order[: 2 * k].tolist()) & errors) / len(errors)


def one_trial(
    corpus: Corpus, votes: list[CastVote], clean: np.ndarray, noise: float, seed: int
) -> dict[str, tuple[float, ...]]:
    rng = np.random.default_rng(seed)
    n = len(corpus)
    k = round(noise * n)
    flips = rng.choice(n, k, replace=False)
    settings = load_settings().labeler
    labeling = compute(
        corpus, flipped(votes, {corpus.item_ids[i] for i in flips}), PARAMS, settings
    )
    errors = set(np.flatnonzero(labeling.result.labels != clean).tolist())
    started = time.perf_counter()
    found = find_in_run("bench", labeling, corpus, None, max_stored=0)
    seconds = time.perf_counter() - started
    position = {item_id: i for i, item_id in enumerate(corpus.item_ids)}

    def queue_order(suspicion: np.ndarray | None) -> np.ndarray:
        queue = review_queue(labeling, corpus, n, suspicion)
        return np.array([position[entry.item_id] for entry in queue])

    orders = {
        "mlcycle": queue_order(found.suspicion),
        "uncertainty": queue_order(None),
        "random": rng.permutation(n),
    }
    result = {name: scores(order, errors, k) for name, order in orders.items()}
    given = labeling.result.labels
    result["cleanlab"] = cleanlab_ranked(found.checked, found.found, given, errors, k)
    result["trial"] = (float(len(errors)), float(k), float(found.summary.suspects), seconds)
    return result


def cleanlab_ranked(
    checked: np.ndarray | None,
    suspects: Suspects | None,
    given: np.ndarray,
    errors: set[int],
    k: int,
) -> tuple[float, ...]:
    """cleanlab's own find_label_issues on the run's out-of-sample probabilities:
    (precision at k, recall at k, flagged, the flagged set's precision, its recall)."""
    from cleanlab.filter import find_label_issues

    assert checked is not None and suspects is not None, "the finder did not run"
    ranked = find_label_issues(
        given[checked].astype(np.int64),
        suspects.probs,
        return_indices_ranked_by="self_confidence",
        n_jobs=1,
    )
    order = checked[ranked]
    precision, recall, _ = scores(order, errors, k)
    flagged = set(order.tolist())
    hits = len(flagged & errors)
    return precision, recall, float(len(flagged)), hits / max(len(flagged), 1), hits / len(errors)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    if "davidson" not in available_corpora():
        sys.exit(f"Davidson's corpus is not under {DATA}")
    corpus, votes = davidson()
    clean = compute(corpus, votes, PARAMS, load_settings().labeler).result.labels
    n = len(corpus)
    print(
        f"Davidson: {n} items, {len(votes)} crowd votes; {PARAMS.strategy} over the crowd; "
        f"seeds 0..{args.seeds - 1}; medians over seeds\n"
    )
    trials = {
        noise: [one_trial(corpus, votes, clean, noise, seed) for seed in range(args.seeds)]
        for noise in NOISE
    }

    def med(noise: float, name: str, index: int) -> float:
        return median([trial[name][index] for trial in trials[noise]])

    print(f"{'noise':>6} {'k':>6} {'errors':>7} {'suspects':>9} {'finder s':>9}")
    for noise in NOISE:
        print(
            f"{noise:>6.2f} {round(noise * n):>6} {med(noise, 'trial', 0):>7.0f} "
            f"{med(noise, 'trial', 2):>9.0f} {med(noise, 'trial', 3):>9.1f}"
        )
    print(f"\n{'ranking':<12} {'noise':>6} {'precision@k':>12} {'recall@k':>9} {'recall@2k':>10}")
    for name in (*RANKINGS, "cleanlab"):
        for noise in NOISE:
            print(
                f"{name:<12} {noise:>6.2f} {med(noise, name, 0):>12.3f} "
                f"{med(noise, name, 1):>9.3f} "
                + (f"{med(noise, name, 2):>10.3f}" if name != "cleanlab" else f"{'':>10}")
            )
    print(
        "\ncleanlab's flagged set (find_label_issues, prune_by_noise_rate, "
        "on the run's out-of-sample probabilities):"
    )
    print(f"{'noise':>6} {'flagged':>8} {'precision':>10} {'recall':>7}")
    for noise in NOISE:
        print(
            f"{noise:>6.2f} {med(noise, 'cleanlab', 2):>8.0f} {med(noise, 'cleanlab', 3):>10.3f} "
            f"{med(noise, 'cleanlab', 4):>7.3f}"
        )
    print(
        "\nk = the noise rate's count of items; precision at k = recall at k when the errors "
        "number k (a flip the label model undid is no error)."
    )
    line = {
        "benchmark": "label_errors",
        "rankings": {
            name: {
                f"{noise:.2f}": {
                    "precision_at_k": round(med(noise, name, 0), 4),
                    "recall": round(med(noise, name, 1), 4),
                }
                for noise in NOISE
            }
            for name in RANKINGS
        },
    }
    print(orjson.dumps(line).decode())


if __name__ == "__main__":
    main()
