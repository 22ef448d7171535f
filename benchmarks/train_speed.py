"""Training speed and memory: an 8-trial search on Davidson, one trial on 160,000 comments.

Each part runs in its own child process (this file run again with ``--part``),
so that neither's memory shows in the other's peak; the parent prints the
tables. Peak RSS is the child's own ``resource.getrusage(RUSAGE_SELF).ru_maxrss``,
read right after the measured work and before its baseline runs; it includes
the interpreter, TensorFlow and the input data. TensorFlow uses both cores.

What is measured:
- search: Davidson et al.'s 24,783 tweets (../shared/data, read at run time
  with the project's importer), binary task (hate or offensive vs neither),
  the labeler's 80/10/10 hash split, exactly as in ``quality.py``: ``Search``
  with ``JobConfig(trials=8)`` defaults (default search space, balanced class
  weights, patience 2, TPE sampler and median pruner, seed 0), selecting on dev
  ROC-AUC, in a throw-away SQLite study, learning from the crowd's soft labels
  as ``quality.py``'s searched model does. The budget is the job default
  (1,800 s), so that it does not cut the search short. ``search_8_trials_s``
  is the wall time of ``Search.run`` plus the blend with the linear companion
  that a job runs next (``blend_with_linear``: three logistic regressions and
  the blend weight, all picked on dev): the featurizing of each variant on its
  first use (fit on the train texts, apply to every split), every trial
  (training, dev scoring each epoch, pruning, saving the best weights),
  picking the winner and blending it. The blend is also shown on its own.
  Not included: imports, reading the CSV, test scoring.
  The featurizing part is also shown on its own, and the child's peak RSS
  after each trial.
- scale: 160,000 synthetic comments of ~70 words (``mlcycle.importers.synthetic``:
  each comment is three generated texts joined, toxic when any of them is, with
  the first one's metadata less its label-like fields, as the featurize
  benchmark builds them), split by the generator's own train/dev/test column
  (60/20/20, as Wikipedia Talk Labels is). Featurized with the default variant
  (words+chars) fitted on train; then one ``fit`` of the default
  ``TrialParams`` with 3 epochs (dev ROC-AUC after each, early stopping as in a
  job). ``trial_160k_s`` is that ``fit`` call; rows/s counts train rows times
  epochs run. Featurizing is timed on its own and not included.
- baselines, in the same child after its peak is read: for the search,
  ``quality.py``'s scikit-learn TF-IDF + logistic regression fitted on the same
  split (C chosen on dev among 1, 4, 16, featurizing included); for the trial,
  scikit-learn's ``SGDClassifier`` (log loss, as many epochs as the trial ran)
  on the very same sparse features. Ratios are ours / baseline.
Targets: the search within 300 s, every peak under 4,096 MB.
"""

from __future__ import annotations

import argparse
import logging
import resource
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from rich.console import Console
from rich.table import Table

