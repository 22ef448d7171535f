"""The encoder variant as a SavedModel: token tensors in, the sparse models' outputs out.

The ``serving_default`` signature takes what the version's own tokenizer makes
of a batch of texts, padded to the batch's longest:

- ``token_ids`` int32 ``[batch, length]``: WordPiece ids, ``[CLS]`` first;
- ``padding_mask`` int32 ``[batch, length]``: 1 on real tokens, 0 on padding.

It answers ``probabilities``, ``scores`` and ``classes`` exactly as
:func:`mlcycle.trainer.export.export_saved_model` does, so the model server,
infra-validation and every client read it the same way. The version folder is
self-contained: ``assets/tokenizer.json`` is the tokenizer it was trained
with, and ``metadata.json`` says the input is tokens and names that file, its
sha256 and the maximum length (:func:`input_metadata`).

An encoder version has no ``explain`` signature, on purpose: the sparse models'
attributions are per entry of the featurizer's row, which the inference service
maps back to words (decision record 0018); an encoder reads WordPiece tokens
through a transformer, where integrated gradients would cost a forward and
backward pass of the whole encoder per step. Asked to explain, the model server
answers that the signature is not found, and the inference service a 409 naming
the version (:class:`~mlcycle.contracts.explanations.NotExplainable`).
"""

from __future__ import annotations

import shutil
import statistics
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TypedDict

import numpy as np

from mlcycle.common.errors import NotFound
from mlcycle.featurization.minilm import PINNED_SHA256, WEIGHTS, sha256_of
from mlcycle.featurization.tokens import TokenBatch, TokenEncoder
from mlcycle.trainer.encoder import EncoderClassifier
from mlcycle.trainer.export import METADATA, SIGNATURE, WARMUP_FILE, read_metadata
from mlcycle.trainer.models import tf

INPUT_KIND = "tokens"
LATENCY_TEXTS = 20
TOKENIZER_ASSET = "assets/tokenizer.json"
SIGNATURE_DOC = {
    "name": SIGNATURE,
    "inputs": {"token_ids": "int32 [batch, length]", "padding_mask": "int32 [batch, length]"},
    "outputs": {
        "probabilities": "float32 [batch, classes]",
        "scores": "float32 [batch]",
        "classes": "int64 [batch]",
    },
}


# (scale, shift): the served binary logit is ``scale * logit + shift``, an affine map that
# calibrates the scores and moves them to the traffic's class prior.
LogitMap = tuple[float, float]


def binary_logit(logits: tf.Tensor, logit_map: LogitMap | None = None) -> tf.Tensor:
    """The positive class's logit against the negative's, ``[batch]``, mapped by ``logit_map``.

    The one place the exported binary score is decided: a calibration or prior
    correction is the ``logit_map`` applied here.
    """
    margin = logits[:, 1] - logits[:, 0]
    if logit_map is None:
        return margin
    scale, shift = logit_map
    return scale * margin + shift


def mapped_probabilities(probabilities: np.ndarray, logit_map: LogitMap | None) -> np.ndarray:
    """Two-class probabilities moved by ``logit_map``, as the export answers them."""
    if logit_map is None:
        return probabilities
    scale, shift = logit_map
    positive = np.clip(probabilities[:, 1].astype(np.float64), 1e-12, 1 - 1e-12)
    moved = 1.0 / (1.0 + np.exp(-(scale * np.log(positive / (1.0 - positive)) + shift)))
    return np.stack([1.0 - moved, moved], axis=1).astype(np.float32)


def serving_outputs(
    logits: tf.Tensor, n_classes: int, logit_map: LogitMap | None = None
) -> dict[str, tf.Tensor]:
    """``probabilities``, ``scores`` and ``classes`` from class logits."""
    if n_classes == 2:
        positive = tf.sigmoid(binary_logit(logits, logit_map))  # the two-class softmax
        probabilities = tf.stack([1.0 - positive, positive], axis=-1)
        scores = positive
    else:
        probabilities = tf.nn.softmax(logits)
        scores = tf.reduce_max(probabilities, axis=-1)
    return {
        "probabilities": probabilities,
        "scores": scores,
        "classes": tf.argmax(probabilities, axis=-1),
    }


_TOKEN_SIGNATURE = [
    tf.TensorSpec([None, None], tf.int32, name="token_ids"),
    tf.TensorSpec([None, None], tf.int32, name="padding_mask"),
]


class _Exported(tf.Module):
    """The model and its serving function, as the SavedModel's root object.

    Saved with ``tf.saved_model.save`` rather than Keras's ExportArchive: the
    archive lists every variable twice (``variables`` and ``_all_variables``),
    which for MiniLM's 22.7M weights wrote 174 MB instead of 88 MB, and took
    five times longer to save and four times longer to load.
    """

    def __init__(self, model: EncoderClassifier, logit_map: LogitMap | None) -> None:
        super().__init__()
        self.model = model
        self.logit_map = None if logit_map is None else (float(logit_map[0]), float(logit_map[1]))

    @tf.function(input_signature=_TOKEN_SIGNATURE, autograph=False)
    def serve(self, token_ids: tf.Tensor, padding_mask: tf.Tensor) -> dict[str, tf.Tensor]:
        inputs = {"token_ids": token_ids, "padding_mask": padding_mask}
        logits = self.model(inputs, training=False)
        return serving_outputs(logits, self.model.n_classes, self.logit_map)


