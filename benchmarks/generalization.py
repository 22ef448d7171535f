"""Generalization: models trained on some corpora and judged on others, the behaviour suite, cost.

What is measured, on every English corpus of ../shared/data (Davidson,
MD-Agreement, ConvAbuse, HS-Brexit, HateXplain's validation and test posts),
read at run time with the project's importers (benchmarks/_corpora.py: crowd
majority on the binary ``toxicity`` task, exact ties left out, the labeler's
``hash_split`` of each id):

- Folds. ``all``: train on every corpus's train split, select on their dev
  split. ``leave_one_corpus_out``: for each corpus, train and select on the
  others' train and dev splits, and judge on every item of the one left out.
  ``davidson_only``: train and select on Davidson alone, judge on every item of
  each other corpus and on Davidson's own test split. No item a model is
  judged on was seen by its fit, its selection or its threshold.
- Figures per judged corpus: ROC-AUC of the served score, and macro F1 of the
  served label. The served label thresholds the score where the product
  serves it (see ``served_map``): the policy a job applies by default,
  fitted on the fold's dev split only — never on a judged corpus. Beside it, in
  brackets, what a deployment could do without a single label: the judged
  corpus's positive rate estimated by EM from the served scores (the inference
  service's live estimate), the scores moved to that rate, and the same
  threshold; and the estimate itself.
- Models, side by side on the same folds and splits:
  ``ngram_network`` (the sparse n-gram network with the job's default
  trial parameters, blended with its linear companion when that wins on dev,
  as a job does), ``ngram_network+embeddings`` (the same with the static
  MiniLM embeddings as a feature group), ``encoder`` (the MiniLM encoder,
  frozen, with a trained head), ``tfidf_lr`` (scikit-learn word 1-2 and char
  2-5 TF-IDF into a logistic regression, C picked on dev) and ``seed`` (the
  2017 talk's network).
- Behaviour: each model of the ``all`` fold on tests/behaviour (never used to
  train, select or threshold anything): pass rate, and its worst capability.
- Cost: training wall time of the ``all`` fold on this machine (2 cores), and,
  for every model the stack can serve, single-comment ``POST /v1/predict``
  misses through the real stack (model server and inference service as their
  own processes, load from this process): p50 latency and requests/s at 8
  clients, medians of ``--repeats`` runs of ``--seconds``.
- Goals, printed as checks for the default model (the one a job with the
  default config trains): the issue's three sample texts answered right; mean
  leave-one-corpus-out macro F1 at least 0.10 above ``ngram_network``'s; at
  least 85% of the behaviour suite, no capability under 60%; on Davidson's own
  test split, next to ``tfidf_lr``; and the serving goals (miss p50 <= 5 ms,
  >= 500 requests/s), which a default model must meet.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import _corpora
import numpy as np
import orjson
import uvloop
from _harness import serving_settings
from quality import describe, tfidf_union
from rich.console import Console
from rich.table import Table
from serving import Ladder
from sklearn.linear_model import LogisticRegression

from mlcycle.clients import clients_for
from mlcycle.common.settings import Settings, load_settings
from mlcycle.contracts.encoder import EncoderOptions
from mlcycle.contracts.training import JobConfig, TrialParams
from mlcycle.evaluation.behaviour import load_suite, run_suite, threshold_scorer
from mlcycle.evaluation.calibration import fit_platt
from mlcycle.evaluation.classification import evaluate
from mlcycle.evaluation.priors import (
    adjust_binary,
    bayes_threshold,
    estimate_positive_rate,
    logit,
    prior_shift,
    sigmoid,
)
from mlcycle.featurization.embeddings import read_files, write_artifact
from mlcycle.featurization.transform import Transform
from mlcycle.featurization.transform import fit as fit_transform
from mlcycle.local.loadtest import drive
from mlcycle.local.pipeline import wait_until_served
from mlcycle.local.stack import LocalStack
from mlcycle.trainer.config import SEED, variant_config
from mlcycle.trainer.data import SplitData, TrainingData
from mlcycle.trainer.distill import ensure as ensure_embeddings
from mlcycle.trainer.fit import fit, predict_probabilities
from mlcycle.trainer.linear import blend_with_linear
from mlcycle.trainer.models import PriorCorrected

# The feature variant with the static MiniLM embeddings beside the n-grams.
EMBEDDINGS_VARIANT = "words+chars+embeddings"
SUITE = Path(__file__).resolve().parents[1] / "tests" / "behaviour"
C_GRID = (1.0, 4.0, 16.0)
LATENCY_AT = 8
# The serving goals a default model must meet (the serving benchmark's targets).
MISS_P50_MS = 5.0
MIN_RPS = 500.0
# The three texts, and what a moderator would call them.
SAMPLES = (
    ("you are a wonderful person", False),
    ("go back to where you came from, you filthy animal", True),
    ("You are a pathetic idiot and everyone knows it", True),
)
# The goals.
LOCO_GAIN = 0.10
BEHAVIOUR_PASS = 0.85
BEHAVIOUR_FLOOR = 0.60


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# -- what every model comes out as ---------------------------------------------------------------


@dataclass
class Fitted:
    """A fitted model as the product would serve it.

    ``raw`` is the model's own probability of toxicity. The served score is that
    probability Platt-scaled on the fold's dev split and moved to the job's default
    deployment prior (one affine map of the logit, as the trainer bakes into an
    exported model); the served label is the score at or above the Bayes threshold
    of the default cost ratio. ``export`` writes the model as a servable version
    (None when the stack cannot serve it).
    """

    raw: Callable[[list[str]], np.ndarray]
    scale: float
    shift: float
    threshold: float
    train_s: float
    note: str
    export: Callable[[Settings], None] | None = None

    def scores(self, texts: list[str]) -> np.ndarray:
        raw = np.clip(self.raw(texts).astype(np.float64), 1e-7, 1 - 1e-7)
        return np.asarray(sigmoid(self.scale * np.asarray(logit(raw)) + self.shift))


# The positive rate the served scores are probabilities under: the default policy's.
SCORE_PRIOR = JobConfig().threshold_policy.positive_rate or 0.5


def served_map(dev_raw: np.ndarray, dev_labels: np.ndarray) -> tuple[float, float, float]:
    """(scale, shift, threshold) of the job's default threshold policy, fitted on dev only."""
    policy = JobConfig().threshold_policy
    raw = np.clip(dev_raw.astype(np.float64), 1e-7, 1 - 1e-7)
    platt = fit_platt(np.asarray(logit(raw)), dev_labels)
    dev_prior = float(dev_labels.mean())
    target = policy.positive_rate if policy.positive_rate is not None else dev_prior
    return (
        platt.scale,
        platt.shift + prior_shift(dev_prior, target),
        bayes_threshold(policy.cost_ratio),
    )


