"""SavedModel export, its warm-up requests and its lineage file.

The ``serving_default`` signature takes the featurizer's output as two dense
tensors, one row per text, padded to the batch's longest row:

- ``indices`` int64 ``[batch, width]``: column ids of the text's n-grams;
- ``values`` float32 ``[batch, width]``: their weights; padding is value 0.

That shape travels through TF Serving's row format (``{"instances":
[{"indices": [...], "values": [...]}]}``) and its gRPC ``Predict`` alike.
Outputs: ``probabilities`` ``[batch, classes]``, ``scores`` ``[batch]`` (the
positive class for binary tasks, the top class's probability otherwise) and
``classes`` ``[batch]`` (argmax).

The ``explain`` signature (:data:`EXPLAIN_SIGNATURE`, built in
:mod:`mlcycle.trainer.explain_export`) takes the same inputs and answers
``scores`` (as above), ``attributions`` ``[batch, width]`` (integrated gradients
of the score with respect to ``values``; 0 on padding) and ``baseline_scores``
``[batch]`` (the score of the empty input). Every version of the sparse models
has it; an encoder version (:mod:`mlcycle.trainer.encoder_export`) does not.

Exports are staged under ``<models>/<name>/.candidate-<version>/`` — TF
Serving only looks at numeric folders — and renamed to ``<version>/`` when
blessed, so no model server ever sees a half-written or unblessed model.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from mlcycle.common.errors import NotFound
from mlcycle.common.files import write_atomically
from mlcycle.contracts.explanations import EXPLAIN_SIGNATURE, Explained, NotExplainable
from mlcycle.trainer.explain_export import explain_function, present_entries
from mlcycle.trainer.model_dirs import serving_dir, staging_dir
from mlcycle.trainer.models import TrainedModel, keras, tf

METADATA = "metadata.json"
# TF Serving replays these PredictionLog records before it marks a version AVAILABLE.
WARMUP_FILE = Path("assets.extra") / "tf_serving_warmup_requests"
SIGNATURE = "serving_default"


def allocate_version(models: Path, name: str, at_least: int) -> int:
    """Claim the first free version from ``at_least`` by creating its staging folder.

    ``mkdir`` is atomic, so two jobs exporting at once never share a version.
    """
    version = at_least
    (models / name).mkdir(parents=True, exist_ok=True)
    while True:
        if not serving_dir(models, name, version).exists():
            try:
                staging_dir(models, name, version).mkdir()
                return version
            except FileExistsError:
                pass
        version += 1


def export_saved_model(model: TrainedModel, path: Path) -> None:
    """Write ``model`` as a SavedModel with the padded-sparse ``serving_default`` signature
    and its ``explain`` signature."""
    binary = model.n_classes == 2

    def probabilities_of(
        indices: tf.Tensor, values: tf.Tensor, present: tf.Tensor, path: tf.Tensor | None = None
    ) -> tf.Tensor:
        where = tf.where(present)
        inputs = {
            "ids": tf.cast(tf.gather_nd(indices, where), tf.int32),
            "weights": tf.gather_nd(values, where),
            "rows": tf.cast(where[:, 0], tf.int32),
            "n_rows": tf.shape(indices, out_type=tf.int32)[0],
        }
        if path is not None:  # one row per point of the path per row (see explain_export)
            inputs["path"] = path
        return tf.nn.softmax(model(inputs, training=False))

    def serve(indices: tf.Tensor, values: tf.Tensor) -> dict[str, tf.Tensor]:
        probabilities = probabilities_of(indices, values, present_entries(indices, values))
        scores = probabilities[:, 1] if binary else tf.reduce_max(probabilities, axis=-1)
        return {
            "probabilities": probabilities,
            "scores": scores,
            "classes": tf.argmax(probabilities, axis=-1),
        }

    inputs = [
        tf.TensorSpec([None, None], tf.int64, name="indices"),
        tf.TensorSpec([None, None], tf.float32, name="values"),
    ]
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(name=SIGNATURE, fn=serve, input_signature=inputs)
    archive.add_endpoint(
        name=EXPLAIN_SIGNATURE,
        fn=explain_function(probabilities_of, binary=binary),
        input_signature=inputs,
    )
    archive.write_out(str(path), verbose=False)


def write_warmup_requests(path: Path, name: str, indices: np.ndarray, values: np.ndarray) -> Path:
    """Predict requests the model server replays before serving the version.

    TF Serving (and mlcycle's model server) read ``assets.extra/tf_serving_warmup_requests``,
    a TFRecord file of PredictionLog protos, so the first real request does not pay for
    graph tracing and memory allocation. One request per batch size a client is likely
    to send (a single row, then the whole sample) for each signature: ``serving_default``
    and ``explain``.
    """
    from tensorflow_serving.apis import predict_pb2, prediction_log_pb2

    target = path / WARMUP_FILE
    target.parent.mkdir(parents=True, exist_ok=True)
    with tf.io.TFRecordWriter(str(target)) as writer:
        for signature in (SIGNATURE, EXPLAIN_SIGNATURE):
            for rows in sorted({1, len(indices)}):
                request = predict_pb2.PredictRequest()
                request.model_spec.name = name
                request.model_spec.signature_name = signature
                for key, array, dtype in (
                    ("indices", indices[:rows], tf.int64),
                    ("values", values[:rows], tf.float32),
                ):
                    request.inputs[key].CopyFrom(tf.make_tensor_proto(array, dtype))
                log = prediction_log_pb2.PredictionLog(
                    predict_log=prediction_log_pb2.PredictLog(request=request)
                )
                writer.write(log.SerializeToString())
    return target


def write_metadata(path: Path, metadata: dict[str, Any]) -> Path:
    """``metadata.json`` next to the SavedModel: the model's lineage."""
    target = path / METADATA
    write_atomically(target, json.dumps(metadata, indent=1, sort_keys=True).encode("utf-8"))
    return target


def read_metadata(path: Path) -> dict[str, Any]:
    """The lineage of the model in ``path``."""
    target = path / METADATA
    if not target.is_file():
        raise NotFound(f"no {METADATA} in {path}", details={"path": str(path)})
    return dict(json.loads(target.read_text(encoding="utf-8")))


class ServingModel:
    """A SavedModel loaded for scoring: padded (indices, values) in, probabilities out."""

    def __init__(self, path: Path) -> None:
        if not (path / "saved_model.pb").is_file():
            raise NotFound(f"no SavedModel in {path}", details={"path": str(path)})
        self.path = path
        self._loaded = tf.saved_model.load(str(path))
        self._signature = self._loaded.signatures[SIGNATURE]

    def probabilities(self, indices: np.ndarray, values: np.ndarray) -> np.ndarray:
        out = self._signature(
            indices=tf.constant(indices, tf.int64), values=tf.constant(values, tf.float32)
        )
        return np.asarray(out["probabilities"].numpy(), np.float32)

    def explain(self, indices: np.ndarray, values: np.ndarray) -> Explained:
        """The ``explain`` signature's answer for these rows; NotExplainable without one."""
        signature = self._loaded.signatures.get(EXPLAIN_SIGNATURE)
        if signature is None:
            raise NotExplainable(
                f"the SavedModel in {self.path} has no {EXPLAIN_SIGNATURE!r} signature",
                details={"path": str(self.path)},
            )
        out = signature(
            indices=tf.constant(indices, tf.int64), values=tf.constant(values, tf.float32)
        )
        return Explained(
            scores=np.asarray(out["scores"].numpy(), np.float32),
            attributions=np.asarray(out["attributions"].numpy(), np.float32),
            baseline_scores=np.asarray(out["baseline_scores"].numpy(), np.float32),
        )
