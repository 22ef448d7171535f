"""The rollout guard's score correlation: a retrain against a model trained on shuffled labels.

A rollout rolls a candidate back when the logit correlation of its scores with
production's, on the same comments, is under the policy's
``min_score_correlation``; agreement of the labels alone cannot catch a model
with no information at a low prevalence, where both versions label nearly
everything negative. This measures what the correlation is for the candidates
a rollout meets, so that the default sits between them.

Setup, per data set: models trained in this process the way a training job
trains (fit, blend with the linear companion, Platt scaling and the default
deployment prior baked in, the served threshold chosen): production (the default
hyper-parameters, seed 0); two retrains on the same labels (seed 1; the seed
preset, another network on another feature set); and two models trained on
shuffled train labels (the drill: the seed preset with the drill's fixed
permutation, as ``make demo`` trains it; and the default hyper-parameters with
another permutation). Each scores the held-out comments; each candidate's
scores are paired with production's and read as the guard reads them
(:class:`~mlcycle.rollouts.tally.EvidenceTally` ->
:class:`~mlcycle.rollouts.evidence.RolloutEvidence`): the logit correlation,
and the agreement at both versions' served thresholds.

Data sets: Davidson et al.'s tweets (../shared/data), hate vs the rest (a 6 %
prevalence), the test split of the labeler's hash split; and the demo's 300
generated comments (the e2e test's data: 5 votes each, majority labels),
seeds 0 to 4, the dev split (the demo's live traffic: 45 to 63 comments).

Figures: per data set, production's held-out ROC-AUC, each candidate's logit
correlation and agreement, and whether the default separates them (every retrain
over it, every shuffled-label model under it); last, how many data sets it
separates. Target: every data set whose production model ranks the held-out
comments better than chance. The guard measures candidates against production: a
production model that learned nothing that holds on new comments correlates with
no candidate, good or bad.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from typing import Any

import numpy as np
import orjson
from quality import DAVIDSON, Corpus, Task, VariantData, load_davidson, majority_soft_labels
from rich.console import Console
from rich.table import Table
from sklearn.metrics import roc_auc_score

from mlcycle.contracts.comments import Comment
from mlcycle.contracts.rollouts import MIN_SCORE_CORRELATION
from mlcycle.contracts.splits import split_of
from mlcycle.contracts.thresholds import ThresholdPolicy
from mlcycle.contracts.training import TrialParams
from mlcycle.importers.davidson import CLASS_TASK
from mlcycle.importers.synthetic import synthetic_records
from mlcycle.rollouts.evidence import RolloutEvidence
from mlcycle.rollouts.tally import EvidenceTally
from mlcycle.trainer.config import SEED
from mlcycle.trainer.data import TrainingData
from mlcycle.trainer.features import DRILL_SEED, shuffled_labels
from mlcycle.trainer.fit import fit, predict_probabilities
from mlcycle.trainer.linear import blend_with_linear
from mlcycle.trainer.thresholds import choose_threshold, served_threshold

GENERATED_SEEDS = (0, 1, 2, 3, 4)
GENERATED_COMMENTS = 300
# name: (hyper-parameters, fit seed, train-label permutation seed or None)
CANDIDATES: dict[str, tuple[TrialParams, int, int | None]] = {
    "retrain (seed 1)": (TrialParams(), 1, None),
    "retrain (seed preset)": (SEED, 0, None),
    "drill (seed preset, shuffled)": (SEED, 0, DRILL_SEED),
    "shuffled (default, other permutation)": (TrialParams(), 2, 7),
}


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@dataclasses.dataclass(frozen=True)
class Served:
    """A model's scores of the held-out comments and its served threshold."""

    scores: np.ndarray
    threshold: float


def serve(
    params: TrialParams, data: TrainingData, seed: int, shuffle: int | None, budget_s: float
) -> Served:
    """Train as a job does and score ``data.test`` (the held-out comments)."""
    if shuffle is not None:
        data = dataclasses.replace(data, train=shuffled_labels(data.train, seed=shuffle))
    result = fit(params, data, seed=seed, deadline=time.monotonic() + budget_s)
    result = blend_with_linear(result, data, metric="roc_auc")
    result = choose_threshold(result, data, ThresholdPolicy())
    scores = predict_probabilities(result.model, data.test)[:, 1]
    return Served(scores, served_threshold(result))


def as_the_guard_reads(production: Served, candidate: Served) -> dict[str, float | None]:
    """The pairs' logit correlation and agreement, read off the rollout's own tally."""
    tally = EvidenceTally()
    tally.pairs(production.scores, candidate.scores, production.threshold, candidate.threshold)
    evidence = RolloutEvidence(tally)
    return {"correlation": evidence.score_correlation, "agreement": evidence.agreement}


