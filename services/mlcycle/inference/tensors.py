"""The model's inputs and outputs: padded CSR rows, TensorProtos built from raw bytes, and
the ``Predict`` request and answer that carry them.

The serving signature takes ``indices`` int64 ``[batch, width]`` and ``values``
float32 ``[batch, width]``: each text's non-zero columns and weights, padded
with zeros to the longest row (the model ignores entries whose value is 0).
An encoder version takes int32 ``token_ids`` and ``padding_mask`` instead
(:mod:`mlcycle.inference.tokens`). The ``explain`` signature takes the same
inputs as ``serving_default`` and answers an
:class:`~mlcycle.contracts.explanations.Explained` (:func:`read_explained`).

TensorProtos are written with ``tensor_content`` (the array's bytes, one copy)
rather than ``tf.make_tensor_proto``, which walks the values in Python; outputs
are read back with ``np.frombuffer`` when the server sends ``tensor_content``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from google.protobuf import wrappers_pb2
from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2
from tensorflow_serving.apis import model_pb2, predict_pb2

from mlcycle.common.errors import Unavailable
from mlcycle.contracts.explanations import EXPLAIN_SIGNATURE, Explained
from mlcycle.featurization.sparse import SparseBatch

SIGNATURE = "serving_default"
OUTPUT = "probabilities"
EXPLAIN_OUTPUTS = ("scores", "attributions", "baseline_scores")
_DTYPES = {
    np.dtype(np.int64): types_pb2.DT_INT64,
    np.dtype(np.float32): types_pb2.DT_FLOAT,
    np.dtype(np.int32): types_pb2.DT_INT32,  # token ids and padding masks
}
# Little-endian wire dtypes of the numeric outputs we read, and their typed value fields.
_READABLE = {
    types_pb2.DT_FLOAT: (np.dtype("<f4"), "float_val"),
    types_pb2.DT_DOUBLE: (np.dtype("<f8"), "double_val"),
    types_pb2.DT_INT64: (np.dtype("<i8"), "int64_val"),
    types_pb2.DT_INT32: (np.dtype("<i4"), "int_val"),
}


def padded_rows(batch: SparseBatch, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows ``start:stop`` of ``batch`` as (indices int64, values float32), both [n, width].

    ``width`` is the longest row's length (at least 1, so an all-empty batch is a
    valid input); shorter rows end in zeros.
    """
    indptr = batch.indptr[start : stop + 1]
    n = stop - start
    lengths = np.diff(indptr)
    width = max(1, int(lengths.max(initial=0)))
    indices = np.zeros((n, width), np.int64)
    values = np.zeros((n, width), np.float32)
    first, last = int(indptr[0]), int(indptr[-1])
    if last > first:
        rows = np.repeat(np.arange(n), lengths)
        # Position within its row of every non-zero: its offset minus its row's start.
        columns = np.arange(last - first) - np.repeat(indptr[:-1] - first, lengths)
        indices[rows, columns] = batch.indices[first:last]
        values[rows, columns] = batch.values[first:last]
    return indices, values


def to_tensor_proto(array: np.ndarray) -> tensor_pb2.TensorProto:
    """A TensorProto of an int64, float32 or int32 ``array``, its bytes in ``tensor_content``."""
    dtype = _DTYPES[array.dtype]
    shape = tensor_shape_pb2.TensorShapeProto(
        dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=size) for size in array.shape]
    )
    content = np.ascontiguousarray(array, array.dtype.newbyteorder("<")).tobytes()
    return tensor_pb2.TensorProto(dtype=dtype, tensor_shape=shape, tensor_content=content)


def from_tensor_proto(proto: tensor_pb2.TensorProto) -> np.ndarray:
    """A numeric output tensor as a numpy array (``tensor_content`` or the typed values field)."""
    readable = _READABLE.get(proto.dtype)
    if readable is None:
        name = types_pb2.DataType.Name(proto.dtype)
        raise Unavailable(f"the model server answered a {name} tensor where a number was expected")
    dtype, field = readable
    shape = tuple(dim.size for dim in proto.tensor_shape.dim)
    if proto.tensor_content:
        flat = np.frombuffer(proto.tensor_content, dtype)
    else:
        flat = np.asarray(getattr(proto, field), dtype)
        size = int(np.prod(shape)) if shape else 1
        if flat.size == 1 and size != 1:
            # TF Serving may send a tensor of identical values as a single value.
            flat = np.full(size, flat[0], dtype)
    try:
        return flat.reshape(shape)
    except ValueError as exc:
        raise Unavailable(f"the model server answered a malformed tensor: {exc}") from None


