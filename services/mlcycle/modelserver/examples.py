"""``tf.Example`` inputs of Classify and Regress, from gRPC ``Input`` messages and REST JSON.

A classify or regress signature takes one DT_STRING tensor of serialized
Examples (its input named ``inputs``). ``Input`` carries either a plain list of
Examples or a list with a shared context; the context is merged into each
example, and an example's own features win over the context's (serialized
protobuf messages merge when concatenated, which is exactly this).

The REST body (``{"context": {...}, "examples": [{...}, ...]}``) maps each
feature to a JSON value or list: integers and booleans make an int64 list,
decimals a float list, strings and ``{"b64": ...}`` a bytes list.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Any

from tensorflow.core.example import example_pb2, feature_pb2
from tensorflow_serving.apis import input_pb2

from mlcycle.common.errors import InvalidInput
from mlcycle.modelserver.json_tensors import B64, is_b64

_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


def serialized_examples(request_input: input_pb2.Input) -> list[bytes]:
    """The serialized Examples an Input holds, each with the shared context merged in."""
    kind = request_input.WhichOneof("kind")
    if kind == "example_list":
        examples = [e.SerializeToString() for e in request_input.example_list.examples]
    elif kind == "example_list_with_context":
        listed = request_input.example_list_with_context
        context = listed.context.SerializeToString()
        examples = [context + e.SerializeToString() for e in listed.examples]
    else:
        examples = []
    if not examples:
        raise InvalidInput("Input is empty.")
    return examples


def input_from_json(body: Mapping[str, Any], method: str) -> input_pb2.Input:
    """The Input a REST classify or regress body describes."""
    request_input = input_pb2.Input()
    examples = body.get("examples")
    if examples is None:
        raise InvalidInput(f"When method is {method}, key 'examples' is expected and was not found")
    if not isinstance(examples, list):
        raise InvalidInput("Expecting 'examples' value to be an list/array")
    if not examples:
        raise InvalidInput("'examples' value is an empty array")
    if "context" in body:
        listed = request_input.example_list_with_context
        _fill_example(body["context"], listed.context, "context")
        target = listed.examples
    else:
        target = request_input.example_list.examples
    for position, example in enumerate(examples):
        _fill_example(example, target.add(), f"examples[{position}]")
    return request_input


def _fill_example(value: Any, example: example_pb2.Example, where: str) -> None:
    if not isinstance(value, dict):
        raise InvalidInput(f"{where}: Example must be JSON object but got {_json_type(value)}")
    features = example.features.feature
    for name, content in value.items():
        feature = features[name]
        for item in content if isinstance(content, list) else [content]:
            _add_value(item, feature, f"{where} feature {name}")


def _add_value(item: Any, feature: feature_pb2.Feature, where: str) -> None:
    if isinstance(item, bool):
        _kind(feature, "int64_list", where).value.append(int(item))
    elif isinstance(item, int):
        if not _INT64_MIN <= item <= _INT64_MAX:
            raise InvalidInput(f"{where}: {item} does not fit an int64")
        _kind(feature, "int64_list", where).value.append(item)
    elif isinstance(item, float):
        _kind(feature, "float_list", where).value.append(item)
    elif isinstance(item, str):
        _kind(feature, "bytes_list", where).value.append(item.encode("utf-8"))
    elif is_b64(item):
        try:
            raw = base64.b64decode(item[B64], validate=True)
        except (binascii.Error, ValueError):
            raise InvalidInput(f"{where}: the b64 value is not valid base64") from None
        _kind(feature, "bytes_list", where).value.append(raw)
    else:
        raise InvalidInput(f"{where} has element with unexpected JSON type: {_json_type(item)}")


def _kind(feature: feature_pb2.Feature, kind: str, where: str) -> Any:
    current = feature.WhichOneof("kind")
    if current not in (None, kind):
        expected = current.removesuffix("_list")
        raise InvalidInput(f"Unexpected element type in {where} expecting type: {expected}")
    return getattr(feature, kind)


def _json_type(value: Any) -> str:
    if value is None:
        return "Null"
    if isinstance(value, bool):
        return "Boolean"
    if isinstance(value, int | float):
        return "Number"
    if isinstance(value, str):
        return "String"
    return "Array" if isinstance(value, list) else "Object"
