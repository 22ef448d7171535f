"""Word-level explanations against HateXplain's human rationales: plausibility, faithfulness, cost.

What is measured, on HateXplain (``../shared/data/hatexplain_valtest``, read with the
project's importer; only its validation and test splits exist here):

- Model: trained on HateXplain's official *validation* split, as a job's trial
  trains (the default trial parameters, ``words+chars`` features, blended with its
  linear companion when that wins on dev, Platt-calibrated on dev and moved to the
  default threshold policy's deployment prior), on the binary ``toxicity`` task
  (hate speech or offensive by the majority of the three votes). Validation rather
  than Davidson's train split: it is the same platform mix, tokenisation and
  annotation guide as the test split (a Davidson-trained model reaches ROC-AUC 0.63
  on HateXplain, benchmarks/generalization.py), and no test post is seen. The
  validation posts are split by the labeler's hash of their ids: ``train`` to fit,
  the rest to select and calibrate. The model is exported as a job exports it and
  every method below explains, and every figure scores, that exported model.
- Classification, on every test post: ROC-AUC of the served score and macro F1 and
  accuracy of the label, binary toxic against normal. The paper's figures are
  three-class (hate, offensive, normal), so they are anchors, not a like-for-like
  comparison. Macro F1 is given twice: with the scores at the training data's own
  class prior (as the paper's models were judged) and as served (the default policy's
  deployment prior, a much lower toxic rate than HateXplain's 59 %).
- Plausibility and faithfulness (mlcycle.evaluation.rationales: ERASER's definitions
  as HateXplain's code computed them): on the test posts whose three-class majority
  is hate speech or offensive; ground truth the union of the annotators' rationales;
  hard rationale the top 5 tokens; soft rationale every token's score;
  comprehensiveness and sufficiency on the served score with the top 5 tokens
  removed or alone.
- Methods, on the same model (benchmarks/_explainers.py): ``mlcycle``, ``lime``
  (its default 5,000 samples; on a seeded sample of the posts, ``--lime-posts``,
  because it is slow; the other two methods are also scored on that sample, to
  compare like with like) and ``leave_one_out``. Seconds per explanation: median
  over the posts, one post at a time.
- Latency: single-comment ``POST /v1/predict`` cache misses at 8 clients through
  the model server and the inference service (own processes), with ``"explain":
  true`` and without, alternated, ``--repeats`` runs of ``--seconds``; p50 and p99,
  medians over the runs.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import _corpora
import numpy as np
import orjson
from _explainers import (
    Explained,
    ServedModel,
    explain_leave_one_out,
    explain_lime,
    explain_mlcycle,
)
from _harness import median, serving_settings
from generalization import SCORE_PRIOR, _export_sparse, served_map
from rich.console import Console
from rich.table import Table

from mlcycle.contracts.comments import Comment, Vote
from mlcycle.contracts.splits import hash_split
from mlcycle.contracts.training import TrialParams
from mlcycle.evaluation.classification import evaluate
from mlcycle.evaluation.priors import adjust_binary
from mlcycle.evaluation.rationales import faithfulness, plausibility, union_mask
from mlcycle.featurization.transform import Transform
from mlcycle.featurization.transform import fit as fit_transform
from mlcycle.importers import get_importer
from mlcycle.importers.hatexplain import CLASS_TASK
from mlcycle.trainer.config import variant_config
from mlcycle.trainer.data import SplitData, TrainingData
from mlcycle.trainer.export import serving_dir
from mlcycle.trainer.fit import fit
from mlcycle.trainer.linear import blend_with_linear
from mlcycle.trainer.models import PriorCorrected

FOLDER = "hatexplain_valtest"
FILES = ("hatexplain_validation.jsonl.gz", "hatexplain_test.jsonl.gz")
CLASSES = ("hatespeech", "offensive", "normal")  # the importer's hate_offensive codes 0, 1, 2
METHODS = ("mlcycle", "lime", "leave_one_out")
# The paper's three-class test figures (Mathew et al. 2021, Table 4): accuracy, macro F1, AUROC.
PAPER = {
    "BERT [Attn]": (0.690, 0.674, 0.843),
    "BERT-HateXplain [Attn]": (0.698, 0.687, 0.851),
    "BiRNN [LIME]": (0.595, 0.575, 0.767),
}
LATENCY_CLIENTS = 8
EXPLAIN_GOAL = 3.0  # the explain miss p50 at most this many times a plain miss's


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Post:
    """One HateXplain post: its tokens, its three-class votes and its annotators' rationales."""

    id: str
    split: str  # the official split
    tokens: list[str]
    votes: tuple[int, int, int]  # hate speech, offensive, normal
    rationales: list[list[int]]

    @property
    def majority(self) -> str | None:
        top = max(range(3), key=lambda c: self.votes[c])
        return CLASSES[top] if self.votes[top] * 2 > sum(self.votes) else None

    @property
    def toxic(self) -> int:
        return int((self.votes[0] + self.votes[1]) * 2 > sum(self.votes))

    @property
    def toxic_share(self) -> float:
        return (self.votes[0] + self.votes[1]) / max(1, sum(self.votes))

    @property
    def text(self) -> str:
        return " ".join(self.tokens)