@dataclass(frozen=True)
class FoldData:
    """The rows a model may learn from (train) and select on (dev)."""

    corpus: _corpora.Corpus
    train: np.ndarray
    dev: np.ndarray

    def texts(self, split: str) -> list[str]:
        return self.corpus.texts_of(getattr(self, split))

    def labels(self, split: str) -> np.ndarray:
        return self.corpus.labels[getattr(self, split)]


Recipe = Callable[[FoldData], Fitted]


def tfidf_lr(fold: FoldData) -> Fitted:
    """scikit-learn TF-IDF into a logistic regression, C picked on dev by ROC-AUC."""
    started = time.perf_counter()
    union = tfidf_union()
    x_train = union.fit_transform(fold.texts("train"))
    x_dev = union.transform(fold.texts("dev"))
    fitted = {}
    for c in C_GRID:
        model = LogisticRegression(C=c, max_iter=2000).fit(x_train, fold.labels("train"))
        dev = evaluate(model.predict_proba(x_dev), fold.labels("dev"))
        fitted[c] = (model, dev.roc_auc or 0.0)
    best_c = max(C_GRID, key=lambda c: fitted[c][1])
    model = fitted[best_c][0]

    def raw(texts: list[str]) -> np.ndarray:
        return model.predict_proba(union.transform(texts))[:, 1]

    scale, shift, threshold = served_map(raw(fold.texts("dev")), fold.labels("dev"))
    return Fitted(raw, scale, shift, threshold, time.perf_counter() - started, f"C={best_c:g}")