def export_encoder_saved_model(
    model: EncoderClassifier, path: Path, tokenizer: Path, logit_map: LogitMap | None = None
) -> None:
    """Write the encoder and its head as one SavedModel, its tokenizer in its assets.

    ``logit_map`` (binary models) is baked into the served scores (:func:`binary_logit`).
    """
    root = _Exported(model, logit_map)
    tf.saved_model.save(root, str(path), signatures={SIGNATURE: root.serve})
    target = path / TOKENIZER_ASSET
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(tokenizer, target)


class TokenInput(TypedDict):
    """``metadata.json``'s ``input`` block of a version that reads tokens."""

    kind: str
    tokenizer: str
    tokenizer_sha256: str
    max_length: int
    encoder: str
    weights_sha256: str


def input_metadata(path: Path, max_length: int) -> TokenInput:
    """What ``metadata.json`` says of the input: tokens, which tokenizer, how long at most."""
    return {
        "kind": INPUT_KIND,
        "tokenizer": TOKENIZER_ASSET,
        "tokenizer_sha256": sha256_of(path / TOKENIZER_ASSET),
        "max_length": int(max_length),
        "encoder": "all-MiniLM-L6-v2",
        "weights_sha256": PINNED_SHA256[WEIGHTS],
    }


def write_token_warmup_requests(path: Path, name: str, batch: TokenBatch) -> Path:
    """The warm-up file (see :func:`mlcycle.trainer.export.write_warmup_requests`) for tokens."""
    from tensorflow_serving.apis import predict_pb2, prediction_log_pb2

    target = path / WARMUP_FILE
    target.parent.mkdir(parents=True, exist_ok=True)
    n = len(batch.token_ids)
    with tf.io.TFRecordWriter(str(target)) as writer:
        for rows in sorted({1, n}):
            request = predict_pb2.PredictRequest()
            request.model_spec.name = name
            request.model_spec.signature_name = SIGNATURE
            for key, array in batch.rows(0, rows).inputs().items():
                request.inputs[key].CopyFrom(tf.make_tensor_proto(array, tf.int32))
            log = prediction_log_pb2.PredictionLog(
                predict_log=prediction_log_pb2.PredictLog(request=request)
            )
            writer.write(log.SerializeToString())
    return target


def is_token_model(metadata: Mapping[str, object]) -> bool:
    """True when a version's ``metadata.json`` says its input is tokens."""
    block = metadata.get("input")
    return isinstance(block, dict) and block.get("kind") == INPUT_KIND


class TokenServingModel:
    """An exported encoder version loaded for scoring texts with its own tokenizer."""

    def __init__(self, path: Path) -> None:
        if not (path / "saved_model.pb").is_file():
            raise NotFound(f"no SavedModel in {path}", details={"path": str(path)})
        metadata = read_metadata(path)
        if not is_token_model(metadata):
            raise NotFound(f"the {METADATA} in {path} does not describe a token input")
        block = metadata["input"]
        self.path = path
        self.tokens = TokenEncoder(path / block["tokenizer"], int(block["max_length"]))
        self._signature = tf.saved_model.load(str(path)).signatures[SIGNATURE]

    def probabilities_of(self, batch: TokenBatch) -> np.ndarray:
        """Class probabilities of one token batch."""
        inputs = {key: tf.constant(value, tf.int32) for key, value in batch.inputs().items()}
        return np.asarray(self._signature(**inputs)["probabilities"].numpy(), np.float32)

    def probabilities(self, texts: Sequence[str], batch_rows: int = 64) -> np.ndarray:
        """Class probabilities of ``texts``, tokenized and scored ``batch_rows`` at a time."""
        parts = [
            self.probabilities_of(self.tokens.encode(texts[start : start + batch_rows]))
            for start in range(0, len(texts), batch_rows)
        ]
        return np.concatenate(parts) if parts else np.empty((0, 2), np.float32)

    def single_predict_ms(self, texts: Sequence[str], repeats: int = 3) -> float:
        """p50 of one comment's predict (tokenizing and the signature call), in ms.

        Each text is scored alone ``repeats`` times after one untimed call, as a
        request that misses the cache is.
        """
        self.probabilities_of(self.tokens.encode([texts[0]]))
        timings = []
        for text in texts[:LATENCY_TEXTS]:
            for _ in range(repeats):
                started = time.perf_counter()
                self.probabilities_of(self.tokens.encode([text]))
                timings.append((time.perf_counter() - started) * 1000.0)
        return float(statistics.median(timings))