DAVIDSON = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
DAVIDSON = DAVIDSON / "davidson_hate_offensive" / "labeled_data.csv.gz"
COMMENTS = 160_000
TRIALS = 8
TRIAL_EPOCHS = 3
TARGETS = {"search_8_trials_s": 300.0, "peak_rss_mb": 4096.0}
# Fields of the synthetic metadata that carry the label or the split: never features.
LABEL_FIELDS = ("true_toxicity", "split")


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def peak_rss_mb() -> float:
    """This process's peak resident set size so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# -- part 1: the search ----------------------------------------------------------------------


def part_search(path: Path) -> dict[str, Any]:
    """The 8-trial Davidson search of ``quality.py``, timed, and its baseline."""
    import quality  # the same data, split, task and search as the quality benchmark

    from mlcycle.contracts.training import JobConfig, TrialParams
    from mlcycle.trainer.linear import blend_with_linear

    if not path.is_file():
        return {"skipped": f"Davidson data not found at {path.resolve()}"}
    logging.getLogger("mlcycle.importers").setLevel(logging.ERROR)
    started = time.perf_counter()
    corpus = quality.load_davidson(path)
    read_s = time.perf_counter() - started
    task = quality.binary_task(corpus)
    data_for = quality.VariantData(corpus, task)
    rss_before = peak_rss_mb()
    log(f"search: {len(corpus.ids):,} tweets read in {read_s:.1f} s; {TRIALS} trials ...")
    peaks: list[float] = []
    outcome, search_s = quality.run_search(
        task, data_for, TRIALS, 1800.0, "train-speed", lambda _: peaks.append(peak_rss_mb())
    )
    started = time.perf_counter()
    config = JobConfig()
    blended = blend_with_linear(
        outcome.best,
        data_for(outcome.best.params.features),
        metric=task.metric,
        soft_labels=config.soft_labels,
        class_weight=config.class_weight,
    )
    blend_s = time.perf_counter() - started
    seconds = search_s + blend_s
    peak = peak_rss_mb()
    log("search: baseline TF-IDF + logistic regression ...")
    baseline = quality.score_tfidf_lr(task, corpus)
    featurize_s = sum(data_for.seconds.values())
    states = [t["state"] for t in outcome.trials]
    return {
        "search_8_trials_s": round(seconds, 1),
        "featurize_s": round(featurize_s, 1),
        "featurize_s_per_variant": {k: round(v, 2) for k, v in data_for.seconds.items()},
        "trials_s": round(search_s - featurize_s, 1),
        "blend_s": round(blend_s, 1),
        "blend": blended.blend,
        "trials": {s: states.count(s) for s in sorted(set(states))},
        "trial_list": [
            {
                "number": t["number"],
                "state": t["state"],
                "features": t["params"].get("features"),
                "layers": TrialParams(**t["params"]).layer_sizes() if t["params"] else None,
                "dim": data_for(t["params"]["features"]).dim if t["params"] else None,
                "seconds": round(t["seconds"] or 0.0, 1),
                "peak_rss_mb": round(peak),
            }
            for t, peak in zip(outcome.trials, peaks, strict=False)
        ],
        "best_dev_roc_auc": round(blended.dev_metric, 4),
        "best_params": outcome.best.params.model_dump(),
        "peak_rss_mb": round(peak),
        "rss_before_search_mb": round(rss_before),
        "read_s": round(read_s, 1),
        "tfidf_lr_fit_s": round(baseline.seconds, 1),
        "tfidf_lr_test_roc_auc": round(float(baseline.evaluation.roc_auc or 0.0), 4),
        "ratio_vs_tfidf_lr": round(seconds / baseline.seconds, 1),
        "train_rows": len(corpus.rows("train")),
    }


# -- part 2: one trial at scale --------------------------------------------------------------


def synthetic(n: int) -> tuple[list[str], list[dict[str, Any]], np.ndarray, np.ndarray]:
    """``n`` comments of ~70 words: texts, metadata, toxic labels and splits."""
    from mlcycle.contracts.comments import Comment
    from mlcycle.importers.synthetic import synthetic_records

    texts: list[str] = []
    metadata: list[dict[str, Any]] = []
    labels: list[int] = []
    splits: list[str] = []
    group: list[Comment] = []
    for record in synthetic_records(3 * n, votes_per_comment=0):
        if not isinstance(record, Comment):
            continue
        group.append(record)
        if len(group) == 3:
            first = group[0].metadata
            texts.append(" ".join(c.text for c in group))
            metadata.append({k: v for k, v in first.items() if k not in LABEL_FIELDS})
            labels.append(max(int(c.metadata["true_toxicity"]) for c in group))
            splits.append(str(first["split"]))
            group = []
    return texts, metadata, np.array(labels, np.int64), np.array(splits)


def part_scale(n: int, epochs: int) -> dict[str, Any]:
    """One default trial on ``n`` synthetic comments, timed, and its SGDClassifier baseline."""
    from mlcycle.contracts.training import TrialParams
    from mlcycle.featurization.transform import fit as fit_transform
    from mlcycle.trainer.config import variant_config
    from mlcycle.trainer.data import SplitData, TrainingData
    from mlcycle.trainer.fit import fit

    started = time.perf_counter()
    texts, metadata, labels, splits = synthetic(n)
    generate_s = time.perf_counter() - started
    rows = {s: np.flatnonzero(splits == s) for s in ("train", "dev", "test")}
    log(
        f"scale: {n:,} comments generated in {generate_s:.1f} s "
        f"({', '.join(f'{s} {len(r):,}' for s, r in rows.items())}; "
        f"{labels.mean():.1%} toxic); featurizing ..."
    )

    started = time.perf_counter()
    train_texts = [texts[i] for i in rows["train"]]
    train_meta = [metadata[i] for i in rows["train"]]
    transform = fit_transform(train_texts, train_meta, variant_config("words+chars", None))
    del train_texts, train_meta
    splits_data = {
        name: SplitData.from_batch(
            transform.apply([texts[i] for i in r], [metadata[i] for i in r]), labels[r]
        )
        for name, r in rows.items()
    }
    data = TrainingData(
        **splits_data,
        n_classes=2,
        transform=transform.version,
        label_run="synthetic",
        task="binary",
    )
    data.check()
    featurize_s = time.perf_counter() - started
    rss_featurized = peak_rss_mb()
    nnz_per_row = data.train.indptr[-1] / len(data.train)
    log(
        f"scale: featurized in {featurize_s:.1f} s (dim {data.dim:,}, "
        f"{nnz_per_row:.0f} non-zeros per row); one trial of {epochs} epochs ..."
    )

    params = TrialParams(epochs=epochs)
    result = fit(params, data, metric="roc_auc", soft_labels=True, class_weight="balanced")
    peak = peak_rss_mb()
    train_rows = len(data.train)
    log(f"scale: trial {result.seconds:.1f} s ({result.epochs_run} epochs); baseline ...")
    sgd_s, sgd_auc = sgd_baseline(data, result.epochs_run)
    return {
        "trial_160k_s": round(result.seconds, 1),
        "trial_160k_peak_rss_mb": round(peak),
        "comments": n,
        "rows": {s: len(r) for s, r in rows.items()},
        "epochs_run": result.epochs_run,
        "stopped": result.stopped,
        "seconds_per_epoch": round(result.seconds / result.epochs_run, 1),
        "train_rows_per_s": round(train_rows * result.epochs_run / result.seconds),
        "dev_roc_auc": round(result.dev_metric, 4),
        "params": params.model_dump(),
        "dim": data.dim,
        "nnz_per_row": round(float(nnz_per_row), 1),
        "generate_s": round(generate_s, 1),
        "featurize_s": round(featurize_s, 1),
        "rss_after_featurizing_mb": round(rss_featurized),
        "sgd_fit_s": round(sgd_s, 2),
        "sgd_dev_roc_auc": round(sgd_auc, 4),
        "ratio_vs_sgd": round(result.seconds / sgd_s, 1),
    }


def sgd_baseline(data: Any, epochs: int) -> tuple[float, float]:
    """Seconds to fit SGDClassifier on the trial's train features, and its dev ROC-AUC."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import SGDClassifier
    from sklearn.metrics import roc_auc_score

    x_train, x_dev = data.train.csr(), data.dev.csr()
    model = SGDClassifier(loss="log_loss", max_iter=epochs, tol=None, random_state=0)
    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(x_train, data.train.labels)
    seconds = time.perf_counter() - started
    return seconds, float(roc_auc_score(data.dev.labels, model.decision_function(x_dev)))


