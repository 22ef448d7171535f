"""Keras models over the featurizer's sparse output.

The first layer is a *weighted embedding bag*: the sum of one embedding row
per non-zero feature, weighted by its value. That is exactly a Dense layer
applied to the sparse input vector, computed in time proportional to the
non-zeros instead of the input dimension (hundreds of thousands of n-gram
columns). Its gradient touches only the rows of the batch's features, and
:class:`LazyAdam` updates only those rows, which keeps a training step cheap
however wide the input is.

Two families:

- ``default``: embedding bag → ReLU → dropout → (Dense → ReLU → dropout)* →
  softmax, trained with Adam and (soft-label) cross-entropy;
- ``seed``: the original talk's network, sigmoid hidden layers of 1000 and
  900, mean squared error on the softmax output, plain gradient descent.

A searched network may then be exported as a :class:`BlendedModel`: itself
plus a frozen logistic regression over the same input. A binary model is
exported inside :class:`PriorCorrected`, which calibrates its logits and moves
them to the class prior of the traffic it will serve.
"""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

from mlcycle.contracts.training import TrialParams  # noqa: E402


def _resource(variable: object) -> object:
    """The tf.Variable under a Keras variable, so that gathers read rows, not the matrix."""
    return getattr(variable, "value", variable)


@keras.saving.register_keras_serializable(package="mlcycle")
class WeightedBag(keras.layers.Layer):
    """``x @ W + b`` for a sparse ``x`` given as flat (ids, weights, rows)."""

    def __init__(self, input_dim: int, units: int, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.input_dim = int(input_dim)
        self.units = int(units)

    def build(self, input_shape: object = None) -> None:
        self.embeddings = self.add_weight(
            name="embeddings",
            shape=(self.input_dim, self.units),
            initializer=keras.initializers.RandomUniform(-0.05, 0.05),
        )
        self.bias = self.add_weight(name="bias", shape=(self.units,), initializer="zeros")

    def call(
        self,
        ids: tf.Tensor,
        weights: tf.Tensor,
        rows: tf.Tensor,
        n_rows: tf.Tensor,
        path: tf.Tensor | None = None,
    ) -> tf.Tensor:
        # Gather from the tf.Variable itself (a ResourceGather): converting the Keras
        # variable to a tensor first would read all of it, and the sparse update
        # that follows would then copy the whole matrix (TF's copy-on-write);
        # that copy was 80% of a training step.
        gathered = tf.gather(_resource(self.embeddings), ids) * tf.expand_dims(weights, -1)
        summed = tf.math.unsorted_segment_sum(gathered, rows, n_rows)
        if path is not None:
            summed = along_path(summed, path)
        return summed + self.bias

    def get_config(self) -> dict[str, object]:
        return {**super().get_config(), "input_dim": self.input_dim, "units": self.units}


def along_path(summed: tf.Tensor, path: tf.Tensor) -> tf.Tensor:
    """``[steps * rows, units]``: each row's bag sum scaled by each of ``path``'s factors.

    A bag is linear in the input's values, so scaling the values by ``alpha``
    scales its sum by ``alpha``: the straight path from the empty input to a row
    (integrated gradients, :mod:`mlcycle.trainer.explain_export`) costs one
    gather, not one per step. The gradient is that of the unscaled sum, so
    gradients with respect to the values are those at each point of the path.
    """
    fixed = tf.stop_gradient(summed)
    scaled = path[:, None, None] * fixed[None] + (summed - fixed)[None]
    return tf.reshape(scaled, [-1, tf.shape(summed)[1]])


def bag_inputs(inputs: dict[str, tf.Tensor]) -> tuple[tf.Tensor | None, ...]:
    """A bag's arguments from a model's inputs: flat ids, weights and rows, the row count,
    and the optional ``path`` (factors in [0, 1]) that asks for a row per factor per row."""
    return (inputs["ids"], inputs["weights"], inputs["rows"], inputs["n_rows"], inputs.get("path"))


class SparseMLP(keras.Model):
    """An MLP whose first layer reads flat sparse input; returns class logits."""

    def __init__(
        self,
        input_dim: int,
        n_classes: int,
        hidden: tuple[int, ...],
        *,
        activation: str = "relu",
        dropout: float = 0.0,
        wide: bool = False,
        **kwargs: object,
    ) -> None:
        super().__init__(**kwargs)
        self.bag = WeightedBag(input_dim, hidden[0], name="bag")
        # Wide & deep: a linear model of the sparse input added to the MLP's logits, so
        # the network keeps what a logistic regression on the n-grams knows.
        self.wide = WeightedBag(input_dim, n_classes, name="wide") if wide else None
        self.activation_name = activation
        self.hidden_layers = [
            keras.layers.Dense(units, name=f"hidden_{i + 1}") for i, units in enumerate(hidden[1:])
        ]
        self.dropout = keras.layers.Dropout(dropout) if dropout > 0 else None
        self.out = keras.layers.Dense(n_classes, name="logits")
        self.input_dim = int(input_dim)
        self.n_classes = int(n_classes)

    def call(self, inputs: dict[str, tf.Tensor], training: bool = False) -> tf.Tensor:
        act = keras.activations.get(self.activation_name)
        x = act(self.bag(*bag_inputs(inputs)))
        if self.dropout is not None:
            x = self.dropout(x, training=training)
        for layer in self.hidden_layers:
            x = act(layer(x))
            if self.dropout is not None:
                x = self.dropout(x, training=training)
        logits = self.out(x)
        if self.wide is not None:
            logits += self.wide(*bag_inputs(inputs))
        return logits


class BlendedModel(keras.Model):
    """A trained network and a fitted linear model of the same input, blended in logit space.

    ``logits = w * network(x) + (1 - w) * (x @ kernel + bias)``; the linear part
    is frozen (it was fitted outside Keras, see :mod:`mlcycle.trainer.linear`).
    """

    def __init__(
        self,
        network: SparseMLP,
        kernel: object,
        bias: object,
        network_weight: float,
        **kwargs: object,
    ) -> None:
        super().__init__(**kwargs)
        self.network = network
        self.input_dim = network.input_dim
        self.n_classes = network.n_classes
        self.network_weight = float(network_weight)
        self.linear = WeightedBag(self.input_dim, self.n_classes, name="linear", trainable=False)
        self.linear.build()
        self.linear.embeddings.assign(kernel)
        self.linear.bias.assign(bias)

    def call(self, inputs: dict[str, tf.Tensor], training: bool = False) -> tf.Tensor:
        network = self.network(inputs, training=training)
        linear = self.linear(*bag_inputs(inputs))
        return self.network_weight * network + (1.0 - self.network_weight) * linear


def correct_binary_logits(logits: tf.Tensor, scale: float, shift: float) -> tf.Tensor:
    """Two-class logits ``[batch, 2]`` whose softmax is ``sigmoid(scale * margin + shift)``.

    ``margin`` is the positive class's logit over the negative's, the logit of
    the positive probability. An affine map of it is how a calibration (Platt
    scaling) and a change of class prior (Saerens et al.) act on a binary model,
    so applying this to any model's logits before the softmax serves the
    corrected probability (see :mod:`mlcycle.trainer.thresholds`).
    """
    margin = logits[:, 1] - logits[:, 0]
    corrected = scale * margin + shift
    return tf.stack([tf.zeros_like(corrected), corrected], axis=-1)


class PriorCorrected(keras.Model):
    """A binary model whose logits are calibrated and moved to the traffic's class prior.

    ``scale`` and ``shift`` are constants of the exported graph
    (:func:`correct_binary_logits`), so the served ``scores`` are the corrected
    probabilities and nothing downstream needs to know about the correction.
    """

    def __init__(self, model: keras.Model, scale: float, shift: float, **kwargs: object) -> None:
        super().__init__(**kwargs)
        if model.n_classes != 2:
            raise ValueError(f"a prior correction needs a binary model, not {model.n_classes}")
        self.corrected = model
        self.input_dim = getattr(model, "input_dim", None)
        self.n_classes = 2
        self.scale = float(scale)
        self.shift = float(shift)

    def call(self, inputs: dict[str, tf.Tensor], training: bool = False) -> tf.Tensor:
        logits = self.corrected(inputs, training=training)
        return correct_binary_logits(logits, self.scale, self.shift)


# What training hands to evaluation and export: a network, or a network blended, either
# possibly with its binary logits corrected for calibration and the traffic's prior.
TrainedModel = SparseMLP | BlendedModel | PriorCorrected


class LazyAdam(keras.optimizers.Adam):
    """Adam that updates only the embedding rows a batch touched.

    Keras's Adam turns a sparse (IndexedSlices) gradient into a dense update
    of every moment, which for a 270k x 128 embedding costs 35M multiply-adds
    per step for the few thousand rows that changed. Here the moments and
    weights of untouched rows stay as they are (the classic "lazy" Adam of
    sparse models); dense gradients take Keras's own path.
    """

    def update_step(
        self, gradient: object, variable: keras.Variable, learning_rate: object
    ) -> None:
        if not isinstance(gradient, tf.IndexedSlices):
            return super().update_step(gradient, variable, learning_rate)
        ids, position = tf.unique(gradient.indices)
        grad = tf.math.unsorted_segment_sum(gradient.values, position, tf.shape(ids)[0])
        lr = tf.cast(learning_rate, variable.dtype)
        step = tf.cast(self.iterations + 1, variable.dtype)
        alpha = lr * tf.sqrt(1 - tf.pow(self.beta_2, step)) / (1 - tf.pow(self.beta_1, step))
        index = self._get_variable_index(variable)
        m, v = self._momentums[index], self._velocities[index]
        m_rows = self.beta_1 * tf.gather(_resource(m), ids) + (1 - self.beta_1) * grad
        v_rows = self.beta_2 * tf.gather(_resource(v), ids) + (1 - self.beta_2) * tf.square(grad)
        self.assign(m, tf.IndexedSlices(m_rows, ids))
        self.assign(v, tf.IndexedSlices(v_rows, ids))
        self.assign_sub(
            variable, tf.IndexedSlices(alpha * m_rows / (tf.sqrt(v_rows) + self.epsilon), ids)
        )
        return None


def build_model(params: TrialParams, input_dim: int, n_classes: int) -> SparseMLP:
    """The network ``params`` describe, built (weights created) for ``input_dim`` columns."""
    seed = params.preset == "seed"
    model = SparseMLP(
        input_dim,
        n_classes,
        params.layer_sizes(),
        activation="sigmoid" if seed else "relu",
        dropout=0.0 if seed else params.dropout,
        wide=params.wide and not seed,
    )
    # One call on an empty batch creates every weight, so saved weights can be loaded.
    model(
        {
            "ids": tf.zeros([0], tf.int32),
            "weights": tf.zeros([0], tf.float32),
            "rows": tf.zeros([0], tf.int32),
            "n_rows": tf.constant(1, tf.int32),
        }
    )
    return model


def build_optimizer(params: TrialParams) -> keras.optimizers.Optimizer:
    """Plain gradient descent for the seed, lazy Adam otherwise."""
    if params.preset == "seed":
        return keras.optimizers.SGD(learning_rate=params.learning_rate)
    return LazyAdam(learning_rate=params.learning_rate)


def loss_value(
    params: TrialParams, targets: tf.Tensor, logits: tf.Tensor, sample_weight: tf.Tensor
) -> tf.Tensor:
    """The weighted mean loss of a batch: MSE on probabilities for the seed, else cross-entropy."""
    if params.preset == "seed":
        per_row = tf.reduce_mean(tf.square(tf.nn.softmax(logits) - targets), axis=-1)
    else:
        per_row = tf.nn.softmax_cross_entropy_with_logits(labels=targets, logits=logits)
    return tf.reduce_sum(per_row * sample_weight) / tf.maximum(tf.reduce_sum(sample_weight), 1e-9)
