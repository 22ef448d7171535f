"""SavedModels the model server tests serve: small, real, built with TensorFlow here.

- :func:`export_sparse_scorer`: a TF2 model with the signature mlcycle's models have
  (``indices`` int64 and ``values`` float32 ``[batch, width]`` in; ``probabilities``,
  ``scores``, ``classes`` out); ``bias`` shifts its scores so versions differ.
- :func:`export_generic`: a TF1 ``SavedModelBuilder`` model shaped like TF Serving's
  documented ``half_plus_three``, with signatures of every kind (predict with int,
  float and string inputs, classify, regress, a scalar output).
- :func:`write_warmup_requests`: TF Serving's warm-up file of PredictionLog records.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_log_pb2

from mlcycle.modelserver.tensors import to_tensor_proto

VOCAB = 1000
EMBED = 8


def export_sparse_scorer(path: Path, *, bias: float = 0.0, seed: int = 1) -> Path:
    """A ``serving_default`` over padded sparse rows, like the trainer's exports."""
    rng = np.random.default_rng(seed)

    class Scorer(tf.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embedding = tf.Variable(rng.normal(size=(VOCAB, EMBED)).astype(np.float32))
            self.weights = tf.Variable(rng.normal(size=(EMBED, 2)).astype(np.float32))
            self.bias = tf.Variable(np.array([0.0, bias], dtype=np.float32))

        @tf.function(
            input_signature=[
                tf.TensorSpec([None, None], tf.int64, name="indices"),
                tf.TensorSpec([None, None], tf.float32, name="values"),
            ]
        )
        def serve(self, indices: tf.Tensor, values: tf.Tensor) -> dict[str, tf.Tensor]:
            ids = tf.clip_by_value(indices, 0, VOCAB - 1)
            bag = tf.reduce_sum(tf.gather(self.embedding, ids) * values[..., None], axis=1)
            probabilities = tf.nn.softmax(bag @ self.weights + self.bias)
            return {
                "probabilities": probabilities,
                "scores": probabilities[:, 1],
                "classes": tf.argmax(probabilities, axis=-1),
            }

    module = Scorer()
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.serve})
    return path


def export_generic(path: Path) -> Path:
    """A TF1-style SavedModel shaped like TF Serving's documented ``half_plus_three``.

    Signatures: ``serving_default`` (``y = 0.5 x + 3``); ``tensorflow/serving/regress``
    and ``tensorflow/serving/classify`` on tf.Examples with a float feature ``x``
    (regression ``0.5 x + 3``; classes negative/positive scored ``1 - x/10``, ``x/10``);
    ``multi`` (float ``x``, int64 ``k [-1,3]``, string ``s`` in; ``y``, ``ksum``,
    ``upper`` and ``echo_bytes`` out); ``sensors`` (the REST doc's tag/signal/sensor
    inputs); ``matrix`` (``m [-1,1,2]`` doubled); ``upper`` (strings upper-cased);
    ``total`` (a scalar output: the sum of ``x``); ``scale`` (a scalar input:
    ``x * factor``).
    """
    v1 = tf.compat.v1
    graph = tf.Graph()
    with graph.as_default():
        x = v1.placeholder(tf.float32, [None], name="x")
        half = v1.Variable(0.5, name="half")
        y = x * half + 3.0
        serialized = v1.placeholder(tf.string, [None], name="examples")
        parsed = v1.io.parse_example(serialized, {"x": v1.io.FixedLenFeature([1], tf.float32)})
        fx = parsed["x"][:, 0]
        signatures = {
            "serving_default": _predict({"x": x}, {"y": y}),
            "tensorflow/serving/regress": v1.saved_model.regression_signature_def(
                serialized, fx * half + 3.0
            ),
            "tensorflow/serving/classify": v1.saved_model.classification_signature_def(
                serialized,
                tf.tile(tf.constant([["negative", "positive"]]), [tf.shape(fx)[0], 1]),
                tf.stack([1.0 - fx / 10.0, fx / 10.0], axis=1),
            ),
            "total": _predict({"x": x}, {"sum": tf.reduce_sum(x)}),
        }
        signatures.update(_more_signatures(x, y))
        with v1.Session(graph=graph) as session:
            session.run(v1.global_variables_initializer())
            builder = v1.saved_model.Builder(str(path))
            builder.add_meta_graph_and_variables(session, ["serve"], signature_def_map=signatures)
            builder.save()
    return path