def network(variant: str, params: TrialParams, *, talk: bool = False) -> Recipe:
    """A sparse network over the transform of ``variant``: the job's way, or the talk's."""

    def recipe(fold: FoldData) -> Fitted:
        started = time.perf_counter()
        config = variant_config(variant, None)
        train_texts = fold.texts("train")
        artifacts = embeddings_store() if config.embeddings.enabled else None
        transform = fit_transform(
            train_texts, [{} for _ in train_texts], config, artifacts=artifacts
        )
        data = TrainingData(
            train=_split(transform, fold, "train"),
            dev=_split(transform, fold, "dev"),
            test=_split(transform, fold, None),
            n_classes=2,
            transform=transform.version,
            label_run="generalization",
            task="toxicity",
            variant=variant,
        )
        if talk:
            # The talk trained a fixed number of epochs, on hard labels, unweighted.
            result = fit(
                params, data, soft_labels=False, class_weight="none", patience=params.epochs
            )
        else:
            result = blend_with_linear(fit(params, data), data, metric="roc_auc")
        model = result.model

        def raw(texts: list[str]) -> np.ndarray:
            split = SplitData.from_batch(
                transform.apply(texts, [{} for _ in texts]), np.zeros(len(texts), np.int64)
            )
            return predict_probabilities(model, split)[:, 1]

        scale, shift, threshold = served_map(result.dev_probabilities[:, 1], data.dev.labels)
        seconds = time.perf_counter() - started
        blend = (result.blend or {}).get("used")
        note = f"{describe(params)}{', blended' if blend else ''}"

        def export(settings: Settings) -> None:
            _export_sparse(settings, transform, PriorCorrected(model, scale, shift), threshold)

        return Fitted(raw, scale, shift, threshold, seconds, note, export)

    return recipe


def embeddings_store() -> Path:
    """The artifact store of the default data directory, with the static embeddings in it.

    They are distilled there once (as `make demo` and `mlcycle embeddings distill` do),
    and every fold's transform reads the same artifact.
    """
    artifacts = load_settings().featurizer.artifacts_dir
    distilled = ensure_embeddings(artifacts, log)
    if not distilled.cached:
        log(f"static embeddings {distilled.ident} distilled in {distilled.seconds:.0f} s")
    return artifacts


def _split(transform: Transform, fold: FoldData, split: str | None) -> SplitData:
    rows = getattr(fold, split) if split else np.empty(0, np.int64)
    texts = fold.corpus.texts_of(rows)
    return SplitData.from_batch(
        transform.apply(texts, [{} for _ in texts]),
        fold.corpus.labels[rows],
        probabilities=fold.corpus.soft[rows],
        item_ids=fold.corpus.ids[rows],
    )


def _export_sparse(
    settings: Settings, transform: Transform, model: PriorCorrected, threshold: float
) -> None:
    """Version 1 of the served model, written the way the trainer writes one."""
    from mlcycle.contracts.serving import serving_config_path
    from mlcycle.trainer.export import (
        export_saved_model,
        serving_dir,
        write_metadata,
        write_warmup_requests,
    )
    from mlcycle.trainer.serving_config import render_serving_config

    name, models = settings.trainer.model_name, settings.trainer.models_dir
    transform.save(settings.featurizer.artifacts_dir)
    if transform.embeddings is not None:
        ident = transform.embeddings.ident
        write_artifact(settings.featurizer.artifacts_dir, read_files(embeddings_store(), ident))
    sample = SplitData.from_batch(transform.apply(["warm up"] * 8, [{}] * 8), np.zeros(8, np.int64))
    predict_probabilities(model, sample)  # a wrapper is built by its first call, before export
    folder = serving_dir(models, name, 1)
    export_saved_model(model, folder)
    write_warmup_requests(folder, name, *sample.flat_rows(np.arange(8)).padded())
    write_metadata(
        folder,
        {
            "name": name,
            "version": 1,
            "task": "toxicity",
            "transform": transform.version,
            "classes": ["0", "1"],
            "threshold": threshold,
            "input_dim": transform.dim,
        },
    )
    text = render_serving_config({name: 1}, str(models))
    serving_config_path(models).write_text(text, encoding="utf-8")