def load_posts(data: Path) -> list[Post]:
    """Every post of both splits, with its three-class votes, through the importer."""
    comments: dict[str, Comment] = {}
    votes: dict[str, Counter[int]] = {}
    for record in get_importer("hatexplain").read([data / FOLDER / f for f in FILES]):
        if isinstance(record, Comment):
            comments[record.id] = record
        elif isinstance(record, Vote) and record.task == CLASS_TASK:
            votes.setdefault(record.item_id, Counter())[int(record.label)] += 1
    posts = []
    for item_id, comment in comments.items():
        counts = votes.get(item_id, Counter())
        posts.append(
            Post(
                id=item_id,
                split=str(comment.metadata.get("official_split", "")),
                tokens=list(comment.metadata["post_tokens"]),
                votes=(counts[0], counts[1], counts[2]),
                rationales=list(comment.metadata.get("rationales") or []),
            )
        )
    return posts


# -- the model ------------------------------------------------------------------------------------


@dataclass
class Trained:
    """The exported model and what its served labels need."""

    served: ServedModel
    threshold: float
    dev_prior: float
    train_s: float
    rows: dict[str, int]


def _split(transform: Transform, posts: list[Post]) -> SplitData:
    texts = [p.text for p in posts]
    share = np.array([p.toxic_share for p in posts], np.float32).reshape(-1, 1)
    return SplitData.from_batch(
        transform.apply(texts, [{} for _ in texts]),
        np.array([p.toxic for p in posts], np.int64),
        probabilities=np.hstack([1.0 - share, share]) if posts else None,
        item_ids=np.array([p.id for p in posts]),
    )


def train_and_export(posts: list[Post], variant: str, settings: Any) -> Trained:
    """A job's trial on the validation posts, exported as version 1 under ``settings``."""
    started = time.perf_counter()
    train = [p for p in posts if hash_split(p.id) == "train"]
    dev = [p for p in posts if hash_split(p.id) != "train"]
    config = variant_config(variant, None)  # type: ignore[arg-type]
    transform = fit_transform([p.text for p in train], [{} for _ in train], config)
    data = TrainingData(
        train=_split(transform, train),
        dev=_split(transform, dev),
        test=_split(transform, []),
        n_classes=2,
        transform=transform.version,
        label_run="explanations",
        task="toxicity",
        variant=variant,
    )
    params = TrialParams(features=variant)  # type: ignore[arg-type]
    result = blend_with_linear(fit(params, data), data, metric="roc_auc")
    scale, shift, threshold = served_map(result.dev_probabilities[:, 1], data.dev.labels)
    _export_sparse(settings, transform, PriorCorrected(result.model, scale, shift), threshold)
    folder = serving_dir(settings.trainer.models_dir, settings.trainer.model_name, 1)
    return Trained(
        served=ServedModel(folder, transform),
        threshold=threshold,
        dev_prior=float(data.dev.labels.mean()),
        train_s=time.perf_counter() - started,
        rows={"train": len(train), "dev": len(dev)},
    )


def classification(trained: Trained, test: list[Post]) -> dict[str, float | None]:
    """Binary toxic-vs-normal figures on every test post."""
    scores = trained.served.score([p.text for p in test])
    labels = np.array([p.toxic for p in test], np.int64)
    served = evaluate(np.stack([1 - scores, scores], 1), labels, threshold=trained.threshold)
    own = adjust_binary(scores, SCORE_PRIOR, trained.dev_prior)
    at_own = evaluate(np.stack([1 - own, own], 1), labels, threshold=trained.threshold)
    return {
        "posts": len(test),
        "accuracy": round(at_own.accuracy, 4),
        "macro_f1": round(at_own.macro_f1, 4),
        "auroc": None if served.roc_auc is None else round(served.roc_auc, 4),
        "macro_f1_served": round(served.macro_f1, 4),
        "accuracy_served": round(served.accuracy, 4),
    }


