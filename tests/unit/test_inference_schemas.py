"""Request parsing: which mistakes are 400, 413 and 422, and that each names what is wrong."""

from __future__ import annotations

import orjson
import pytest

from mlcycle.common.errors import InvalidInput, PayloadTooLarge, ValidationFailed
from mlcycle.inference.schemas import parse_predict, parse_tf_predict


def body(value: object) -> bytes:
    return orjson.dumps(value)


def test_a_valid_predict_body_parses() -> None:
    parsed = parse_predict(
        body({"instances": [{"text": "hi"}, {"text": "yo", "metadata": {"year": 2010}}]}), 10
    )
    assert [i.text for i in parsed.instances] == ["hi", "yo"]
    assert parsed.instances[1].metadata == {"year": 2010}


@pytest.mark.parametrize(
    ("value", "field"),
    [
        ({"instances": []}, "body.instances"),
        ({"instances": [{"text": 3}]}, "body.instances.0.text"),
        ({"instances": [{"txt": "a"}]}, "body.instances.0.text"),
        ({"instances": [{"text": "a", "colour": 1}]}, "body.instances.0.colour"),
        ({"instances": [{"text": "a", "metadata": [1]}]}, "body.instances.0.metadata"),
        ({"texts": ["a"]}, "body.instances"),
        ([{"text": "a"}], "body"),
    ],
)
def test_invalid_fields_are_422_naming_the_field(value: object, field: str) -> None:
    with pytest.raises(ValidationFailed) as caught:
        parse_predict(body(value), 10)
    assert field in [e["field"] for e in caught.value.details["errors"]]


def test_malformed_or_empty_bodies_are_400() -> None:
    with pytest.raises(InvalidInput, match="malformed JSON at line 1"):
        parse_predict(b'{"instances": [', 10)
    with pytest.raises(InvalidInput, match="empty"):
        parse_predict(b"  ", 10)


def test_too_many_instances_is_413_before_validation() -> None:
    with pytest.raises(PayloadTooLarge, match="11 instances in one request; the limit is 10"):
        parse_predict(body({"instances": [{"bad": 1}] * 11}), 10)
    with pytest.raises(PayloadTooLarge):
        parse_tf_predict(body({"instances": ["a"] * 11}), 10)
    with pytest.raises(PayloadTooLarge):
        parse_tf_predict(body({"inputs": {"text": ["a"] * 11}}), 10)


def test_tf_rows_mix_strings_and_objects() -> None:
    texts, metadata, columnar = parse_tf_predict(
        body({"instances": ["plain", {"text": "with", "metadata": {"year": 2001}}]}), 10
    )
    assert texts == ["plain", "with"] and metadata == [None, {"year": 2001}] and not columnar
    texts, metadata, _ = parse_tf_predict(body({"instances": ["a", {"text": "b"}]}), 10)
    assert metadata is None


def test_tf_columns_named_or_unnamed() -> None:
    assert parse_tf_predict(body({"inputs": ["a", "b"]}), 10) == (["a", "b"], None, True)
    named = {
        "inputs": {"text": ["a"], "metadata": [{"year": 2}]},
        "signature_name": "serving_default",
    }
    assert parse_tf_predict(body(named), 10) == (["a"], [{"year": 2}], True)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"instances": ["a"], "inputs": ["a"]}, "both 'instances' and 'inputs'"),
        ({"rows": ["a"]}, "missing 'inputs' or 'instances' key"),
        (["a"], "must be a JSON object"),
        ({"instances": [1]}, "instances.0"),
        ({"instances": []}, "instances"),
        ({"inputs": {"text": ["a", "b"], "metadata": [{}]}}, "the same length"),
        ({"instances": ["a"], "signature_name": "other"}, '"other" not found'),
    ],
)
def test_tf_mistakes_are_400_with_a_message(value: object, message: str) -> None:
    with pytest.raises(InvalidInput, match=message) as caught:
        parse_tf_predict(body(value), 10)
    assert caught.value.http_status == 400