class Encoder:
    """The MiniLM encoder, frozen, with a head trained per fold: the encoder variant's recipe.

    The frozen encoder's sentence vector of a text does not depend on the fold, so
    each text is encoded once per run and the vectors are reused by every fold; a
    fold's training time is its share of that encoding (its train rows) plus its
    head's training, what a job on those rows would spend. Serving goes through the
    exported SavedModel with its tokenizer, as a job exports it.
    """

    def __init__(self) -> None:
        self._backbone: Any = None
        self._tokens: Any = None
        self._pooled: dict[str, np.ndarray] = {}
        self._seconds_per_text = 0.0

    def _parts(self) -> tuple[Any, Any]:
        from mlcycle.featurization.minilm import TOKENIZER, extract_minilm
        from mlcycle.featurization.tokens import TokenEncoder
        from mlcycle.trainer.encoder import load_backbone

        if self._backbone is None:
            folder = extract_minilm(Path(tempfile.gettempdir()) / "mlcycle-bench-minilm")
            self._backbone = load_backbone(folder)
            self._tokens = TokenEncoder(folder / TOKENIZER, EncoderOptions().max_length)
        return self._backbone, self._tokens

    def pooled(self, model: Any, texts: list[str]) -> np.ndarray:
        """Sentence vectors of ``texts``, encoding only those not seen before."""
        from mlcycle.trainer.encoder import encode_texts

        new = list(dict.fromkeys(t for t in texts if t not in self._pooled))
        if new:
            started = time.perf_counter()
            vectors = encode_texts(model, self._tokens, new)
            self._seconds_per_text = (time.perf_counter() - started) / len(new)
            self._pooled.update(zip(new, vectors, strict=True))
        return np.stack([self._pooled[t] for t in texts])

    def __call__(self, fold: FoldData) -> Fitted:
        from mlcycle.trainer.encoder import EncoderClassifier, head_probabilities
        from mlcycle.trainer.encoder_fit import EncodedSplit, balanced_weights, train_head

        backbone, tokens = self._parts()
        options = EncoderOptions()
        model = EncoderClassifier(backbone, 2, options.hidden_units, options.dropout)
        model.freeze_below(0)
        started = time.perf_counter()

        def split(name: str) -> EncodedSplit:
            rows = getattr(fold, name)
            labels = fold.corpus.labels[rows]
            return EncodedSplit(
                texts=fold.corpus.texts_of(rows),
                pooled=self.pooled(model, fold.corpus.texts_of(rows)),
                labels=labels,
                probabilities=fold.corpus.soft[rows],
                weights=balanced_weights(labels, 2, "balanced").astype(np.float32),
            )

        train, dev = split("train"), split("dev")
        encoding_s = self._seconds_per_text * len(train.texts)
        head = train_head(
            model, train, dev, options, metric="roc_auc", soft_labels=True, patience=2, seed=0
        )
        seconds = encoding_s + time.perf_counter() - started

        def raw(texts: list[str]) -> np.ndarray:
            return head_probabilities(model, self.pooled(model, texts))[:, 1]

        scale, shift, threshold = served_map(head.dev_probabilities[:, 1], dev.labels)
        note = f"frozen, head of {options.hidden_units}, best epoch {head.best_epoch}"

        def export(settings: Settings) -> None:
            _export_encoder(settings, model, tokens, scale, shift, threshold)

        return Fitted(raw, scale, shift, threshold, seconds, note, export)