# -- explanations ---------------------------------------------------------------------------------


def judge(explained: Explained, posts: list[Post], served: ServedModel) -> dict[str, Any]:
    """Plausibility, faithfulness and cost of one method's explanations of ``posts``."""
    chosen = [posts[i] for i in explained.posts]
    truths = [union_mask(p.rationales, len(p.tokens)) for p in chosen]
    plausible = plausibility(truths, explained.scores)
    faithful = faithfulness([p.tokens for p in chosen], explained.scores, served.score)
    return {
        "posts": len(chosen),
        "plausibility": plausible.as_dict(),
        "faithfulness": faithful.as_dict(),
        "seconds_per_explanation": round(median(explained.seconds), 5) if chosen else None,
        **explained.notes,
    }


def restricted(explained: Explained, posts: set[int]) -> Explained:
    """The explanations of ``posts`` only."""
    out = Explained()
    for post, scores, seconds in zip(
        explained.posts, explained.scores, explained.seconds, strict=True
    ):
        if post in posts:
            out.add(post, scores, seconds)
    return out


def explain_all(
    trained: Trained, posts: list[Post], lime_posts: int, seed: int
) -> tuple[dict[str, Any], dict[str, Any], dict[str, str]]:
    """Every method on the rationale posts: (figures on all, figures on LIME's sample, skipped)."""
    tokens = [p.tokens for p in posts]
    everything = list(range(len(posts)))
    rng = np.random.default_rng(seed)
    sample = (
        everything
        if lime_posts <= 0 or lime_posts >= len(posts)
        else sorted(rng.choice(len(posts), lime_posts, replace=False).tolist())
    )
    served = trained.served
    explained: dict[str, Explained] = {}
    skipped: dict[str, str] = {}
    if not served.can_explain:
        skipped["mlcycle"] = "the exported SavedModel has no 'explain' signature"
    else:
        try:
            log(f"mlcycle: {len(everything)} posts")
            explained["mlcycle"] = explain_mlcycle(served, tokens, everything)
        except ImportError as exc:  # the word attribution library is not there
            skipped["mlcycle"] = f"cannot import the word attribution: {exc}"
    try:
        log(f"lime: {len(sample)} posts, its default 5,000 samples each")
        explained["lime"] = explain_lime(served, tokens, sample, seed)
    except ImportError as exc:
        skipped["lime"] = f"the lime package is missing ({exc}): pip install -e '.[bench]'"
    log(f"leave_one_out: {len(everything)} posts")
    explained["leave_one_out"] = explain_leave_one_out(served, tokens, everything)
    on_all = {name: judge(e, posts, served) for name, e in explained.items()}
    on_sample = {
        name: judge(restricted(e, set(sample)), posts, served) for name, e in explained.items()
    }
    return on_all, on_sample, skipped


# -- latency through the real stack ---------------------------------------------------------------


async def _latency_runs(
    url: str, headers: dict[str, str], texts: list[str], seconds: float, repeats: int
) -> dict[str, Any]:
    """Plain and explained misses, alternated; only plain ones, with a reason, without spans."""
    import itertools

    import aiohttp

    from mlcycle.local.loadtest import drive

    counter = itertools.count()
    failure: list[str] = []

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:

        async def call(explain: bool) -> None:
            n = next(counter)
            body: dict[str, Any] = {"instances": [{"text": f"{texts[n % len(texts)]} #{n}"}]}
            if explain:
                body["explain"] = True
            async with session.post(url, data=orjson.dumps(body), headers=headers) as response:
                payload = await response.read()
                if response.status != 200 or (explain and b'"spans"' not in payload):
                    answer = payload[:160].decode(errors="replace")
                    failure.append(f"HTTP {response.status}: {answer}")
                    raise RuntimeError(failure[-1])

        async def plain(_: int) -> None:
            await call(False)

        async def explained(_: int) -> None:
            await call(True)

        await drive(plain, LATENCY_CLIENTS, 1.0)  # warm connections and the model
        runs: dict[str, list[Any]] = {"miss": [], "explain_miss": []}
        try:
            await explained(0)
        except RuntimeError:
            reason = f"POST /v1/predict with explain gave no spans: {failure[-1]}"
            runs["miss"] = [await drive(plain, LATENCY_CLIENTS, seconds) for _ in range(repeats)]
            return {**_percentiles(runs), "reason": reason}
        await drive(explained, LATENCY_CLIENTS, 1.0)
        for _ in range(repeats):
            runs["miss"].append(await drive(plain, LATENCY_CLIENTS, seconds))
            runs["explain_miss"].append(await drive(explained, LATENCY_CLIENTS, seconds))
    return _percentiles(runs)


