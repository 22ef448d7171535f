"""TensorProto ↔ numpy and JSON ↔ numpy, checked against TensorFlow's own conversions."""

from __future__ import annotations

import base64
import json
import math
from typing import Any

import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2, types_pb2

from mlcycle.common.errors import InvalidInput
from mlcycle.modelserver import json_tensors as jt
from mlcycle.modelserver.tensors import dtype_of, fill_tensor, to_ndarray, to_tensor_proto

NUMERIC = [
    np.float32,
    np.float64,
    np.float16,
    np.int8,
    np.int16,
    np.int32,
    np.int64,
    np.uint8,
    np.uint16,
    np.uint32,
    np.uint64,
    np.bool_,
    np.complex64,
    np.complex128,
]
SHAPES = [(), (0,), (3,), (2, 3), (2, 0, 4)]


def sample(dtype: Any, shape: tuple[int, ...]) -> np.ndarray:
    rng = np.random.default_rng(3)
    values = rng.integers(0, 100, size=shape)
    if np.dtype(dtype).kind == "c":
        return (values + 1j * rng.integers(0, 9, size=shape)).astype(dtype)
    if np.dtype(dtype).kind == "b":
        return (values % 2).astype(dtype)
    return values.astype(dtype)


# -- TensorProto ------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", NUMERIC)
@pytest.mark.parametrize("shape", SHAPES)
def test_numeric_round_trip_through_tensor_content(dtype: Any, shape: tuple[int, ...]) -> None:
    array = sample(dtype, shape)
    proto = to_tensor_proto(array)
    assert proto.tensor_content or array.size == 0
    back = to_ndarray(proto)
    assert back.dtype == array.dtype and back.shape == shape
    np.testing.assert_array_equal(back, array)
    # TensorFlow reads what we write, so any TF Serving client can.
    np.testing.assert_array_equal(tf.make_ndarray(proto), array)


@pytest.mark.parametrize("dtype", NUMERIC)
def test_we_read_what_tensorflow_writes_in_typed_value_fields(dtype: Any) -> None:
    array = sample(dtype, (2, 3))
    proto = tf.make_tensor_proto(array)
    # make_tensor_proto uses tensor_content for most arrays; the typed fields are
    # what TF Serving itself answers with, so rewrite the proto that way.
    typed = tensor_pb2.TensorProto(dtype=proto.dtype, tensor_shape=proto.tensor_shape)
    field = {
        types_pb2.DT_FLOAT: "float_val",
        types_pb2.DT_DOUBLE: "double_val",
        types_pb2.DT_INT64: "int64_val",
        types_pb2.DT_UINT32: "uint32_val",
        types_pb2.DT_UINT64: "uint64_val",
        types_pb2.DT_BOOL: "bool_val",
        types_pb2.DT_HALF: "half_val",
        types_pb2.DT_COMPLEX64: "scomplex_val",
        types_pb2.DT_COMPLEX128: "dcomplex_val",
    }.get(proto.dtype, "int_val")
    flat = array.ravel()
    if field == "half_val":
        values: list[Any] = flat.view(np.uint16).tolist()
    elif field in ("scomplex_val", "dcomplex_val"):
        values = np.stack([flat.real, flat.imag], axis=1).ravel().tolist()
    else:
        values = flat.tolist()
    getattr(typed, field).extend(values)
    np.testing.assert_array_equal(to_ndarray(typed), tf.make_ndarray(typed))
    np.testing.assert_array_equal(to_ndarray(typed), array)
    assert to_ndarray(typed).dtype == array.dtype


def test_strings_round_trip_including_non_utf8_bytes() -> None:
    array = np.array([[b"abc", "héllo".encode()], [b"\xff\x00binary", b""]], dtype=object)
    proto = to_tensor_proto(array)
    assert proto.dtype == types_pb2.DT_STRING and list(proto.string_val)[0] == b"abc"
    back = to_ndarray(proto)
    assert back.shape == (2, 2) and back.tolist() == array.tolist()
    assert tf.make_ndarray(proto).tolist() == array.tolist()
    assert to_ndarray(tf.make_tensor_proto(["a", "b"])).tolist() == [b"a", b"b"]
    assert to_tensor_proto(np.array(["x", "y"])).string_val == [b"x", b"y"]  # numpy text


