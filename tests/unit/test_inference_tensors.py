"""Padded CSR rows and TensorProtos made of raw bytes, checked against TensorFlow's own."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from mlcycle.common.errors import Unavailable
from mlcycle.featurization.sparse import SparseBatch
from mlcycle.inference.tensors import from_tensor_proto, padded_rows, to_tensor_proto


def batch_of(rows: list[dict[int, float]], dim: int = 50) -> SparseBatch:
    indptr, indices, values = [0], [], []
    for row in rows:
        for column in sorted(row):
            indices.append(column)
            values.append(row[column])
        indptr.append(len(indices))
    return SparseBatch(
        indptr=np.array(indptr, np.int64),
        indices=np.array(indices, np.int32),
        values=np.array(values, np.float32),
        dim=dim,
        truncated=np.zeros(len(rows), bool),
    )


def densify(indices: np.ndarray, values: np.ndarray, dim: int) -> np.ndarray:
    dense = np.zeros((len(indices), dim), np.float32)
    for r in range(len(indices)):
        np.add.at(dense[r], indices[r], values[r])
    return dense


def test_padded_rows_hold_exactly_the_rows_of_the_slice() -> None:
    rows = [{3: 0.5, 7: 1.0}, {}, {1: 0.25, 2: 0.25, 40: 2.0, 49: 1.5}, {0: 3.0}]
    batch = batch_of(rows)
    indices, values = padded_rows(batch, 1, 4)
    assert indices.dtype == np.int64 and values.dtype == np.float32
    assert indices.shape == values.shape == (3, 4)
    assert np.array_equal(densify(indices, values, 50), batch.to_dense()[1:4])
    assert np.all(values[0] == 0)  # the empty row is all padding


def test_an_all_empty_slice_is_one_column_of_padding() -> None:
    indices, values = padded_rows(batch_of([{}, {}]), 0, 2)
    assert indices.shape == (2, 1) and not values.any()


def test_tensor_protos_read_back_like_tensorflows() -> None:
    array = np.arange(12, dtype=np.int64).reshape(3, 4) - 5
    proto = to_tensor_proto(array)
    assert np.array_equal(tf.make_ndarray(proto), array)
    floats = np.linspace(0, 1, 6, dtype=np.float32).reshape(2, 3)
    assert np.array_equal(tf.make_ndarray(to_tensor_proto(floats)), floats)
    assert np.array_equal(from_tensor_proto(to_tensor_proto(floats)), floats)


def test_outputs_in_typed_value_fields_are_read_too() -> None:
    typed = tf.make_tensor_proto([[0.1, 0.9], [0.6, 0.4]], dtype=tf.float32)
    typed.ClearField("tensor_content")
    typed.float_val.extend([0.1, 0.9, 0.6, 0.4])
    assert np.allclose(from_tensor_proto(typed), [[0.1, 0.9], [0.6, 0.4]])
    splat = tf.make_tensor_proto(0.5, dtype=tf.float32, shape=[2, 2])
    assert np.array_equal(from_tensor_proto(splat), np.full((2, 2), 0.5, np.float32))


def test_an_output_of_another_dtype_is_refused() -> None:
    with pytest.raises(Unavailable, match="DT_STRING"):
        from_tensor_proto(tf.make_tensor_proto([b"a"]))
