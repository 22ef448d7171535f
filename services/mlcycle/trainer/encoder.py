"""The encoder variant's model: the shipped MiniLM and a small head over its sentence vector.

all-MiniLM-L6-v2 is a 6-layer, 384-wide BERT that sentence-transformers trained
to embed sentences: its sentence vector is the mean of its last hidden states
over the real (not padding) tokens. That vector already knows language, so a
small head trained on it learns the task from few examples, and it is cheap to
train: the frozen encoder runs once per text (:func:`encode_texts`), and the
head's epochs run over the cached vectors (:mod:`mlcycle.trainer.encoder_fit`).

The trained :class:`EncoderClassifier` is one Keras model from token tensors
to class logits, so the SavedModel export carries the encoder and the head
together (:mod:`mlcycle.trainer.encoder_export`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np

from mlcycle.featurization.tokens import TokenBatch, TokenEncoder
from mlcycle.trainer.models import keras, tf

# Texts per encoder call: big enough to keep both cores busy, small enough that a
# batch of long texts (64 x 128 tokens x 384 wide, per layer) stays a few tens of MB.
ENCODE_ROWS = 64
# Texts tokenized at once when encoding many: sorting them by length within a chunk
# this size keeps padding low, and the chunk's tokens stay a few MB.
TOKENIZE_CHUNK = 4096


def load_backbone(folder: Path) -> keras.Model:
    """The MiniLM encoder (keras-hub's BERT) from an extracted, verified MiniLM folder."""
    import keras_hub

    return keras_hub.models.BertBackbone.from_preset(str(folder))


def mean_pooled(sequence: tf.Tensor, padding_mask: tf.Tensor) -> tf.Tensor:
    """The mean of ``sequence`` over the real tokens: sentence-transformers' pooling."""
    mask = tf.cast(tf.expand_dims(padding_mask, -1), sequence.dtype)
    total = tf.reduce_sum(sequence * mask, axis=1)
    return total / tf.maximum(tf.reduce_sum(mask, axis=1), 1e-9)


def build_head(n_classes: int, hidden_units: int, dropout: float) -> keras.Sequential:
    """The trained part: (Dense → ReLU → dropout)? → Dense logits; linear for 0 hidden units."""
    layers: list[keras.layers.Layer] = []
    if hidden_units > 0:
        layers.append(keras.layers.Dense(hidden_units, activation="relu", name="head_hidden"))
        if dropout > 0:
            layers.append(keras.layers.Dropout(dropout, name="head_dropout"))
    layers.append(keras.layers.Dense(n_classes, name="head_logits"))
    return keras.Sequential(layers, name="head")


class EncoderClassifier(keras.Model):
    """Token tensors → MiniLM → masked mean → head → class logits."""

    def __init__(
        self, backbone: keras.Model, n_classes: int, hidden_units: int, dropout: float, **kwargs
    ) -> None:
        super().__init__(**kwargs)
        self.backbone = backbone
        self.head = build_head(n_classes, hidden_units, dropout)
        self.n_classes = int(n_classes)
        self.width = int(backbone.hidden_dim)
        # One call builds every weight (and the model, which export requires).
        self({"token_ids": tf.zeros([1, 2], tf.int32), "padding_mask": tf.ones([1, 2], tf.int32)})

    def pooled(self, token_ids: tf.Tensor, padding_mask: tf.Tensor, training: bool = False):
        """The sentence vector of each row, ``[batch, 384]``."""
        token_ids = tf.convert_to_tensor(token_ids, tf.int32)
        padding_mask = tf.convert_to_tensor(padding_mask, tf.int32)
        out = self.backbone(
            {
                "token_ids": token_ids,
                "segment_ids": tf.zeros_like(token_ids),
                "padding_mask": padding_mask,
            },
            training=training,
        )
        return mean_pooled(out["sequence_output"], padding_mask)

    def call(self, inputs: dict[str, tf.Tensor], training: bool = False) -> tf.Tensor:
        pooled = self.pooled(inputs["token_ids"], inputs["padding_mask"], training=training)
        return self.head(pooled, training=training)

    @property
    def _default_save_signature(self) -> None:
        # Keras would trace a default signature with float inputs while saving; the
        # export declares the real one (int32 tokens), so there is none to add here.
        return None

    def freeze_below(self, trainable_layers: int) -> None:
        """Freeze the encoder except its top ``trainable_layers`` transformer layers."""
        self.backbone.trainable = trainable_layers > 0
        if trainable_layers <= 0:
            return
        top = set(map(id, self.backbone.transformer_layers[-trainable_layers:]))
        for layer in self.backbone.layers:
            if id(layer) not in top:
                layer.trainable = False


TOKENS_SPEC = [tf.TensorSpec([None, None], tf.int32), tf.TensorSpec([None, None], tf.int32)]


def _pooling(model: EncoderClassifier) -> Callable[[tf.Tensor, tf.Tensor], tf.Tensor]:
    cached = getattr(model, "_mlcycle_pool", None)
    if cached is None:
        cached = tf.function(
            lambda ids, mask: model.pooled(ids, mask, training=False),
            input_signature=TOKENS_SPEC,
            autograph=False,
        )
        model._mlcycle_pool = cached
    return cached


def _length_batches(
    tokens: TokenEncoder, texts: Sequence[str]
) -> Iterator[tuple[np.ndarray, TokenBatch]]:
    """``(positions, token batch)`` over ``texts`` in batches of similar length (less padding).

    Texts are tokenized a chunk at a time, so memory stays bounded however many
    there are; within a chunk they are sorted by length.
    """
    for first in range(0, len(texts), TOKENIZE_CHUNK):
        batch = tokens.encode(texts[first : first + TOKENIZE_CHUNK])
        order = np.argsort(batch.padding_mask.sum(axis=1), kind="stable")
        for start in range(0, len(order), ENCODE_ROWS):
            rows = order[start : start + ENCODE_ROWS]
            mask = batch.padding_mask[rows]
            width = max(1, int(mask.sum(axis=1).max(initial=0)))
            yield first + rows, TokenBatch(batch.token_ids[rows, :width], mask[:, :width])


def encode_texts(
    model: EncoderClassifier, tokens: TokenEncoder, texts: Sequence[str]
) -> np.ndarray:
    """The frozen sentence vector of every text, ``float32 [n, 384]``, in order."""
    out = np.zeros((len(texts), model.width), np.float32)
    pool = _pooling(model)
    for rows, batch in _length_batches(tokens, texts):
        out[rows] = pool(tf.constant(batch.token_ids), tf.constant(batch.padding_mask)).numpy()
    return out


def predict_texts(
    model: EncoderClassifier, tokens: TokenEncoder, texts: Sequence[str]
) -> np.ndarray:
    """Softmax probabilities of ``texts`` through the whole model, in order."""
    if not texts:
        return np.empty((0, model.n_classes), np.float32)
    return head_probabilities(model, encode_texts(model, tokens, texts))


def head_probabilities(model: EncoderClassifier, pooled: np.ndarray) -> np.ndarray:
    """Softmax probabilities of the head over precomputed sentence vectors."""
    if len(pooled) == 0:
        return np.empty((0, model.n_classes), np.float32)
    return np.asarray(tf.nn.softmax(model.head(pooled, training=False)).numpy(), np.float32)
