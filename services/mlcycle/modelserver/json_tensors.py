"""JSON to numpy and back, as TF Serving's REST API reads and writes tensors.

Requests come in the row format (``{"instances": [...]}``: one item per batch
row, an object per row when the signature has several inputs, the bare value
when it has one) or the columnar format (``{"inputs": ...}``: one value per
input, or the bare value for a single input). The signature's dtypes decide
how JSON values are read: integers only for integer tensors, any number for
float tensors, ``true``/``false`` for bool, strings or ``{"b64": "..."}`` for
DT_STRING.

Answers follow the request's format: ``{"predictions": ...}`` (a list of
values per row with one output, a list of objects with several) or
``{"outputs": ...}`` (the value, or an object by output name). String outputs
whose name ends in ``_bytes`` are written as ``{"b64": ...}``, as are strings
that are not UTF-8. Floats are written in their shortest round-trip form, and
NaN and infinities as the ``NaN``/``Infinity`` tokens TF Serving uses.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import orjson

from mlcycle.common.errors import InvalidInput
from mlcycle.modelserver.tensors import DT_STRING, dtype_name, numpy_dtype

ROW = "row"
COLUMNAR = "columnar"
B64 = "b64"
BYTES_SUFFIX = "_bytes"
_FLOAT_KINDS = "f"
_INT_KINDS = "iu"


def loads(body: bytes) -> Any:
    """Parse a request body; the NaN/Infinity tokens TF Serving accepts are allowed."""
    if not body.strip():
        raise InvalidInput("JSON Parse error: The document is empty")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        pass
    try:  # the standard library reads NaN, Infinity and -Infinity; orjson does not
        return json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise InvalidInput(f"JSON Parse error: {exc}") from None


def is_b64(value: Any) -> bool:
    """True for ``{"b64": "<base64>"}``, the JSON form of binary strings."""
    return isinstance(value, dict) and len(value) == 1 and isinstance(value.get(B64), str)


# -- JSON values to arrays ----------------------------------------------------------------------


def to_array(value: Any, dtype: int, where: str) -> np.ndarray:
    """The tensor of ``dtype`` that the JSON ``value`` denotes; InvalidInput names ``where``."""
    if dtype == DT_STRING:
        return _string_array(value, where)
    target = numpy_dtype(dtype)
    if target is None:
        raise InvalidInput(f"{where}: {dtype_name(dtype)} tensors cannot be given in JSON")
    try:
        array = np.asarray(value)
    except (ValueError, TypeError):
        raise InvalidInput(
            f"{where}: the lists are ragged; every list at one depth must have the same length"
        ) from None
    return _cast(array, target, dtype, where)


def _cast(array: np.ndarray, target: np.dtype[Any], dtype: int, where: str) -> np.ndarray:
    kind = array.dtype.kind
    if array.size == 0:
        return array.astype(target)
    if target.kind == "b":
        if kind != "b":
            raise _type_error(where, dtype, "true or false")
        return array
    if kind == "b" or kind not in _INT_KINDS + _FLOAT_KINDS:
        raise _type_error(where, dtype, "numbers")
    if target.kind in _INT_KINDS:
        if kind in _FLOAT_KINDS:
            raise _type_error(where, dtype, "whole numbers")
        info = np.iinfo(target)
        if array.min() < info.min or array.max() > info.max:
            raise InvalidInput(f"{where}: a value is out of range for {dtype_name(dtype)}")
        return array.astype(target)
    with np.errstate(over="ignore"):  # an overflow is reported below, in words
        cast = array.astype(target)
    if target.kind == "f" and np.isinf(cast).any() and not np.isinf(array).any():
        raise InvalidInput(
            f"{where}: a value cannot be converted to {dtype_name(dtype)} without loss of precision"
        )
    return cast


def _type_error(where: str, dtype: int, expected: str) -> InvalidInput:
    return InvalidInput(f"{where}: {dtype_name(dtype)} values must be JSON {expected}")


def _string_array(value: Any, where: str) -> np.ndarray:
    shape: list[int] = []
    flat: list[bytes] = []
    _walk_strings(value, 0, shape, flat, where)
    array = np.empty(len(flat), dtype=object)
    array[:] = flat
    return array.reshape(shape)


def _walk_strings(value: Any, depth: int, shape: list[int], flat: list[bytes], where: str) -> None:
    if isinstance(value, list):
        if depth == len(shape):
            if flat:  # a list where an earlier branch had a leaf
                raise InvalidInput(f"{where}: the lists are ragged")
            shape.append(len(value))
        elif depth > len(shape) or shape[depth] != len(value):
            raise InvalidInput(
                f"{where}: the lists are ragged; every list at one depth must have the same length"
            )
        for item in value:
            _walk_strings(item, depth + 1, shape, flat, where)
        return
    if depth != len(shape):
        raise InvalidInput(f"{where}: the lists are ragged")
    flat.append(_string_value(value, where))


def _string_value(value: Any, where: str) -> bytes:
    if isinstance(value, str):
        return value.encode("utf-8")
    if is_b64(value):
        try:
            return base64.b64decode(value[B64], validate=True)
        except (binascii.Error, ValueError):
            raise InvalidInput(f"{where}: the b64 value is not valid base64") from None
    raise InvalidInput(f'{where}: DT_STRING values must be JSON strings or {{"b64": "..."}}')


# -- request bodies to named arrays ------------------------------------------------------------


def request_inputs(
    body: Mapping[str, Any], input_dtypes: Mapping[str, int]
) -> tuple[dict[str, np.ndarray], str]:
    """The named input arrays of a predict body, and its format (ROW or COLUMNAR)."""
    has_rows, has_columns = "instances" in body, "inputs" in body
    if has_rows and has_columns:
        raise InvalidInput("the body must have only one of 'instances' or 'inputs'")
    if has_rows:
        return _rows(body["instances"], input_dtypes), ROW
    if has_columns:
        return _columns(body["inputs"], input_dtypes), COLUMNAR
    raise InvalidInput("Missing 'inputs' or 'instances' key")


def _rows(instances: Any, input_dtypes: Mapping[str, int]) -> dict[str, np.ndarray]:
    if not isinstance(instances, list):
        raise InvalidInput("'instances' must be a list")
    if not instances:
        raise InvalidInput("No values in 'instances' array")
    named = isinstance(instances[0], dict) and not is_b64(instances[0])
    if not named:
        if len(input_dtypes) > 1:
            raise InvalidInput(
                "instances is a plain list, but expecting list of objects as multiple input "
                f"tensors required as per the signature: {', '.join(sorted(input_dtypes))}"
            )
        name, dtype = next(iter(input_dtypes.items()))
        for position, item in enumerate(instances):
            if isinstance(item, dict) and not is_b64(item):
                raise InvalidInput(f"Expecting value/list but got object at item {position}")
        return {name: to_array(instances, dtype, f"'instances' (input {name})")}
    expected = set(input_dtypes)
    for position, item in enumerate(instances):
        if not isinstance(item, dict) or is_b64(item):
            raise InvalidInput(f"Expecting object but got list at item {position} of input list")
        if set(item) != expected:
            raise InvalidInput(
                f"instances[{position}] has keys {sorted(item)}; the keys must be equal to the "
                f"signature's inputs {sorted(expected)}"
            )
    return {
        name: to_array([item[name] for item in instances], dtype, f"input {name}")
        for name, dtype in input_dtypes.items()
    }


def _columns(inputs: Any, input_dtypes: Mapping[str, int]) -> dict[str, np.ndarray]:
    if not isinstance(inputs, dict) or is_b64(inputs):
        if len(input_dtypes) > 1:
            raise InvalidInput(
                "inputs is a plain value/list, but expecting an object as multiple input "
                f"tensors required as per the signature: {', '.join(sorted(input_dtypes))}"
            )
        name, dtype = next(iter(input_dtypes.items()))
        return {name: to_array(inputs, dtype, f"'inputs' (input {name})")}
    arrays = {}
    for name, dtype in input_dtypes.items():
        if name not in inputs:
            raise InvalidInput(f"Missing named input: {name} in 'inputs' object.")
        arrays[name] = to_array(inputs[name], dtype, f"input {name}")
    return arrays


# -- arrays to response bodies -----------------------------------------------------------------


def response_body(outputs: Mapping[str, np.ndarray], fmt: str) -> bytes:
    """The JSON body answering a predict request of format ``fmt``."""
    if not outputs:
        raise InvalidInput("Cannot convert empty tensor map to JSON")
    values = {name: _json_ready(name, array) for name, array in sorted(outputs.items())}
    if fmt == ROW:
        body: dict[str, Any] = {"predictions": _row_values(outputs, values)}
    elif len(values) == 1:
        body = {"outputs": next(iter(values.values()))}
    else:
        body = {"outputs": values}
    return dumps(body)


def _row_values(outputs: Mapping[str, np.ndarray], values: dict[str, Any]) -> Any:
    batch = None
    for name, array in sorted(outputs.items()):
        if array.ndim == 0:
            raise InvalidInput(
                f"output {name} is a scalar; the row format ('instances') needs a batch "
                "dimension on every output: use the columnar format ('inputs')"
            )
        if batch is not None and array.shape[0] != batch:
            raise InvalidInput(
                f"output {name} has batch size {array.shape[0]}, expecting {batch}: use the "
                "columnar format ('inputs') for outputs of different batch sizes"
            )
        batch = array.shape[0]
    if len(values) == 1:
        return next(iter(values.values()))
    return [{name: value[row] for name, value in values.items()} for row in range(batch or 0)]


def _json_ready(name: str, array: np.ndarray) -> Any:
    """Numeric arrays stay numpy (orjson writes them); strings become nested lists."""
    if array.dtype.kind in "OSU":
        as_b64 = name.endswith(BYTES_SUFFIX)
        encode = np.frompyfunc(lambda v: _encode_string(v, as_b64), 1, 1)
        return encode(array).tolist() if array.ndim else _encode_string(array.item(), as_b64)
    if array.dtype.kind == "c":
        raise InvalidInput(f"output {name}: complex tensors cannot be written as JSON")
    if array.dtype.kind not in "biuf" or array.dtype.itemsize > 8:
        return array.tolist()
    if array.ndim == 0:
        return array[()]  # a numpy scalar: orjson writes it bare, an array in brackets
    return np.ascontiguousarray(array)


def _encode_string(value: Any, as_b64: bool) -> Any:
    raw = value if isinstance(value, bytes) else str(value).encode("utf-8")
    if not as_b64:
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            pass  # not text: written as binary, the one lossless choice
    return {B64: base64.b64encode(raw).decode("ascii")}


def dumps(body: Any) -> bytes:
    """JSON bytes of ``body``; numpy arrays inside are written by orjson."""
    encoded = orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)
    if b"null" in encoded and _has_non_finite(body):
        return _dumps_non_finite(body)
    return encoded


def _has_non_finite(value: Any) -> bool:
    if isinstance(value, np.ndarray):
        return value.dtype.kind == "f" and not bool(np.isfinite(value).all())
    if isinstance(value, np.floating | float):
        return not math.isfinite(value)
    if isinstance(value, dict):
        return any(_has_non_finite(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_non_finite(v) for v in value)
    return False


def _dumps_non_finite(body: Any) -> bytes:
    """The rare slow path: NaN and infinities as JSON tokens, as TF Serving writes them."""
    return json.dumps(_plain(body), allow_nan=True, separators=(",", ":")).encode("utf-8")


def _plain(value: Any) -> Any:
    if isinstance(value, np.ndarray | np.generic):
        if value.dtype.kind == "f":
            # numpy's text form of a float is its shortest round-trip form in its own
            # precision: float32 0.1 stays 0.1 rather than 0.10000000149011612.
            return np.vectorize(float, otypes=[object])(np.asarray(value).astype(str)).tolist()
        return value.tolist()
    if isinstance(value, dict):
        return {key: _plain(v) for key, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value