# -- the parent ------------------------------------------------------------------------------


def run_part(part: str, extra: list[str]) -> dict[str, Any]:
    """Run this file with ``--part part`` in a fresh interpreter; its last stdout line."""
    started = time.perf_counter()
    command = [sys.executable, str(Path(__file__).resolve()), "--part", part, *extra]
    done = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=False)
    wall = time.perf_counter() - started
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        return {"error": f"the {part} child exited with {done.returncode}", "wall_s": wall}
    return orjson.loads(lines[-1]) | {"wall_s": round(wall, 1)}


def show(value: object, fmt: str) -> str:
    return "n/a" if value is None else format(value, fmt)


def trials_table(search: dict[str, Any]) -> Table:
    table = Table(title="search trials: the peak RSS of the search child after each")
    for name in ("#", "state", "features", "input dim", "layers", "s", "peak RSS MB"):
        table.add_column(name, justify="left" if name in ("state", "features") else "right")
    for t in search.get("trial_list", []):
        layers = "x".join(str(u) for u in t["layers"] or ())
        dim = show(t["dim"], ",")
        table.add_row(
            str(t["number"]),
            t["state"],
            str(t["features"]),
            dim,
            layers,
            f"{t['seconds']:.1f}",
            f"{t['peak_rss_mb']:,}",
        )
    return table


