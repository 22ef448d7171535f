"""``TensorProto`` to numpy and back, on the hot path of every gRPC call.

Requests are read without TensorFlow: ``tensor_content`` with ``np.frombuffer``
(no copy), typed value fields (``float_val``, ``int64_val``, ...) with
``np.asarray``, following TensorFlow's own rules: an empty value list means
zeros, a shorter one is padded with its last value. Responses are written with
``tensor_content`` (strings with ``string_val``, the only way TensorProto
carries them). ``tf.make_ndarray`` / ``tf.make_tensor_proto`` are the fallback
for dtypes numpy has no native type for (bfloat16, quantized types).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from tensorflow.core.framework import tensor_pb2, types_pb2

from mlcycle.common.errors import InvalidInput

DT_STRING = types_pb2.DT_STRING

# Every DataType numpy represents natively, with the TensorProto field its values use.
_NUMPY_BY_DTYPE: dict[int, np.dtype[Any]] = {
    types_pb2.DT_FLOAT: np.dtype(np.float32),
    types_pb2.DT_DOUBLE: np.dtype(np.float64),
    types_pb2.DT_INT32: np.dtype(np.int32),
    types_pb2.DT_UINT8: np.dtype(np.uint8),
    types_pb2.DT_INT16: np.dtype(np.int16),
    types_pb2.DT_INT8: np.dtype(np.int8),
    types_pb2.DT_UINT16: np.dtype(np.uint16),
    types_pb2.DT_INT64: np.dtype(np.int64),
    types_pb2.DT_UINT32: np.dtype(np.uint32),
    types_pb2.DT_UINT64: np.dtype(np.uint64),
    types_pb2.DT_BOOL: np.dtype(np.bool_),
    types_pb2.DT_HALF: np.dtype(np.float16),
    types_pb2.DT_COMPLEX64: np.dtype(np.complex64),
    types_pb2.DT_COMPLEX128: np.dtype(np.complex128),
    types_pb2.DT_STRING: np.dtype(object),
}
_VALUE_FIELD: dict[int, str] = {
    types_pb2.DT_FLOAT: "float_val",
    types_pb2.DT_DOUBLE: "double_val",
    types_pb2.DT_INT32: "int_val",
    types_pb2.DT_UINT8: "int_val",
    types_pb2.DT_INT16: "int_val",
    types_pb2.DT_INT8: "int_val",
    types_pb2.DT_UINT16: "int_val",
    types_pb2.DT_INT64: "int64_val",
    types_pb2.DT_UINT32: "uint32_val",
    types_pb2.DT_UINT64: "uint64_val",
    types_pb2.DT_BOOL: "bool_val",
    types_pb2.DT_HALF: "half_val",
    types_pb2.DT_COMPLEX64: "scomplex_val",
    types_pb2.DT_COMPLEX128: "dcomplex_val",
    types_pb2.DT_STRING: "string_val",
}
_DTYPE_BY_NUMPY: dict[np.dtype[Any], int] = {
    dt: enum for enum, dt in _NUMPY_BY_DTYPE.items() if enum != DT_STRING
}
# Complex values travel as (real, imaginary) pairs of this component type.
_COMPLEX_PARTS = {types_pb2.DT_COMPLEX64: np.float32, types_pb2.DT_COMPLEX128: np.float64}


def dtype_name(dtype: int) -> str:
    """``DT_FLOAT`` for 1: the name TF Serving uses in messages and JSON."""
    try:
        return types_pb2.DataType.Name(dtype)
    except ValueError:
        return f"DataType({dtype})"


def numpy_dtype(dtype: int) -> np.dtype[Any] | None:
    """The numpy dtype of a DataType (object for strings), None when numpy has none."""
    return _NUMPY_BY_DTYPE.get(dtype)


def dtype_of(array: np.ndarray) -> int:
    """The DataType of a numpy array: text and bytes arrays are DT_STRING."""
    if array.dtype.kind in "OSU":
        return DT_STRING
    dtype = _DTYPE_BY_NUMPY.get(array.dtype)
    if dtype is None:
        import tensorflow as tf

        return int(tf.as_dtype(array.dtype).as_datatype_enum)
    return dtype


def shape_of(tensor: tensor_pb2.TensorProto) -> tuple[int, ...]:
    """The shape a TensorProto declares."""
    return tuple(dim.size for dim in tensor.tensor_shape.dim)


# -- TensorProto to numpy -----------------------------------------------------------------------


def to_ndarray(tensor: tensor_pb2.TensorProto, name: str = "tensor") -> np.ndarray:
    """The numpy array ``tensor`` holds; InvalidInput naming ``name`` if it is inconsistent."""
    dtype = tensor.dtype
    shape = shape_of(tensor)
    if any(size < 0 for size in shape):
        raise InvalidInput(f"{name}: shape {list(shape)} has a negative dimension")
    np_dtype = _NUMPY_BY_DTYPE.get(dtype)
    if np_dtype is None:
        return _fallback_to_ndarray(tensor, name)
    count = math.prod(shape)
    if tensor.tensor_content and dtype != DT_STRING:
        flat = np.frombuffer(tensor.tensor_content, dtype=np_dtype)
        if flat.size != count:
            raise InvalidInput(
                f"{name}: tensor_content holds {flat.size} values of {dtype_name(dtype)} "
                f"but shape {list(shape)} needs {count}"
            )
        return flat.reshape(shape)
    return _from_value_field(tensor, dtype, np_dtype, shape, count, name)


def _from_value_field(
    tensor: tensor_pb2.TensorProto,
    dtype: int,
    np_dtype: np.dtype[Any],
    shape: tuple[int, ...],
    count: int,
    name: str,
) -> np.ndarray:
    values = getattr(tensor, _VALUE_FIELD[dtype])
    if dtype == DT_STRING:
        flat = np.empty(len(values), dtype=object)
        flat[:] = list(values)
    elif dtype == types_pb2.DT_HALF:
        # half_val holds each float16's bit pattern in an int32.
        flat = np.asarray(values, dtype=np.uint16).view(np.float16)
    elif dtype in _COMPLEX_PARTS:
        flat = np.asarray(values, dtype=_COMPLEX_PARTS[dtype]).view(np_dtype)
    else:
        flat = np.asarray(values, dtype=np_dtype)
    if flat.size == count:
        return flat.reshape(shape)
    if flat.size > count:
        raise InvalidInput(
            f"{name}: {flat.size} values of {dtype_name(dtype)} do not fit shape {list(shape)}"
        )
    # TensorFlow's rule: no values means all zeros (empty strings), fewer values are
    # padded with the last one, so [7] with shape [3] is [7, 7, 7].
    if flat.size == 0:
        filled = np.full(count, b"" if dtype == DT_STRING else 0, dtype=np_dtype)
    else:
        filled = np.concatenate([flat, np.repeat(flat[-1:], count - flat.size)])
    return filled.reshape(shape)


def _fallback_to_ndarray(tensor: tensor_pb2.TensorProto, name: str) -> np.ndarray:
    import tensorflow as tf

    try:
        return np.asarray(tf.make_ndarray(tensor))
    except Exception as exc:  # TensorFlow says why in its own words; the caller's input
        raise InvalidInput(
            f"{name}: cannot read a {dtype_name(tensor.dtype)} tensor: {exc}"
        ) from None


# -- numpy to TensorProto -----------------------------------------------------------------------


def fill_tensor(out: tensor_pb2.TensorProto, array: np.ndarray) -> None:
    """Write ``array`` into the (empty) TensorProto ``out`` in place."""
    dtype = dtype_of(array)
    if dtype != DT_STRING and array.dtype not in _DTYPE_BY_NUMPY:
        import tensorflow as tf

        out.CopyFrom(tf.make_tensor_proto(array))
        return
    out.dtype = dtype
    dims = out.tensor_shape.dim
    for size in array.shape:
        dims.add().size = size
    if dtype == DT_STRING:
        out.string_val.extend(_as_bytes(value) for value in array.ravel().tolist())
    else:
        out.tensor_content = np.ascontiguousarray(array).tobytes()


def to_tensor_proto(array: Any) -> tensor_pb2.TensorProto:
    """A new TensorProto holding ``array`` (anything ``np.asarray`` accepts)."""
    out = tensor_pb2.TensorProto()
    fill_tensor(out, np.asarray(array))
    return out


def _as_bytes(value: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8")
    return str(value).encode("utf-8")