def _percentiles(runs: dict[str, list[Any]]) -> dict[str, float | None]:
    """p50 and p99 per kind of call, medians over its runs (None for a kind not run)."""
    out: dict[str, float | None] = {}
    for name, measured in runs.items():
        for q, label in ((0.5, "p50"), (0.99, "p99")):
            values = [r.percentile(q) for r in measured]
            out[f"{name}_{label}_ms"] = round(median(values), 3) if values else None
    return out


def explain_latency(settings: Any, texts: list[str], seconds: float, repeats: int) -> dict:
    """Explained and plain misses at 8 clients through the model server and inference."""
    import uvloop

    from mlcycle.clients import clients_for
    from mlcycle.clients.inference import PREDICT_PATH
    from mlcycle.local.pipeline import wait_until_served
    from mlcycle.local.stack import LocalStack

    log_dir = Path(settings.data_dir) / "logs"
    stack = LocalStack(settings, services=("modelserver", "inference-api"), log_dir=log_dir)
    try:
        resolved = stack.start()
        with clients_for(resolved) as clients:
            wait_until_served(clients, 1)
            url = clients.inference.url(PREDICT_PATH)
            headers = {"Content-Type": "application/json", **clients.inference.headers}
            return uvloop.run(_latency_runs(url, headers, texts, seconds, repeats))
    finally:
        stack.stop()


# -- the report -----------------------------------------------------------------------------------


def classification_table(figures: dict[str, Any]) -> Table:
    table = Table(title="classification on HateXplain's test split")
    for column in ("model", "classes", "accuracy", "macro F1", "AUROC"):
        table.add_column(column, justify="left" if column in ("model", "classes") else "right")
    table.add_row(
        "mlcycle (trained on validation)",
        "2: toxic / normal",
        f"{figures['accuracy']:.3f}",
        f"{figures['macro_f1']:.3f} (served: {figures['macro_f1_served']:.3f})",
        f"{figures['auroc']:.3f}",
    )
    for name, (accuracy, macro_f1, auroc) in PAPER.items():
        table.add_row(f"paper: {name}", "3", f"{accuracy:.3f}", f"{macro_f1:.3f}", f"{auroc:.3f}")
    return table


def methods_table(title: str, figures: dict[str, Any]) -> Table:
    table = Table(title=title)
    columns = ("method", "posts", "token F1", "IOU F1", "AUPRC", "compr.", "suff.", "s/expl.")
    for column in columns:
        table.add_column(column, justify="left" if column == "method" else "right")
    for name, f in figures.items():
        p, q = f["plausibility"], f["faithfulness"]
        seconds = f["seconds_per_explanation"]
        table.add_row(
            name,
            str(f["posts"]),
            f"{p['token_f1']:.3f}",
            f"{p['iou_f1']:.3f}",
            f"{p['auprc']:.3f}",
            f"{q['comprehensiveness']:.3f}",
            f"{q['sufficiency']:.3f}",
            "-" if seconds is None else f"{seconds:.4f}",
        )
    return table