def test_tensorflows_fill_rules_for_short_value_lists() -> None:
    one = tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT, float_val=[7.0])
    one.tensor_shape.dim.add(size=3)
    assert to_ndarray(one).tolist() == tf.make_ndarray(one).tolist() == [7.0, 7.0, 7.0]
    some = tensor_pb2.TensorProto(dtype=types_pb2.DT_INT64, int64_val=[1, 2])
    some.tensor_shape.dim.add(size=4)
    assert to_ndarray(some).tolist() == tf.make_ndarray(some).tolist() == [1, 2, 2, 2]
    none = tensor_pb2.TensorProto(dtype=types_pb2.DT_INT32)
    none.tensor_shape.dim.add(size=2)
    assert to_ndarray(none).tolist() == tf.make_ndarray(none).tolist() == [0, 0]
    empty_strings = tensor_pb2.TensorProto(dtype=types_pb2.DT_STRING)
    empty_strings.tensor_shape.dim.add(size=2)
    assert to_ndarray(empty_strings).tolist() == [b"", b""]


def test_inconsistent_protos_are_invalid_input_naming_the_tensor() -> None:
    too_many = tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT, float_val=[1, 2, 3])
    too_many.tensor_shape.dim.add(size=2)
    with pytest.raises(InvalidInput, match="input x: 3 values of DT_FLOAT do not fit shape"):
        to_ndarray(too_many, "input x")
    bad_content = to_tensor_proto(np.zeros(3, np.float32))
    bad_content.tensor_shape.dim[0].size = 4
    with pytest.raises(InvalidInput, match="tensor_content holds 3 values .* needs 4"):
        to_ndarray(bad_content)
    negative = tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT)
    negative.tensor_shape.dim.add(size=-1)
    with pytest.raises(InvalidInput, match="negative dimension"):
        to_ndarray(negative)


def test_dtypes_numpy_lacks_go_through_tensorflow() -> None:
    proto = tf.make_tensor_proto(tf.constant([1.5, 2.0], dtype=tf.bfloat16).numpy())
    assert proto.dtype == types_pb2.DT_BFLOAT16
    back = to_ndarray(proto)
    assert back.astype(np.float32).tolist() == [1.5, 2.0]
    out = tensor_pb2.TensorProto()
    fill_tensor(out, back)
    assert out.dtype == types_pb2.DT_BFLOAT16 and dtype_of(back) == types_pb2.DT_BFLOAT16


# -- JSON values ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "dtype", "expected"),
    [
        ([1, 2, 3], types_pb2.DT_INT64, np.array([1, 2, 3], np.int64)),
        ([[1, 2]], types_pb2.DT_INT32, np.array([[1, 2]], np.int32)),
        ([1, 2.5], types_pb2.DT_FLOAT, np.array([1.0, 2.5], np.float32)),
        (3, types_pb2.DT_DOUBLE, np.array(3.0)),
        ([True, False], types_pb2.DT_BOOL, np.array([True, False])),
        ([], types_pb2.DT_FLOAT, np.zeros(0, np.float32)),
        ([[], []], types_pb2.DT_INT64, np.zeros((2, 0), np.int64)),
        ([float("nan"), float("inf")], types_pb2.DT_FLOAT, np.array([np.nan, np.inf], np.float32)),
    ],
)
def test_json_values_become_arrays_of_the_signature_dtype(
    value: Any, dtype: int, expected: np.ndarray
) -> None:
    array = jt.to_array(value, dtype, "input x")
    assert array.dtype == expected.dtype and array.shape == expected.shape
    np.testing.assert_array_equal(array, expected)


def test_strings_and_b64_become_bytes() -> None:
    encoded = base64.b64encode(b"\x00\xffimage").decode()
    array = jt.to_array([["a", {"b64": encoded}], ["ü", ""]], types_pb2.DT_STRING, "s")
    assert array.shape == (2, 2)
    assert array.tolist() == [[b"a", b"\x00\xffimage"], ["ü".encode(), b""]]
    assert jt.to_array({"b64": encoded}, types_pb2.DT_STRING, "s").shape == ()


