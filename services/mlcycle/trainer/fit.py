"""Train one model: epochs over shuffled flat batches, early stopping on dev, best weights kept.

A trial stops when its dev metric has not improved for ``patience`` epochs,
when it reaches its epoch count, when the job's deadline passes, or when the
caller's per-epoch hook says so (Optuna's pruner raises from there). A loss
that is not finite ends the trial with :class:`NonFiniteLoss` at once: the
weights are garbage from then on and the search should move on.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from mlcycle.contracts.encoder import EncoderSummary
from mlcycle.contracts.thresholds import ThresholdSummary
from mlcycle.contracts.training import BlendSummary, TrialParams
from mlcycle.evaluation.classification import evaluate
from mlcycle.trainer.data import FlatBatch, SplitData, TrainingData, source_weight_of
from mlcycle.trainer.models import TrainedModel, build_model, build_optimizer, loss_value

# tf and keras come in through .models, which sets the backend first.
from mlcycle.trainer.models import keras, tf  # noqa: E402  isort: skip

EpochHook = Callable[[int, float], None]  # (epoch, dev metric) -> may raise to stop the trial
# Rows per prediction batch: its gathered (non-zeros x units) block is the peak, so keep
# it small; 512 rows of 700 non-zeros at 128 units is ~180 MB.
PREDICT_ROWS = 512


class NonFiniteLoss(RuntimeError):
    """The training loss became NaN or infinite."""


@dataclass
class FitResult:
    """A trained model and how it got there."""

    model: TrainedModel
    params: TrialParams
    dev_probabilities: np.ndarray
    dev_metric: float
    best_epoch: int
    epochs_run: int
    stopped: str  # "patience" | "epochs" | "deadline"
    seconds: float
    history: dict[str, list[float]] = field(default_factory=dict)
    # How the network was blended with its linear companion (mlcycle.trainer.linear), if tried.
    blend: BlendSummary | None = None
    # How the served threshold was chosen (mlcycle.trainer.thresholds), once it was.
    threshold: ThresholdSummary | None = None
    # The encoder variant (mlcycle.trainer.encoder): its cost, and how it scores texts
    # (it reads texts, where the sparse models read a split's feature rows).
    encoder: EncoderSummary | None = None
    predict_texts: Callable[[Sequence[str]], np.ndarray] | None = None


def _inputs(batch: FlatBatch) -> dict[str, tf.Tensor]:
    return {
        "ids": tf.constant(batch.ids, tf.int32),
        "weights": tf.constant(batch.weights, tf.float32),
        "rows": tf.constant(batch.rows, tf.int32),
        "n_rows": tf.constant(batch.n_rows, tf.int32),
    }


_INPUT_SPEC = {
    "ids": tf.TensorSpec([None], tf.int32),
    "weights": tf.TensorSpec([None], tf.float32),
    "rows": tf.TensorSpec([None], tf.int32),
    "n_rows": tf.TensorSpec([], tf.int32),
}


def class_weights(
    split: SplitData,
    n_classes: int,
    mode: str,
    source_weights: Mapping[str, float] | None = None,
) -> np.ndarray:
    """Per-class weights: ``balanced`` makes each present class weigh the same in total.

    A class's total counts each row at its source weight, so the balance holds
    in the mix the job trains on.
    """
    if mode == "none":
        return np.ones(n_classes, np.float32)
    per_row = source_weight_of(split.sources, source_weights)
    counts = np.bincount(split.labels, weights=per_row, minlength=n_classes)[:n_classes]
    present = counts > 0
    weights = np.ones(n_classes)
    weights[present] = counts.sum() / (present.sum() * counts[present])
    return weights.astype(np.float32)


def example_weights(
    split: SplitData,
    n_classes: int,
    class_weight: str,
    source_weights: Mapping[str, float] | None = None,
) -> np.ndarray:
    """Each row's training weight: its class's weight times its source's (0: not trained on)."""
    per_class = class_weights(split, n_classes, class_weight, source_weights)[split.labels]
    return (per_class * source_weight_of(split.sources, source_weights)).astype(np.float32)


def predict_probabilities(model: TrainedModel, split: SplitData) -> np.ndarray:
    """Softmax probabilities for every row of ``split``, in order."""
    if len(split) == 0:
        return np.empty((0, model.n_classes), np.float32)
    predict = _predictor(model)
    parts = [predict(_inputs(batch)).numpy() for _, batch in split.batches(PREDICT_ROWS)]
    return np.concatenate(parts).astype(np.float32)