def _export_encoder(
    settings: Settings, model: Any, tokens: Any, scale: float, shift: float, threshold: float
) -> None:
    """Version 1 of the served encoder, written the way the trainer writes one."""
    from mlcycle.contracts.serving import serving_config_path
    from mlcycle.trainer.encoder_export import (
        export_encoder_saved_model,
        input_metadata,
        write_token_warmup_requests,
    )
    from mlcycle.trainer.export import serving_dir, write_metadata
    from mlcycle.trainer.serving_config import render_serving_config

    name, models = settings.trainer.model_name, settings.trainer.models_dir
    # An encoder version still names a transform, as a job's lineage does (the feature
    # set's); the inference service loads it with the version, though tokens feed the model.
    transform = fit_transform(["warm up"], [{}])
    transform.save(settings.featurizer.artifacts_dir)
    folder = serving_dir(models, name, 1)
    export_encoder_saved_model(model, folder, tokens.path, (scale, shift))
    write_token_warmup_requests(folder, name, tokens.encode(["warm up"] * 8))
    write_metadata(
        folder,
        {
            "name": name,
            "version": 1,
            "task": "toxicity",
            "transform": transform.version,
            "classes": ["0", "1"],
            "threshold": threshold,
            "input": input_metadata(folder, tokens.max_length),
        },
    )
    text = render_serving_config({name: 1}, str(models))
    serving_config_path(models).write_text(text, encoding="utf-8")


encoder = Encoder()


# -- folds, and what each model scores on them -------------------------------------------------


@dataclass(frozen=True)
class Fold:
    """Which corpora a model learns from, and which rows it is judged on afterwards."""

    name: str
    train_on: tuple[str, ...]
    judged_on: dict[str, np.ndarray]  # corpus -> rows


def folds(corpus: _corpora.Corpus) -> list[Fold]:
    names = tuple(corpus.names())
    test_of = {n: corpus.rows(sources=(n,), splits=("test",)) for n in names}
    every = {n: corpus.rows(sources=(n,)) for n in names}
    out = [Fold("all", names, test_of)]
    for held in names:
        out.append(Fold(f"loco:{held}", tuple(n for n in names if n != held), {held: every[held]}))
    if "davidson" in names:
        judged = {n: every[n] for n in names if n != "davidson"}
        out.append(
            Fold("davidson_only", ("davidson",), {"davidson": test_of["davidson"], **judged})
        )
    return out


def fold_data(corpus: _corpora.Corpus, fold: Fold) -> FoldData:
    return FoldData(
        corpus,
        corpus.rows(sources=fold.train_on, splits=("train",)),
        corpus.rows(sources=fold.train_on, splits=("dev",)),
    )


def judge(fitted: Fitted, corpus: _corpora.Corpus, rows: np.ndarray) -> dict[str, float | None]:
    """Macro F1 of the served label and ROC-AUC of the served score on ``rows``."""
    scores = fitted.scores(corpus.texts_of(rows))
    labels = corpus.labels[rows]
    result = evaluate(np.stack([1.0 - scores, scores], axis=1), labels, threshold=fitted.threshold)
    # What the live positive-rate estimate would let a deployment do without any label: the
    # corpus's rate estimated by EM from the served scores, the scores moved to it.
    estimate = estimate_positive_rate(scores, SCORE_PRIOR).positive_rate
    moved = adjust_binary(scores, SCORE_PRIOR, estimate)
    adapted = evaluate(np.stack([1.0 - moved, moved], axis=1), labels, threshold=fitted.threshold)
    return {
        "macro_f1": round(result.macro_f1, 4),
        "roc_auc": None if result.roc_auc is None else round(result.roc_auc, 4),
        "flagged": round(float((scores >= fitted.threshold).mean()), 4),
        "positive_rate": round(float(labels.mean()), 4),
        "estimated_rate": round(estimate, 4),
        "macro_f1_adapted": round(adapted.macro_f1, 4),
    }


def behaviour(fitted: Fitted) -> dict[str, Any]:
    """The behaviour suite's pass rates of the served labels."""
    result = run_suite(load_suite(SUITE), threshold_scorer(fitted.scores, fitted.threshold))
    worst = result.worst
    return {
        "pass_rate": round(result.pass_rate, 4),
        "worst_capability": worst.name,
        "worst_rate": round(worst.rate, 4),
        "capabilities": {k: round(v, 4) for k, v in result.rates().items()},
    }