@pytest.mark.parametrize(
    ("value", "dtype", "message"),
    [
        ([1, 2.5], types_pb2.DT_INT64, "DT_INT64 values must be JSON whole numbers"),
        (["1"], types_pb2.DT_FLOAT, "DT_FLOAT values must be JSON numbers"),
        ([True], types_pb2.DT_FLOAT, "DT_FLOAT values must be JSON numbers"),
        ([1], types_pb2.DT_BOOL, "DT_BOOL values must be JSON true or false"),
        ([1, None], types_pb2.DT_FLOAT, "must be JSON numbers"),
        ([{"a": 1}], types_pb2.DT_FLOAT, "must be JSON numbers"),
        ([[1, 2], [3]], types_pb2.DT_INT64, "ragged"),
        ([2**40], types_pb2.DT_INT32, "out of range for DT_INT32"),
        ([2**70], types_pb2.DT_INT64, "must be JSON numbers"),
        ([1e300], types_pb2.DT_FLOAT, "without loss of precision"),
        ([1], types_pb2.DT_STRING, "DT_STRING values must be JSON strings"),
        ([["a"], "b"], types_pb2.DT_STRING, "ragged"),
        ([{"b64": "!!"}], types_pb2.DT_STRING, "not valid base64"),
    ],
)
def test_json_values_of_the_wrong_kind_are_refused_naming_the_input(
    value: Any, dtype: int, message: str
) -> None:
    with pytest.raises(InvalidInput, match="^input x: .*" + message):
        jt.to_array(value, dtype, "input x")


FLOAT_X = {"x": types_pb2.DT_FLOAT}
THREE = {"tag": types_pb2.DT_STRING, "signal": types_pb2.DT_INT64, "sensor": types_pb2.DT_INT64}


def test_row_format_with_one_unnamed_input() -> None:
    arrays, fmt = jt.request_inputs({"instances": [1.0, 2.0, 5.0]}, FLOAT_X)
    assert fmt == jt.ROW and arrays["x"].tolist() == [1.0, 2.0, 5.0]
    arrays, _ = jt.request_inputs({"instances": [[[1, 2]], [[3, 4]]]}, FLOAT_X)
    assert arrays["x"].shape == (2, 1, 2)
    text, _ = jt.request_inputs({"instances": ["foo", "bar"]}, {"t": types_pb2.DT_STRING})
    assert text["t"].tolist() == [b"foo", b"bar"]


def test_row_and_columnar_formats_of_the_rest_doc_example_agree() -> None:
    rows = {
        "instances": [
            {"tag": "foo", "signal": [1, 2, 3, 4, 5], "sensor": [[1, 2], [3, 4]]},
            {"tag": "bar", "signal": [3, 4, 1, 2, 5], "sensor": [[4, 5], [6, 8]]},
        ]
    }
    columns = {
        "inputs": {
            "tag": ["foo", "bar"],
            "signal": [[1, 2, 3, 4, 5], [3, 4, 1, 2, 5]],
            "sensor": [[[1, 2], [3, 4]], [[4, 5], [6, 8]]],
        }
    }
    by_row, row_fmt = jt.request_inputs(rows, THREE)
    by_column, column_fmt = jt.request_inputs(columns, THREE)
    assert (row_fmt, column_fmt) == (jt.ROW, jt.COLUMNAR)
    for name in THREE:
        np.testing.assert_array_equal(by_row[name], by_column[name])
    assert by_row["sensor"].shape == (2, 2, 2)
    single, _ = jt.request_inputs({"inputs": [[1.0, 2.0]]}, FLOAT_X)
    assert single["x"].shape == (1, 2)