def _predictor(model: TrainedModel) -> Callable[[dict[str, tf.Tensor]], tf.Tensor]:
    cached = getattr(model, "_mlcycle_predict", None)
    if cached is None:

        @tf.function(input_signature=[_INPUT_SPEC], autograph=False)
        def cached(inputs: dict[str, tf.Tensor]) -> tf.Tensor:
            return tf.nn.softmax(model(inputs, training=False))

        model._mlcycle_predict = cached
    return cached


def fit(
    params: TrialParams,
    data: TrainingData,
    *,
    metric: str = "roc_auc",
    soft_labels: bool = True,
    class_weight: str = "balanced",
    patience: int = 2,
    seed: int = 0,
    deadline: float | None = None,
    on_epoch: EpochHook | None = None,
    source_weights: Mapping[str, float] | None = None,
) -> FitResult:
    """Train ``params`` on ``data.train``, select the epoch by ``metric`` on ``data.dev``.

    Each row weighs its class weight times its source's weight in
    ``source_weights`` (1 for a source not named); rows that weigh 0 are not
    trained on at all.
    """
    started = time.monotonic()
    keras.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    model = build_model(params, data.dim, data.n_classes)
    optimizer = build_optimizer(params)
    train = data.train
    row_weights = example_weights(train, data.n_classes, class_weight, source_weights)
    kept = np.flatnonzero(row_weights > 0)
    if len(kept) < len(train):
        train, row_weights = train.take(kept), row_weights[kept]
    targets = train.probabilities if soft_labels else np.eye(data.n_classes)[train.labels]
    targets = np.asarray(targets, np.float32)

    # autograph=False: the step has no Python control flow to convert, and AutoGraph
    # cannot read the source of a closure built per trial anyway (it warns and skips).
    @tf.function(
        input_signature=[
            _INPUT_SPEC,
            tf.TensorSpec([None, data.n_classes], tf.float32),
            tf.TensorSpec([None], tf.float32),
        ],
        autograph=False,
    )
    def train_step(inputs: dict[str, tf.Tensor], y: tf.Tensor, w: tf.Tensor) -> tf.Tensor:
        with tf.GradientTape() as tape:
            loss = loss_value(params, y, model(inputs, training=True), w)
        variables = model.trainable_variables
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables, strict=True))
        return loss

    history: dict[str, list[float]] = {"loss": [], "dev_loss": [], f"dev_{metric}": []}
    best_value, best_epoch, best_weights, best_probs = -math.inf, 0, None, None
    stopped = "epochs"
    epoch = 0
    for epoch in range(1, params.epochs + 1):
        total, seen = 0.0, 0
        for rows, batch in train.batches(params.batch_size, rng):
            y, w = tf.constant(targets[rows]), tf.constant(row_weights[rows])
            loss = float(train_step(_inputs(batch), y, w))
            if not math.isfinite(loss):
                raise NonFiniteLoss(f"training loss became {loss} in epoch {epoch}")
            total += loss * len(rows)
            seen += len(rows)
        probs = predict_probabilities(model, data.dev)
        value = evaluate(probs, data.dev.labels).metric(metric)
        history["loss"].append(total / max(seen, 1))
        history["dev_loss"].append(_log_loss(probs, data.dev.labels))
        history[f"dev_{metric}"].append(value)
        if value > best_value:
            best_value, best_epoch, best_probs = value, epoch, probs
            best_weights = [w.numpy().copy() for w in model.weights]
        if on_epoch is not None:
            on_epoch(epoch, value)
        if epoch - best_epoch >= patience:
            stopped = "patience"
            break
        if deadline is not None and time.monotonic() >= deadline:
            stopped = "deadline"
            break
    if best_weights is not None:
        for variable, value in zip(model.weights, best_weights, strict=True):
            variable.assign(value)
    return FitResult(
        model=model,
        params=params,
        dev_probabilities=best_probs if best_probs is not None else np.empty((0, data.n_classes)),
        dev_metric=best_value,
        best_epoch=best_epoch,
        epochs_run=epoch,
        stopped=stopped,
        seconds=time.monotonic() - started,
        history=history,
    )


def _log_loss(probabilities: np.ndarray, labels: np.ndarray) -> float:
    picked = probabilities[np.arange(len(labels)), labels]
    return float(-np.mean(np.log(np.clip(picked, 1e-7, 1.0)))) if len(labels) else math.nan