def samples(fitted: Fitted) -> list[dict[str, Any]]:
    """The issue's three texts: served score, served label, and whether that is right."""
    scores = fitted.scores([text for text, _ in SAMPLES])
    return [
        {
            "text": text,
            "score": round(float(s), 4),
            "toxic": bool(s >= fitted.threshold),
            "right": bool(s >= fitted.threshold) == toxic,
        }
        for (text, toxic), s in zip(SAMPLES, scores, strict=True)
    ]


# -- serving cost through the real stack ----------------------------------------------------------


async def _miss_runs(ladder: Ladder, seconds: float, repeats: int) -> list[Any]:
    await ladder.open()
    try:
        await drive(ladder.predict_miss, LATENCY_AT, 1.0)  # warm the connections and caches
        return [await drive(ladder.predict_miss, LATENCY_AT, seconds) for _ in range(repeats)]
    finally:
        await ladder.close()


def serving_cost(
    fitted: Fitted, texts: list[str], seconds: float, repeats: int
) -> dict[str, float]:
    """Single-comment predict misses at 8 clients through the model server and inference."""
    with tempfile.TemporaryDirectory(prefix="mlcycle-bench-generalization-") as tmp:
        settings = serving_settings(Path(tmp))
        assert fitted.export is not None
        fitted.export(settings)
        stack = LocalStack(
            settings, services=("modelserver", "inference-api"), log_dir=Path(tmp) / "logs"
        )
        try:
            resolved = stack.start()
            with clients_for(resolved) as clients:
                wait_until_served(clients, 1)
                ladder = Ladder(resolved, clients, None, texts)  # type: ignore[arg-type]
                runs = uvloop.run(_miss_runs(ladder, seconds, repeats))
        finally:
            stack.stop()
    return {
        "miss_p50_ms": round(statistics.median(r.percentile(0.5) for r in runs), 3),
        "rps_8": round(statistics.median(r.rps for r in runs), 1),
    }


# -- the run ------------------------------------------------------------------------------------


def recipes() -> dict[str, Recipe]:
    """The models, by the names the JSON line uses."""
    return {
        "ngram_network": network("words+chars", TrialParams(features="words+chars")),
        "ngram_network+embeddings": network(
            EMBEDDINGS_VARIANT, TrialParams(features=EMBEDDINGS_VARIANT)
        ),
        "encoder": encoder,
        "tfidf_lr": tfidf_lr,
        "seed": network(SEED.features, SEED, talk=True),
    }


def default_model() -> str:
    """The model a job with the default config trains: the search's default feature variants."""
    space = JobConfig().search
    return "ngram_network+embeddings" if EMBEDDINGS_VARIANT in space.features else "ngram_network"


@dataclass
class Results:
    judged: dict[str, dict[str, dict[str, dict[str, float | None]]]] = field(default_factory=dict)
    behaviour: dict[str, dict[str, Any]] = field(default_factory=dict)
    samples: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    cost: dict[str, dict[str, float | None]] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)


def run(corpus: _corpora.Corpus, names: list[str], args: argparse.Namespace) -> Results:
    """Every fold and model; then the serving cost of the ``all`` fold's models.

    Serving is measured last, once every model is trained, so that no training
    shares the cores with the load.
    """
    results = Results()
    every = recipes()
    served: dict[str, Fitted] = {}
    texts: list[str] = []
    for fold in folds(corpus):
        data = fold_data(corpus, fold)
        log(f"{fold.name}: train on {', '.join(fold.train_on)} ({len(data.train):,} rows)")
        for name in names:
            fitted = every[name](data)
            judged = {c: judge(fitted, corpus, rows) for c, rows in fold.judged_on.items()}
            results.judged.setdefault(fold.name, {})[name] = judged
            log(f"  {name}: {fitted.train_s:.0f} s, {judged}")
            if fold.name != "all":
                continue
            results.notes[name] = fitted.note
            results.behaviour[name] = behaviour(fitted)
            results.samples[name] = samples(fitted)
            results.cost[name] = {"train_s": round(fitted.train_s, 1)}
            served[name] = fitted
            texts = corpus.texts_of(fold.judged_on[next(iter(fold.judged_on))])
            log(f"  {name}: behaviour {results.behaviour[name]['pass_rate']}")
    for name, fitted in served.items():
        cost = results.cost[name]
        if fitted.export is not None and not args.skip_serving:
            cost.update(serving_cost(fitted, texts, args.seconds, args.repeats))
        else:
            cost.update({"miss_p50_ms": None, "rps_8": None})
        log(f"  {name}: cost {cost}")
    return results


