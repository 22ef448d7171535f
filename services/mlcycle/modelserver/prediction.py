"""Predict, Classify, Regress and GetModelMetadata on one loaded version, as TF Serving answers.

These take a resolved :class:`~mlcycle.modelserver.servable.Servable` and a
request message and return the response message; the gRPC and REST edges
resolve the version and convert, and warm-up replays recorded requests
through the same functions. ``run`` decides how a signature is called:
directly, or through the server-side batcher.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
from tensorflow.core.framework import types_pb2
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    input_pb2,
    model_pb2,
    predict_pb2,
    regression_pb2,
)

from mlcycle.common.errors import InvalidInput
from mlcycle.modelserver.examples import serialized_examples
from mlcycle.modelserver.servable import (
    CLASSIFY_METHOD,
    PREDICT_METHOD,
    REGRESS_METHOD,
    SERVING_DEFAULT,
    Servable,
    Signature,
)
from mlcycle.modelserver.tensors import fill_tensor, to_ndarray

Arrays = dict[str, np.ndarray]
Runner = Callable[[Servable, Signature, Arrays], Arrays]
SIGNATURE_DEF_FIELD = "signature_def"
EXAMPLES_INPUT = "inputs"
CLASSES_OUTPUT, SCORES_OUTPUT, REGRESS_OUTPUT = "classes", "scores", "outputs"


def direct(servable: Servable, signature: Signature, arrays: Arrays) -> Arrays:
    """Call the signature now, on these arrays alone."""
    return signature.run(arrays)


def fill_model_spec(spec: model_pb2.ModelSpec, servable: Servable, signature: str) -> None:
    """The model_spec of a response: name, version served, signature used."""
    spec.name = servable.name
    spec.version.value = servable.version
    if signature:
        spec.signature_name = signature


# -- Predict ----------------------------------------------------------------------------------


def predict(
    servable: Servable, request: predict_pb2.PredictRequest, run: Runner = direct
) -> predict_pb2.PredictResponse:
    """Answer a PredictRequest with ``servable``."""
    signature = servable.signature(request.model_spec.signature_name)
    signature.check_names(request.inputs.keys())
    arrays: Arrays = {}
    for alias, tensor in request.inputs.items():
        signature.check_dtype(alias, tensor.dtype)
        arrays[alias] = to_ndarray(tensor, f"input {alias}")
    outputs = predict_arrays(servable, signature, arrays, request.output_filter, run)
    response = predict_pb2.PredictResponse()
    fill_model_spec(response.model_spec, servable, signature.key)
    for alias, array in outputs.items():
        fill_tensor(response.outputs[alias], array)
    return response


def predict_arrays(
    servable: Servable,
    signature: Signature,
    arrays: Arrays,
    output_filter: Sequence[str] = (),
    run: Runner = direct,
) -> Arrays:
    """The outputs (all, or those in ``output_filter``) for arrays of the right names and dtypes."""
    signature.check_outputs(output_filter)
    signature.check_shapes(arrays)
    outputs = run(servable, signature, arrays)
    if output_filter:
        return {alias: outputs[alias] for alias in output_filter}
    return outputs


# -- Classify and Regress ---------------------------------------------------------------------


def example_signature(servable: Servable, key: str, method: str) -> Signature:
    """The signature Classify (``method`` CLASSIFY_METHOD) or Regress may call.

    Its method name must say so; a predict signature of the same shape (one string
    input ``inputs``, the outputs the method needs) is accepted too, as TF Serving
    does for TF2 models without its method-name check.
    """
    key = key or SERVING_DEFAULT
    signature = servable.signatures.get(key)
    if signature is None:
        raise InvalidInput(f"No signature was found with the name: {key}")
    what = "classification" if method == CLASSIFY_METHOD else "regression"
    problem = _example_signature_problem(signature, method)
    if signature.method_name == method and problem:
        raise InvalidInput(f"signature {key!r}: {problem}")
    if signature.method_name != method and (signature.method_name != PREDICT_METHOD or problem):
        raise InvalidInput(
            f"Expected {what} signature method_name to be {method}. Was: {signature.method_name}"
        )
    return signature


def _example_signature_problem(signature: Signature, method: str) -> str | None:
    spec = signature.inputs.get(EXAMPLES_INPUT)
    if len(signature.inputs) != 1 or spec is None:
        return f"expected one input tensor named {EXAMPLES_INPUT!r}"
    if spec.dtype != types_pb2.DT_STRING:
        return f"input {EXAMPLES_INPUT!r} must be DT_STRING (serialized tf.Example)"
    if method == CLASSIFY_METHOD:
        if CLASSES_OUTPUT not in signature.outputs and SCORES_OUTPUT not in signature.outputs:
            return (
                'expected classification outputs to contain at least one of "classes" or "scores"'
            )
    elif REGRESS_OUTPUT not in signature.outputs:
        return f"expected a regression output named {REGRESS_OUTPUT!r}"
    return None


def _examples(
    servable: Servable, signature: Signature, request_input: input_pb2.Input, run: Runner
) -> tuple[Arrays, int]:
    serialized = serialized_examples(request_input)
    batch = np.empty(len(serialized), dtype=object)
    batch[:] = serialized
    arrays = {EXAMPLES_INPUT: batch}
    signature.check_shapes(arrays)
    return run(servable, signature, arrays), len(serialized)


def classify(
    servable: Servable, request: classification_pb2.ClassificationRequest, run: Runner = direct
) -> classification_pb2.ClassificationResponse:
    """Answer a ClassificationRequest: (label, score) pairs per example."""
    signature = example_signature(servable, request.model_spec.signature_name, CLASSIFY_METHOD)
    outputs, count = _examples(servable, signature, request.input, run)
    classes = _class_matrix(outputs.get(CLASSES_OUTPUT), count, CLASSES_OUTPUT, "s")
    scores = _class_matrix(outputs.get(SCORES_OUTPUT), count, SCORES_OUTPUT, "f")
    if classes is not None and scores is not None and classes.shape[1] != scores.shape[1]:
        raise InvalidInput(
            "Tensors class and score should match in dim_size(1). "
            f"Got {classes.shape[1]} vs. {scores.shape[1]}"
        )
    response = classification_pb2.ClassificationResponse()
    fill_model_spec(response.model_spec, servable, signature.key)
    width = (classes if classes is not None else scores).shape[1]  # type: ignore[union-attr]
    labels = classes.tolist() if classes is not None else None
    values = scores.tolist() if scores is not None else None
    for row in range(count):
        entry = response.result.classifications.add()
        for column in range(width):
            item = entry.classes.add()
            if labels is not None:
                item.label = _text(labels[row][column])
            if values is not None:
                item.score = values[row][column]
    return response


def _class_matrix(array: np.ndarray | None, count: int, name: str, kind: str) -> np.ndarray | None:
    if array is None:
        return None
    if array.ndim != 2:
        raise InvalidInput(
            f"Expected Tensor shape: [batch_size num_classes] but got {list(array.shape)} ({name})"
        )
    is_text = array.dtype.kind in "OSU"
    if (kind == "s") != is_text or (kind == "f" and array.dtype != np.float32):
        expected = "DT_STRING" if kind == "s" else "DT_FLOAT"
        raise InvalidInput(f"Expected {name} Tensor of {expected}. Got: {array.dtype}")
    if array.shape[0] != count:
        raise InvalidInput(f"Expected {name} output batch size of {count}. Got: {array.shape[0]}")
    return array


def _text(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)


def regress(
    servable: Servable, request: regression_pb2.RegressionRequest, run: Runner = direct
) -> regression_pb2.RegressionResponse:
    """Answer a RegressionRequest: one value per example."""
    signature = example_signature(servable, request.model_spec.signature_name, REGRESS_METHOD)
    outputs, count = _examples(servable, signature, request.input, run)
    values = outputs[REGRESS_OUTPUT]
    if values.ndim == 2 and values.shape[1] == 1:
        values = values[:, 0]
    if values.ndim != 1 or values.shape[0] != count:
        raise InvalidInput(
            "Expected output Tensor shape to be either [batch_size] or [batch_size, 1] but got "
            f"{list(outputs[REGRESS_OUTPUT].shape)}"
        )
    if values.dtype != np.float32:
        raise InvalidInput(f"Expected output Tensor of DT_FLOAT. Got: {values.dtype}")
    response = regression_pb2.RegressionResponse()
    fill_model_spec(response.model_spec, servable, signature.key)
    for value in values.tolist():
        response.result.regressions.add().value = value
    return response


# -- GetModelMetadata -------------------------------------------------------------------------


def metadata(
    servable: Servable, request: get_model_metadata_pb2.GetModelMetadataRequest
) -> get_model_metadata_pb2.GetModelMetadataResponse:
    """The version's SignatureDefMap, packed in ``metadata["signature_def"]`` as TF Serving does."""
    fields = list(request.metadata_field)
    if not fields:
        raise InvalidInput("GetModelMetadataRequest must specify at least one metadata_field")
    for field in fields:
        if field != SIGNATURE_DEF_FIELD:
            raise InvalidInput(f"Metadata field {field} is not supported")
    response = get_model_metadata_pb2.GetModelMetadataResponse()
    fill_model_spec(response.model_spec, servable, "")
    response.metadata[SIGNATURE_DEF_FIELD].Pack(signature_def_map(servable.signature_defs))
    return response


def signature_def_map(
    definitions: Mapping[str, object],
) -> get_model_metadata_pb2.SignatureDefMap:
    """A SignatureDefMap holding ``definitions``."""
    result = get_model_metadata_pb2.SignatureDefMap()
    for key, definition in definitions.items():
        result.signature_def[key].CopyFrom(definition)
    return result
