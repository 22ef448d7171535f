"""Training the encoder variant: encode once, train the head, optionally fine-tune the top.

The frozen encoder runs once per text; the head's epochs then run over the
cached sentence vectors in milliseconds, with the same soft labels, class
weights, dev metric and early stopping as the sparse models. Optionally
(``fine_tune_layers``, opt-in) the top transformer layers are then trained
with the head on the tokens themselves, at the cost of a forward and backward
pass of the encoder per example per epoch. :func:`fit_encoder` measures what
it costs per 10k training comments.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np

from mlcycle.contracts.encoder import EncoderOptions, EncoderSummary
from mlcycle.contracts.training import TrialParams
from mlcycle.evaluation.classification import evaluate
from mlcycle.featurization.tokens import TokenEncoder
from mlcycle.trainer.encoder import (
    ENCODE_ROWS,
    TOKENS_SPEC,
    EncoderClassifier,
    encode_texts,
    head_probabilities,
    predict_texts,
)
from mlcycle.trainer.fit import FitResult
from mlcycle.trainer.models import keras, tf

PER_10K = 10_000


@dataclass
class EncodedSplit:
    """A split's texts, sentence vectors, labels and soft labels."""

    texts: list[str]
    pooled: np.ndarray
    labels: np.ndarray
    probabilities: np.ndarray
    # Each row's training weight: its class's times its source's (the sparse models' rule).
    weights: np.ndarray


@dataclass
class HeadFit:
    """The head's best epoch on dev and how it got there."""

    dev_probabilities: np.ndarray
    dev_metric: float
    best_epoch: int
    epochs_run: int
    stopped: str
    history: dict[str, list[float]] = field(default_factory=dict)


def encoder_params(options: EncoderOptions) -> TrialParams:
    """The encoder's settings as the job's result and lineage record them."""
    return TrialParams(
        preset="encoder",
        features="current",
        hidden_units=max(1, options.hidden_units),
        hidden_layers=1,
        dropout=options.dropout,
        learning_rate=options.learning_rate,
        batch_size=options.batch_size,
        epochs=options.epochs,
    )


def train_head(
    model: EncoderClassifier,
    train: EncodedSplit,
    dev: EncodedSplit,
    options: EncoderOptions,
    *,
    metric: str,
    soft_labels: bool,
    patience: int,
    seed: int,
    deadline: float | None = None,
) -> HeadFit:
    """Train the head on cached sentence vectors; keep its best epoch by ``metric`` on dev."""
    n_classes = model.n_classes
    keras.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    targets = train.probabilities if soft_labels else np.eye(n_classes)[train.labels]
    targets = np.asarray(targets, np.float32)
    head = model.head
    optimizer = keras.optimizers.Adam(learning_rate=options.learning_rate)

    @tf.function(
        input_signature=[
            tf.TensorSpec([None, model.width], tf.float32),
            tf.TensorSpec([None, n_classes], tf.float32),
            tf.TensorSpec([None], tf.float32),
        ],
        autograph=False,
    )
    def step(x: tf.Tensor, y: tf.Tensor, w: tf.Tensor) -> tf.Tensor:
        with tf.GradientTape() as tape:
            per_row = tf.nn.softmax_cross_entropy_with_logits(
                labels=y, logits=head(x, training=True)
            )
            loss = tf.reduce_sum(per_row * w) / tf.maximum(tf.reduce_sum(w), 1e-9)
        variables = head.trainable_variables
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables, strict=True))
        return loss

    history: dict[str, list[float]] = {"loss": [], "dev_loss": [], f"dev_{metric}": []}
    best = (-math.inf, 0, None, None)  # value, epoch, weights, dev probabilities
    stopped, epoch = "epochs", 0
    for epoch in range(1, options.epochs + 1):
        order = rng.permutation(len(train.labels))
        total = 0.0
        for start in range(0, len(order), options.batch_size):
            rows = order[start : start + options.batch_size]
            loss = float(
                step(
                    tf.constant(train.pooled[rows]),
                    tf.constant(targets[rows]),
                    tf.constant(train.weights[rows]),
                )
            )
            total += loss * len(rows)
        probs = head_probabilities(model, dev.pooled)
        value = evaluate(probs, dev.labels).metric(metric)
        history["loss"].append(total / max(len(order), 1))
        history["dev_loss"].append(_log_loss(probs, dev.labels))
        history[f"dev_{metric}"].append(value)
        if value > best[0]:
            best = (value, epoch, [w.numpy().copy() for w in head.weights], probs)
        if epoch - best[1] >= patience:
            stopped = "patience"
            break
        if deadline is not None and time.monotonic() >= deadline:
            stopped = "deadline"
            break
    value, best_epoch, weights, probs = best
    if weights is not None:
        for variable, saved in zip(head.weights, weights, strict=True):
            variable.assign(saved)
    return HeadFit(
        dev_probabilities=probs if probs is not None else np.empty((0, n_classes), np.float32),
        dev_metric=float(value),
        best_epoch=best_epoch,
        epochs_run=epoch,
        stopped=stopped,
        history=history,
    )