def loco(results: Results) -> dict[str, dict[str, dict[str, float | None]]]:
    """model -> held-out corpus -> figures."""
    out: dict[str, dict[str, dict[str, float | None]]] = {}
    for fold, by_model in results.judged.items():
        if fold.startswith("loco:"):
            for model, judged in by_model.items():
                out.setdefault(model, {}).update(judged)
    return out


def mean_loco(results: Results, model: str, metric: str) -> float:
    values = [f[metric] for f in loco(results).get(model, {}).values() if f[metric] is not None]
    return float(np.mean(values)) if values else float("nan")


def figures_table(title: str, by_model: dict[str, dict[str, dict[str, float | None]]]) -> Table:
    corpora = list(dict.fromkeys(c for judged in by_model.values() for c in judged))
    table = Table(title=title)
    table.add_column("model")
    for corpus in corpora:
        table.add_column(f"{corpus}\nmacro F1 / ROC-AUC (adapted)", justify="right")
    table.add_column("mean macro F1", justify="right")
    for model, judged in by_model.items():
        cells = []
        for corpus in corpora:
            f = judged.get(corpus)
            cells.append(
                "-"
                if f is None
                else f"{f['macro_f1']:.3f} / {f['roc_auc'] or 0:.3f} "
                f"({f['macro_f1_adapted']:.3f} at EM's {f['estimated_rate']:.2f})"
            )
        mean = np.mean([f["macro_f1"] for f in judged.values()])
        table.add_row(model, *cells, f"{mean:.3f}")
    return table


def behaviour_table(results: Results) -> Table:
    table = Table(title="behaviour suite (tests/behaviour), models of the 'all' fold")
    table.add_column("capability")
    for model in results.behaviour:
        table.add_column(model, justify="right")
    capabilities = next(iter(results.behaviour.values()))["capabilities"]
    for capability in capabilities:
        table.add_row(
            capability,
            *(f"{b['capabilities'][capability]:.2f}" for b in results.behaviour.values()),
        )
    table.add_row("all cases", *(f"{b['pass_rate']:.3f}" for b in results.behaviour.values()))
    return table


def cost_table(results: Results) -> Table:
    table = Table(title="cost: 'all' fold training, single-comment misses at 8 clients")
    for column in ("model", "train s", "miss p50 ms", "requests/s", "how it was fitted"):
        table.add_column(
            column, justify="left" if column in ("model", "how it was fitted") else "right"
        )
    for model, cost in results.cost.items():
        p50, rps = cost["miss_p50_ms"], cost["rps_8"]
        table.add_row(
            model,
            f"{cost['train_s']:.0f}",
            "not servable" if p50 is None else f"{p50:.2f}",
            "-" if rps is None else f"{rps:,.0f}",
            results.notes.get(model, ""),
        )
    return table


def meets_serving_goals(cost: dict[str, float | None]) -> bool:
    p50, rps = cost.get("miss_p50_ms"), cost.get("rps_8")
    return p50 is not None and rps is not None and p50 <= MISS_P50_MS and rps >= MIN_RPS