def report(search: dict[str, Any], scale: dict[str, Any], console: Console) -> dict[str, Any]:
    """Print the tables and checks; the JSON result."""
    table = Table(title="Training speed and memory (each part in its own process)")
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_column("target / baseline", justify="right")
    s, c = search, scale
    rows = [
        (
            "search: 8 trials on Davidson, wall (s)",
            show(s.get("search_8_trials_s"), ".1f"),
            "<= 300",
        ),
        ("  of which featurizing the variants (s)", show(s.get("featurize_s"), ".1f"), ""),
        ("  of which trials and selection (s)", show(s.get("trials_s"), ".1f"), ""),
        ("  of which the linear blend (s)", show(s.get("blend_s"), ".1f"), ""),
        ("  trials by state", str(s.get("trials", "n/a")), ""),
        ("  best dev ROC-AUC (blended)", show(s.get("best_dev_roc_auc"), ".4f"), ""),
        ("  TF-IDF + LR fit, same split (s)", show(s.get("tfidf_lr_fit_s"), ".1f"), "baseline"),
        ("  ratio search / TF-IDF + LR", show(s.get("ratio_vs_tfidf_lr"), ".1f"), ""),
        ("search: peak RSS (MB)", show(s.get("peak_rss_mb"), ",.0f"), "< 4,096"),
        (
            f"scale: one trial, {c.get('comments', COMMENTS):,} comments (s)",
            show(c.get("trial_160k_s"), ".1f"),
            "",
        ),
        (
            "  epochs run / seconds per epoch",
            f"{c.get('epochs_run', 'n/a')} / {show(c.get('seconds_per_epoch'), '.1f')}",
            "",
        ),
        ("  train rows x epochs per second", show(c.get("train_rows_per_s"), ",.0f"), ""),
        ("  dev ROC-AUC", show(c.get("dev_roc_auc"), ".4f"), ""),
        ("  featurizing, not in the trial (s)", show(c.get("featurize_s"), ".1f"), ""),
        (
            "  SGDClassifier, same features, same epochs (s)",
            show(c.get("sgd_fit_s"), ".2f"),
            "baseline",
        ),
        ("  ratio trial / SGDClassifier", show(c.get("ratio_vs_sgd"), ".1f"), ""),
        ("scale: peak RSS (MB)", show(c.get("trial_160k_peak_rss_mb"), ",.0f"), "< 4,096"),
        ("  of which after featurizing (MB)", show(c.get("rss_after_featurizing_mb"), ",.0f"), ""),
    ]
    for row in rows:
        table.add_row(*row)
    if search.get("trial_list"):
        console.print(trials_table(search))
    console.print(table)
    for name, part in (("search", s), ("scale", c)):
        for key in ("skipped", "error"):
            if key in part:
                console.print(f"{name}: {key}: {part[key]}")
    peaks = [p for p in (s.get("peak_rss_mb"), c.get("trial_160k_peak_rss_mb")) if p is not None]
    checks = {
        "search_within_300_s": None
        if s.get("search_8_trials_s") is None
        else s["search_8_trials_s"] <= TARGETS["search_8_trials_s"],
        "peak_rss_under_4096_mb": all(p < TARGETS["peak_rss_mb"] for p in peaks) if peaks else None,
    }
    for name, passed in checks.items():
        mark = "n/a" if passed is None else ("[green]yes[/]" if passed else "[red]NO[/]")
        console.print(f"{name}: {mark}")
    problems = {
        kind: {name: part[key] for name, part in (("search", s), ("scale", c)) if key in part}
        for kind, key in (("skipped", "skipped"), ("errors", "error"))
    }
    return {
        "benchmark": "train_speed",
        **{kind: parts for kind, parts in problems.items() if parts},
        "search_8_trials_s": s.get("search_8_trials_s"),
        "peak_rss_mb": s.get("peak_rss_mb"),
        "trial_160k_s": c.get("trial_160k_s"),
        "trial_160k_peak_rss_mb": c.get("trial_160k_peak_rss_mb"),
        "checks": checks,
        "targets": TARGETS,
        "search": s,
        "scale": c,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=("search", "scale"), help="run one part (a child)")
    parser.add_argument("--data", type=Path, default=DAVIDSON, help="labeled_data.csv(.gz)")
    parser.add_argument("--comments", type=int, default=COMMENTS)
    parser.add_argument("--epochs", type=int, default=TRIAL_EPOCHS)
    args = parser.parse_args()
    if args.part == "search":
        print(orjson.dumps(part_search(args.data)).decode())
        return
    if args.part == "scale":
        print(orjson.dumps(part_scale(args.comments, args.epochs)).decode())
        return
    started = time.perf_counter()
    search = run_part("search", ["--data", str(args.data)])
    scale = run_part("scale", ["--comments", str(args.comments), "--epochs", str(args.epochs)])
    result = report(search, scale, Console(width=120))
    result["seconds"] = round(time.perf_counter() - started, 1)
    Console(width=120).print(f"total wall time {result['seconds']:.0f} s")
    print(orjson.dumps(result).decode())


if __name__ == "__main__":
    main()