def predict_request(
    name: str, version: int, indices: np.ndarray, values: np.ndarray
) -> predict_pb2.PredictRequest:
    """TF Serving's ``PredictRequest`` pinned to ``version``, asking for the probabilities only."""
    return inputs_request(name, version, {"indices": indices, "values": values})


def inputs_request(
    name: str, version: int, inputs: Mapping[str, np.ndarray]
) -> predict_pb2.PredictRequest:
    """:func:`predict_request` with any named inputs (int64, float32 or int32 arrays)."""
    return signature_request(name, version, SIGNATURE, inputs, [OUTPUT])


def signature_request(
    name: str,
    version: int,
    signature: str,
    inputs: Mapping[str, np.ndarray],
    outputs: Sequence[str],
) -> predict_pb2.PredictRequest:
    """A ``PredictRequest`` of ``signature`` pinned to ``version``, asking for ``outputs``."""
    return predict_pb2.PredictRequest(
        model_spec=model_pb2.ModelSpec(
            name=name,
            signature_name=signature,
            version=wrappers_pb2.Int64Value(value=version),
        ),
        inputs={key: to_tensor_proto(array) for key, array in inputs.items()},
        output_filter=list(outputs),
    )


def read_probabilities(
    response: predict_pb2.PredictResponse, name: str, version: int, rows: int
) -> np.ndarray:
    """The ``[rows, classes]`` probabilities in a ``PredictResponse``; Unavailable if malformed."""
    if OUTPUT not in response.outputs:
        raise Unavailable(
            f"model {name} version {version} has no {OUTPUT!r} output",
            details={"outputs": sorted(response.outputs)},
        )
    probabilities = from_tensor_proto(response.outputs[OUTPUT])
    if probabilities.ndim != 2 or probabilities.shape[0] != rows:
        raise Unavailable(
            f"model {name} version {version} answered {OUTPUT} of shape "
            f"{list(probabilities.shape)} for {rows} rows"
        )
    return probabilities.astype(np.float32, copy=False)


def explain_request(
    name: str, version: int, indices: np.ndarray, values: np.ndarray
) -> predict_pb2.PredictRequest:
    """:func:`predict_request` for the ``explain`` signature, asking for its three outputs."""
    inputs = {"indices": indices, "values": values}
    return signature_request(name, version, EXPLAIN_SIGNATURE, inputs, EXPLAIN_OUTPUTS)


def read_explained(
    response: predict_pb2.PredictResponse, name: str, version: int, rows: int, width: int
) -> Explained:
    """The :class:`Explained` of ``rows`` rows of ``width`` entries; Unavailable if malformed.

    A model server that batches requests may pad the attributions to a wider batch
    mate's width; the extra columns are padding and are dropped.
    """
    missing = [key for key in EXPLAIN_OUTPUTS if key not in response.outputs]
    if missing:
        raise Unavailable(
            f"model {name} version {version} answered no {', '.join(missing)} to explain",
            details={"outputs": sorted(response.outputs)},
        )
    scores, attributions, baseline = (
        from_tensor_proto(response.outputs[key]).astype(np.float32, copy=False)
        for key in EXPLAIN_OUTPUTS
    )
    if (
        scores.shape != (rows,)
        or baseline.shape != (rows,)
        or attributions.ndim != 2
        or attributions.shape[0] != rows
        or attributions.shape[1] < width
    ):
        shapes = [list(a.shape) for a in (scores, attributions, baseline)]
        raise Unavailable(
            f"model {name} version {version} answered explanations of shapes {shapes} "
            f"for {rows} rows of {width} entries"
        )
    return Explained(scores=scores, attributions=attributions[:, :width], baseline_scores=baseline)