def goal_lines(results: Results, default: str) -> list[str]:
    lines = []
    right = results.samples.get(default, [])
    lines.append(
        f"the default model ({default}) answers the issue's three texts: "
        f"{sum(s['right'] for s in right)}/3 right "
        + "; ".join(
            f"{s['text']!r} {s['score']:.2f} -> {'toxic' if s['toxic'] else 'ok'}" for s in right
        )
    )
    gain = mean_loco(results, default, "macro_f1") - mean_loco(results, "ngram_network", "macro_f1")
    lines.append(
        f"leave-one-corpus-out mean macro F1, {default} over ngram_network: {gain:+.3f} "
        f"(goal +{LOCO_GAIN:.2f}: {'met' if gain >= LOCO_GAIN else 'missed'})"
    )
    b = results.behaviour.get(default)
    if b:
        ok = b["pass_rate"] >= BEHAVIOUR_PASS and b["worst_rate"] >= BEHAVIOUR_FLOOR
        lines.append(
            f"behaviour: {b['pass_rate']:.1%} passed, worst {b['worst_capability']} "
            f"{b['worst_rate']:.0%} (goal {BEHAVIOUR_PASS:.0%}, none below "
            f"{BEHAVIOUR_FLOOR:.0%}: {'met' if ok else 'missed'})"
        )
    own = results.judged.get("davidson_only", {})
    if default in own and "tfidf_lr" in own:
        mine, theirs = own[default]["davidson"], own["tfidf_lr"]["davidson"]
        lines.append(
            f"Davidson's own test split (trained on Davidson): {default} ROC-AUC "
            f"{mine['roc_auc']:.4f}, macro F1 {mine['macro_f1']:.3f}; tfidf_lr "
            f"{theirs['roc_auc']:.4f}, {theirs['macro_f1']:.3f}"
        )
    for model, cost in results.cost.items():
        if cost.get("miss_p50_ms") is not None and not meets_serving_goals(cost):
            lines.append(
                f"{model} misses the serving goals (p50 <= {MISS_P50_MS} ms, >= {MIN_RPS:.0f} "
                f"requests/s): it cannot be the default"
            )
    return lines


def headline(
    by_model: dict[str, dict[str, dict[str, float | None]]],
) -> dict[str, dict[str, dict[str, float | None]]]:
    """model -> corpus -> the JSON line's two figures."""
    return {
        model: {c: {k: f[k] for k in ("macro_f1", "roc_auc")} for c, f in judged.items()}
        for model, judged in by_model.items()
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=_corpora.DATA)
    parser.add_argument("--models", default=",".join(recipes()), help="comma-separated")
    parser.add_argument("--seconds", type=float, default=4.0, help="per serving run")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-serving", action="store_true")
    parser.add_argument(
        "--corpora", default="", help="comma-separated subset of the English corpora (all)"
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    names = _corpora.available(args.data)
    if args.corpora:
        names = [n for n in names if n in args.corpora.split(",")]
    if len(names) < 2:
        log(f"fewer than two English corpora under {args.data}: see ../shared/data/*/SOURCE.md")
        return 2
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = sorted(set(models) - set(recipes()))
    if unknown:
        log(f"unknown models {unknown}; known: {', '.join(recipes())}")
        return 2
    corpus = _corpora.load(names, args.data)
    log(f"corpora: {', '.join(f'{n} {len(corpus.rows(sources=(n,))):,}' for n in names)}")
    started = time.perf_counter()
    results = run(corpus, models, args)
    default = default_model()

    console = Console()
    console.print(figures_table("leave one corpus out: trained on the others", loco(results)))
    console.print(
        figures_table("trained on Davidson alone", results.judged.get("davidson_only", {}))
    )
    console.print(
        figures_table("trained on every corpus: each corpus's test split", results.judged["all"])
    )
    console.print(behaviour_table(results))
    console.print(cost_table(results))
    for line in goal_lines(results, default):
        console.print(line)
    console.print(f"whole run: {time.perf_counter() - started:.0f} s")
    print(
        orjson.dumps(
            {
                "benchmark": "generalization",
                "default_model": default,
                "leave_one_corpus_out": headline(loco(results)),
                "davidson_only": headline(results.judged.get("davidson_only", {})),
                "behaviour": {
                    m: {k: b[k] for k in ("pass_rate", "worst_capability", "worst_rate")}
                    for m, b in results.behaviour.items()
                },
                "cost": results.cost,
            }
        ).decode()
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