@pytest.mark.parametrize(
    ("body", "inputs", "message"),
    [
        ({"instances": [1], "inputs": [1]}, FLOAT_X, "only one of 'instances' or 'inputs'"),
        ({"signature_name": "x"}, FLOAT_X, "Missing 'inputs' or 'instances' key"),
        ({"instances": []}, FLOAT_X, "No values in 'instances' array"),
        ({"instances": {"x": 1}}, FLOAT_X, "'instances' must be a list"),
        ({"instances": [1, 2]}, THREE, "instances is a plain list, but expecting list of objects"),
        ({"inputs": [1, 2]}, THREE, "inputs is a plain value/list, but expecting an object"),
        ({"inputs": {"tag": ["a"], "signal": [[1]]}}, THREE, "Missing named input: sensor"),
        ({"instances": [{"x": 1}, {"y": 1}]}, FLOAT_X, r"instances\[1\] has keys \['y'\]"),
        ({"instances": [{"x": 1}, [1]]}, FLOAT_X, "Expecting object but got list at item 1"),
        ({"instances": [1, {"x": 1}]}, FLOAT_X, "Expecting value/list but got object at item 1"),
    ],
)
def test_malformed_predict_bodies_say_what_is_wrong(
    body: dict[str, Any], inputs: dict[str, int], message: str
) -> None:
    with pytest.raises(InvalidInput, match=message):
        jt.request_inputs(body, inputs)


# -- JSON answers -----------------------------------------------------------------------------


def answer(outputs: dict[str, np.ndarray], fmt: str) -> Any:
    return json.loads(jt.response_body(outputs, fmt))


def test_row_answers_list_values_for_one_output_and_objects_for_several() -> None:
    y = np.array([3.5, 4.0, 5.5], np.float32)
    assert answer({"y": y}, jt.ROW) == {"predictions": [3.5, 4.0, 5.5]}
    both = answer({"y": y, "k": np.array([[1], [2], [3]], np.int64)}, jt.ROW)
    assert both == {
        "predictions": [{"k": [1], "y": 3.5}, {"k": [2], "y": 4.0}, {"k": [3], "y": 5.5}]
    }


def test_columnar_answers_the_value_for_one_output_and_an_object_for_several() -> None:
    total = np.array(8.5, np.float32)
    assert answer({"sum": total}, jt.COLUMNAR) == {"outputs": 8.5}
    both = answer({"sum": total, "t": np.array([b"A"], dtype=object)}, jt.COLUMNAR)
    assert both == {"outputs": {"sum": 8.5, "t": ["A"]}}


def test_binary_outputs_are_b64_objects() -> None:
    raw = np.array([b"\xff\x01", b"text"], dtype=object)
    as_bytes = answer({"image_bytes": raw}, jt.COLUMNAR)["outputs"]
    assert [base64.b64decode(v["b64"]) for v in as_bytes] == [b"\xff\x01", b"text"]
    # Without the _bytes suffix, text stays text; bytes that are not UTF-8 cannot.
    as_text = answer({"image": raw}, jt.COLUMNAR)["outputs"]
    assert as_text == [{"b64": base64.b64encode(b"\xff\x01").decode()}, "text"]


def test_floats_are_written_in_their_shortest_form_and_non_finite_as_tokens() -> None:
    body = jt.response_body({"y": np.array([0.2, 1.0, 1e-5], np.float32)}, jt.COLUMNAR)
    assert body.startswith(b'{"outputs":[0.2,1.0,')  # not 0.20000000298023224
    assert json.loads(body) == {"outputs": [0.2, 1.0, 1e-5]}
    special = jt.response_body({"y": np.array([np.nan, np.inf, -np.inf, 0.1], np.float32)}, "row")
    assert special == b'{"predictions":[NaN,Infinity,-Infinity,0.1]}'
    parsed = jt.loads(special)["predictions"]
    assert math.isnan(parsed[0]) and parsed[1:3] == [math.inf, -math.inf]


def test_row_answers_need_a_shared_batch_dimension() -> None:
    with pytest.raises(InvalidInput, match="output sum is a scalar"):
        jt.response_body({"sum": np.array(1.0, np.float32)}, jt.ROW)
    with pytest.raises(InvalidInput, match="output b has batch size 1, expecting 2"):
        jt.response_body({"a": np.zeros(2), "b": np.zeros(1)}, jt.ROW)


def test_request_bodies_parse_with_nan_tokens_and_fail_clearly_otherwise() -> None:
    assert math.isnan(jt.loads(b'{"instances": [NaN]}')["instances"][0])
    with pytest.raises(InvalidInput, match="The document is empty"):
        jt.loads(b"  ")
    with pytest.raises(InvalidInput, match="JSON Parse error"):
        jt.loads(b'{"instances": [1,')