def fine_tune(
    model: EncoderClassifier,
    tokens: TokenEncoder,
    train: EncodedSplit,
    options: EncoderOptions,
    *,
    soft_labels: bool,
    seed: int,
) -> None:
    """Train the top ``fine_tune_layers`` encoder layers and the head on tokens (opt-in).

    Runs after :func:`train_head`, so the head starts from a good place and the
    small learning rate only adjusts the encoder's top.
    """
    model.freeze_below(options.fine_tune_layers)
    n_classes = model.n_classes
    rng = np.random.default_rng(seed)
    targets = train.probabilities if soft_labels else np.eye(n_classes)[train.labels]
    targets = np.asarray(targets, np.float32)
    optimizer = keras.optimizers.Adam(learning_rate=options.fine_tune_learning_rate)

    @tf.function(
        input_signature=[
            *TOKENS_SPEC,
            tf.TensorSpec([None, n_classes], tf.float32),
            tf.TensorSpec([None], tf.float32),
        ],
        autograph=False,
    )
    def step(ids: tf.Tensor, mask: tf.Tensor, y: tf.Tensor, w: tf.Tensor) -> tf.Tensor:
        with tf.GradientTape() as tape:
            logits = model({"token_ids": ids, "padding_mask": mask}, training=True)
            per_row = tf.nn.softmax_cross_entropy_with_logits(labels=y, logits=logits)
            loss = tf.reduce_sum(per_row * w) / tf.maximum(tf.reduce_sum(w), 1e-9)
        variables = model.trainable_variables
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables, strict=True))
        return loss

    for _ in range(options.fine_tune_epochs):
        order = rng.permutation(len(train.texts))
        for start in range(0, len(order), ENCODE_ROWS):
            rows = order[start : start + ENCODE_ROWS]
            batch = tokens.encode([train.texts[i] for i in rows])  # padded to this batch
            loss = float(
                step(
                    tf.constant(batch.token_ids),
                    tf.constant(batch.padding_mask),
                    tf.constant(targets[rows]),
                    tf.constant(train.weights[rows]),
                )
            )
            if not math.isfinite(loss):
                raise RuntimeError(f"fine-tuning loss became {loss}")
    model.freeze_below(0)


@dataclass
class EncoderTraining:
    """What :func:`fit_encoder` needs of a job: its splits' texts, labels and settings."""

    train: tuple[list[str], np.ndarray, np.ndarray]  # texts, labels, soft labels
    dev: tuple[list[str], np.ndarray, np.ndarray]
    n_classes: int
    metric: str = "roc_auc"
    soft_labels: bool = True
    class_weight: str = "balanced"
    # Per train row, when the job weighs its sources (fit.example_weights); else by class.
    train_weights: np.ndarray | None = None
    patience: int = 2
    seed: int = 0