@dataclasses.dataclass(frozen=True)
class Measured:
    """One data set: production's held-out ROC-AUC and each candidate's figures against it."""

    production_roc_auc: float
    candidates: dict[str, dict[str, float | None]]

    @property
    def separated(self) -> bool:
        """Every retrain over the default, every shuffled-label model under it."""
        return all(
            ((got["correlation"] or 0.0) < MIN_SCORE_CORRELATION) == ("shuffled" in name)
            for name, got in self.candidates.items()
        )

    def figures(self) -> dict[str, Any]:
        return {"production_roc_auc": self.production_roc_auc, **self.candidates,
                "separated": self.separated}  # fmt: skip


def measure(data_for: VariantData, budget_s: float) -> Measured:
    """Each candidate against production on one data set's held-out comments."""
    data = data_for(TrialParams().features)
    production = serve(TrialParams(), data, 0, None, budget_s)
    auc = float(roc_auc_score(data.test.labels, production.scores))
    log(f"  production: held-out ROC-AUC {auc:.3f}")
    figures = {}
    for name, (params, seed, shuffle) in CANDIDATES.items():
        candidate = serve(params, data_for(params.features), seed, shuffle, budget_s)
        figures[name] = as_the_guard_reads(production, candidate)
        log(f"  {name}: {figures[name]}")
    return Measured(auc, figures)


def davidson_hate() -> VariantData:
    """Hate vs the rest (offensive or neither) on Davidson's tweets, test split held out."""
    corpus = load_davidson(DAVIDSON)
    labels = (corpus.classes == 0).astype(np.int64)
    hate = corpus.soft[CLASS_TASK][:, 0]
    soft = np.stack([1.0 - hate, hate], axis=1).astype(np.float32)
    return VariantData(corpus, Task("hate", labels, soft, ("rest", "hate"), "roc_auc"))


def generated(seed: int) -> VariantData:
    """The demo's generated comments, their majority labels, dev held out (as test)."""
    comments: list[Comment] = []
    votes: list[tuple[str, str, int]] = []
    for record in synthetic_records(GENERATED_COMMENTS, votes_per_comment=5, seed=seed):
        if isinstance(record, Comment):
            comments.append(record)
        else:
            votes.append((record.item_id, record.annotator_id, int(record.label)))
    ids = [c.id for c in comments]
    soft = majority_soft_labels(votes, ids, 2)
    labels = soft.argmax(axis=1).astype(np.int64)
    # The live traffic of the demo is the dev split: it is the split scored here.
    held_out = {"train": "train", "dev": "test", "test": "dev"}
    splits = np.array([held_out[split_of(c.id, c.metadata)] for c in comments])
    corpus = Corpus(ids, [c.text for c in comments], labels, splits, {})
    return VariantData(corpus, Task("generated", labels, soft, ("neither", "toxic"), "roc_auc"))


def table(title: str, measured: Measured) -> Table:
    out = Table(title=title, caption=f"production's held-out ROC-AUC "
                f"{measured.production_roc_auc:.3f}; separated at {MIN_SCORE_CORRELATION}: "
                f"{measured.separated}")  # fmt: skip
    for column in ("candidate", "logit correlation", "agreement"):
        out.add_column(column, justify="left" if column == "candidate" else "right")
    for name, got in measured.candidates.items():
        out.add_row(name, *(f"{got[k]:.3f}" if got[k] is not None else "-" for k in got))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, default=90.0, help="seconds per Davidson model")
    parser.add_argument("--seeds", type=int, default=len(GENERATED_SEEDS))
    args = parser.parse_args()
    console = Console()
    log("Davidson, hate vs the rest")
    measured = {"davidson_hate": measure(davidson_hate(), args.budget)}
    console.print(table("Davidson hate vs the rest: test split", measured["davidson_hate"]))
    for seed in GENERATED_SEEDS[: args.seeds]:
        log(f"the demo's generated comments, seed {seed}")
        measured[f"generated_{seed}"] = got = measure(generated(seed), 60.0)
        console.print(table(f"generated comments (seed {seed}): dev split", got))
    figures: dict[str, Any] = {name: m.figures() for name, m in measured.items()}
    figures["min_score_correlation"] = MIN_SCORE_CORRELATION
    figures["separated"] = sum(m.separated for m in measured.values())
    figures["data_sets"] = len(measured)
    print(orjson.dumps(figures).decode())


if __name__ == "__main__":
    main()