def goal_lines(on_sample: dict[str, Any], latency: dict[str, Any]) -> list[str]:
    """The issue's goals, said plainly, on the posts every method explained."""
    lines = []
    mine, lime = on_sample.get("mlcycle"), on_sample.get("lime")
    if mine and lime:
        for group, metric in (
            ("plausibility", "auprc"),
            ("plausibility", "token_f1"),
            ("faithfulness", "comprehensiveness"),
        ):
            a, b = mine[group][metric], lime[group][metric]
            verdict = "better than" if a > b else "NOT better than"
            lines.append(f"mlcycle {metric} {a:.3f} is {verdict} LIME's {b:.3f}")
        ratio = mine["seconds_per_explanation"] / lime["seconds_per_explanation"]
        lines.append(f"mlcycle takes {ratio:.2%} of LIME's time per explanation")
    else:
        lines.append("mlcycle and LIME were not both run: no comparison")
    if latency.get("explain_miss_p50_ms") and latency.get("miss_p50_ms"):
        ratio = latency["explain_miss_p50_ms"] / latency["miss_p50_ms"]
        met = "met" if ratio <= EXPLAIN_GOAL else "MISSED"
        lines.append(
            f"explained miss p50 {latency['explain_miss_p50_ms']:.2f} ms is {ratio:.2f}x a plain "
            f"miss's {latency['miss_p50_ms']:.2f} ms (goal <= {EXPLAIN_GOAL:.0f}x: {met})"
        )
    else:
        plain = latency.get("miss_p50_ms")
        known = f"plain miss p50 {plain:.2f} ms; " if plain else ""
        lines.append(f"explained latency not measured: {known}{latency.get('reason')}")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=_corpora.DATA)
    parser.add_argument("--features", default="words+chars", help="the trial's feature variant")
    parser.add_argument("--posts", type=int, default=0, help="rationale posts to explain (0: all)")
    parser.add_argument("--lime-posts", type=int, default=100, help="LIME's sample (0: all)")
    parser.add_argument("--seconds", type=float, default=4.0, help="per latency run")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-latency", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--quick", action="store_true", help="200 posts, LIME on 20, one 2 s latency run"
    )
    args = parser.parse_args()
    if args.quick:
        args.posts, args.lime_posts, args.seconds, args.repeats = 200, 20, 2.0, 1
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("mlcycle.importers").setLevel(logging.ERROR)
    if not all((args.data / FOLDER / f).is_file() for f in FILES):
        log(f"no HateXplain under {args.data / FOLDER}: see ../shared/data/README.md")
        return 2
    started = time.perf_counter()
    posts = load_posts(args.data)
    validation = [p for p in posts if p.split == "validation"]
    test = [p for p in posts if p.split == "test"]
    rationale_posts = [p for p in test if p.majority in ("hatespeech", "offensive")]
    if 0 < args.posts < len(rationale_posts):
        rng = np.random.default_rng(args.seed)
        keep = sorted(rng.choice(len(rationale_posts), args.posts, replace=False).tolist())
        rationale_posts = [rationale_posts[i] for i in keep]
    log(f"{len(validation):,} validation posts, {len(test):,} test posts")

    with tempfile.TemporaryDirectory(prefix="mlcycle-bench-explanations-") as tmp:
        settings = serving_settings(Path(tmp))
        trained = train_and_export(validation, args.features, settings)
        log(f"trained and exported in {trained.train_s:.0f} s ({trained.rows})")
        classified = classification(trained, test)
        on_all, on_sample, skipped = explain_all(
            trained, rationale_posts, args.lime_posts, args.seed
        )
        texts = [p.text for p in test]
        if args.skip_latency:
            latency: dict[str, Any] = {"reason": "--skip-latency"}
        else:
            latency = explain_latency(settings, texts, args.seconds, args.repeats)

    console = Console(width=120)
    console.print(classification_table(classified))
    console.print(
        methods_table(
            f"explanations of the served score, {len(rationale_posts):,} hate/offensive test "
            "posts (LIME on its sample)",
            on_all,
        )
    )
    lime_n = on_all.get("lime", {}).get("posts", 0)
    console.print(methods_table(f"the same, on LIME's {lime_n} posts only", on_sample))
    for name, reason in skipped.items():
        console.print(f"skipped {name}: {reason}")
    if "mlcycle" in on_all:
        notes = on_all["mlcycle"]
        console.print(
            f"mlcycle: |sum of attributions - (score - baseline)| median "
            f"{notes['completeness_gap_median']:.2e}; |unassigned| median "
            f"{notes['unassigned_abs_median']:.2e}"
        )
    for line in goal_lines(on_sample, latency):
        console.print(line)
    console.print(
        f"model: {args.features}, trained on HateXplain validation ({trained.rows}); "
        f"whole run {time.perf_counter() - started:.0f} s"
    )
    result = {
        "benchmark": "explanations",
        "trained_on": "hatexplain validation",
        "classification": classified,
        "plausibility": {m: f["plausibility"] for m, f in on_all.items()},
        "faithfulness": {m: f["faithfulness"] for m, f in on_all.items()},
        "seconds_per_explanation": {m: f["seconds_per_explanation"] for m, f in on_all.items()},
        "posts": {m: f["posts"] for m, f in on_all.items()},
        "on_lime_posts": {
            m: {**f["plausibility"], **f["faithfulness"]} for m, f in on_sample.items()
        },
        "latency": latency,
        "skipped": skipped,
    }
    print(orjson.dumps(result).decode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