def fit_encoder(
    backbone: keras.Model,
    tokens: TokenEncoder,
    job: EncoderTraining,
    options: EncoderOptions,
    *,
    deadline: float | None = None,
) -> tuple[FitResult, EncoderSummary]:
    """Encode train and dev once, train the head, optionally fine-tune; the result and its cost.

    The cost is measured here and reported per 10k training comments (encoding
    plus head, plus fine-tuning when asked), since encoding dominates and grows
    with the number of comments.
    """
    started = time.monotonic()
    keras.utils.set_random_seed(job.seed)  # the head's first weights, as the job's seed says
    model = EncoderClassifier(backbone, job.n_classes, options.hidden_units, options.dropout)
    model.freeze_below(0)
    # Trace the encoder's graph before the clock starts: a one-off cost, not a per-comment one.
    encode_texts(model, tokens, ["warm up"])
    encode_started = time.monotonic()
    weights = job.train_weights
    if weights is None:
        weights = balanced_weights(
            np.asarray(job.train[1], np.int64), job.n_classes, job.class_weight
        )
    train = _encoded(model, tokens, *job.train, np.asarray(weights, np.float32))
    encode_train_s = time.monotonic() - encode_started
    dev = _encoded(model, tokens, *job.dev)
    encode_s = time.monotonic() - encode_started
    head_started = time.monotonic()
    head = train_head(
        model,
        train,
        dev,
        options,
        metric=job.metric,
        soft_labels=job.soft_labels,
        patience=job.patience,
        seed=job.seed,
        deadline=deadline,
    )
    head_s = time.monotonic() - head_started
    fine_tune_s = 0.0
    dev_probabilities, dev_metric = head.dev_probabilities, head.dev_metric
    if options.fine_tune_layers > 0:
        tuned = time.monotonic()
        fine_tune(
            model,
            tokens,
            train,
            options,
            soft_labels=job.soft_labels,
            seed=job.seed,
        )
        fine_tune_s = time.monotonic() - tuned
        dev_probabilities = predict_texts(model, tokens, dev.texts)
        dev_metric = evaluate(dev_probabilities, dev.labels).metric(job.metric)
    n_train = len(train.texts)
    train_s = encode_train_s + head_s + fine_tune_s
    summary: EncoderSummary = {
        "model": "all-MiniLM-L6-v2",
        "max_length": tokens.max_length,
        "fine_tune_layers": options.fine_tune_layers,
        "train_texts": n_train,
        "encode_s": round(encode_s, 3),
        "encode_train_s": round(encode_train_s, 3),
        "head_s": round(head_s, 3),
        "fine_tune_s": round(fine_tune_s, 3),
        "train_s_per_10k": round(train_s * PER_10K / max(n_train, 1), 2),
    }
    result = FitResult(
        model=model,
        params=encoder_params(options),
        dev_probabilities=dev_probabilities,
        dev_metric=float(dev_metric),
        best_epoch=head.best_epoch,
        epochs_run=head.epochs_run,
        stopped=head.stopped,
        seconds=time.monotonic() - started,
        history=head.history,
        encoder=summary,
    )
    return result, summary


def _encoded(
    model: EncoderClassifier,
    tokens: TokenEncoder,
    texts: list[str],
    labels: np.ndarray,
    probabilities: np.ndarray,
    weights: np.ndarray | None = None,
) -> EncodedSplit:
    labels = np.asarray(labels, np.int64)
    return EncodedSplit(
        texts=list(texts),
        pooled=encode_texts(model, tokens, texts),
        labels=labels,
        probabilities=np.asarray(probabilities, np.float32),
        weights=np.ones(len(labels), np.float32) if weights is None else weights,
    )


def balanced_weights(labels: np.ndarray, n_classes: int, mode: str) -> np.ndarray:
    """Each row's class weight, as :func:`mlcycle.trainer.fit.class_weights` gives it for a
    split of one source: ``balanced`` makes each present class weigh the same in total."""
    if mode == "none":
        return np.ones(len(labels), np.float32)
    counts = np.bincount(labels, minlength=n_classes).astype(np.float64)
    present = counts > 0
    per_class = np.ones(n_classes)
    per_class[present] = counts.sum() / (present.sum() * counts[present])
    return per_class[labels].astype(np.float32)


def _log_loss(probabilities: np.ndarray, labels: np.ndarray) -> float:
    picked = probabilities[np.arange(len(labels)), labels]
    return float(-np.mean(np.log(np.clip(picked, 1e-7, 1.0)))) if len(labels) else math.nan