def _predict(inputs: dict[str, tf.Tensor], outputs: dict[str, tf.Tensor]) -> object:
    return tf.compat.v1.saved_model.predict_signature_def(inputs, outputs)


def _more_signatures(x: tf.Tensor, y: tf.Tensor) -> dict[str, object]:
    v1 = tf.compat.v1
    k = v1.placeholder(tf.int64, [None, 3], name="k")
    s = v1.placeholder(tf.string, [None], name="s")
    tag = v1.placeholder(tf.string, [None], name="tag")
    signal = v1.placeholder(tf.int64, [None, 5], name="signal")
    sensor = v1.placeholder(tf.int64, [None, 2, 2], name="sensor")
    matrix = v1.placeholder(tf.float32, [None, 1, 2], name="m")
    text = v1.placeholder(tf.string, [None], name="text")
    factor = v1.placeholder(tf.float32, [], name="factor")
    return {
        "scale": _predict({"x": x, "factor": factor}, {"scaled": x * factor}),
        "multi": _predict(
            {"x": x, "k": k, "s": s},
            {
                "y": y,
                "ksum": tf.reduce_sum(k, axis=1),
                "upper": tf.strings.upper(s),
                "echo_bytes": tf.identity(s),
            },
        ),
        "sensors": _predict(
            {"tag": tag, "signal": signal, "sensor": sensor},
            {
                "tag": tf.strings.upper(tag),
                "signal_sum": tf.reduce_sum(signal, axis=1),
                "sensor_sum": tf.reduce_sum(sensor, axis=[1, 2]),
            },
        ),
        "matrix": _predict({"m": matrix}, {"doubled": matrix * 2.0}),
        "upper": _predict({"text": text}, {"upper": tf.strings.upper(text)}),
    }


def sparse_request(
    name: str, indices: np.ndarray, values: np.ndarray, **spec: object
) -> predict_pb2.PredictRequest:
    """A PredictRequest for the sparse scorer."""
    request = predict_pb2.PredictRequest()
    request.model_spec.name = name
    for field, value in spec.items():
        if field == "version":
            request.model_spec.version.value = int(value)  # type: ignore[call-overload]
        else:
            setattr(request.model_spec, field, value)
    request.inputs["indices"].CopyFrom(to_tensor_proto(np.asarray(indices, dtype=np.int64)))
    request.inputs["values"].CopyFrom(to_tensor_proto(np.asarray(values, dtype=np.float32)))
    return request


def write_warmup_requests(
    version_dir: Path, requests: Sequence[predict_pb2.PredictRequest]
) -> Path:
    """``assets.extra/tf_serving_warmup_requests`` with one predict_log per request."""
    target = version_dir / "assets.extra" / "tf_serving_warmup_requests"
    target.parent.mkdir(parents=True, exist_ok=True)
    with tf.io.TFRecordWriter(str(target)) as writer:
        for request in requests:
            log = prediction_log_pb2.PredictionLog()
            log.predict_log.request.CopyFrom(request)
            writer.write(log.SerializeToString())
    return target


def export_mlcycle_model(path: Path) -> Path:
    """An (untrained) model of the trainer's own kind, exported by the trainer's own code."""
    from mlcycle.trainer.export import export_saved_model
    from mlcycle.trainer.models import SparseMLP

    model = SparseMLP(VOCAB, 2, (8,))
    model(
        {
            "ids": tf.constant([1, 2], tf.int32),
            "weights": tf.constant([1.0, 0.5]),
            "rows": tf.constant([0, 0], tf.int32),
            "n_rows": tf.constant(1, tf.int32),
        }
    )
    export_saved_model(model, path)
    return path


def copy_version(source: Path, base: Path, version: int) -> Path:
    """Publish ``source`` as ``<base>/<version>/`` the way the trainer does: stage, then rename."""
    base.mkdir(parents=True, exist_ok=True)
    staging = base / f".candidate-{version}"
    shutil.copytree(source, staging)
    target = base / str(version)
    staging.rename(target)
    return target


def write_broken_version(base: Path, version: int) -> Path:
    """A version folder whose SavedModel is garbage."""
    target = base / str(version)
    target.mkdir(parents=True)
    (target / "saved_model.pb").write_bytes(b"this is not a SavedModel")
    return target
