"""The store helpers every backend shares: cursors, limits, filters, queries, batches."""

from __future__ import annotations

import pytest

from mlcycle.common.errors import InvalidInput
from mlcycle.common.store.base import (
    MAX_LIMIT,
    MAX_QUERY_CHARS,
    check_collection,
    check_filters,
    check_limit,
    decode_cursor,
    decode_position,
    encode_cursor,
    normalize_query,
    unique_by_id,
)
from mlcycle.common.store.sqlite_queries import match_expression


@pytest.mark.parametrize(
    "position", [["c1"], [-3.25, "ü/+?=&"], [0.1 + 0.2, "x"], [12, "id"], [1e-300, ""]]
)
def test_cursor_round_trips_exactly(position: list) -> None:
    cursor = encode_cursor(position)
    assert decode_cursor(cursor) == position
    assert all(c.isalnum() or c in "-_" for c in cursor)  # safe in a URL as is


@pytest.mark.parametrize("cursor", ["", "!!", "e30", "W10", "bnVsbA", "////", "é"])
def test_garbage_cursor_is_bad_input(cursor: str) -> None:
    with pytest.raises(InvalidInput):
        decode_cursor(cursor)


def test_decode_position_checks_the_shape() -> None:
    assert decode_position(None, str) is None
    assert decode_position(encode_cursor(["a"]), str) == ["a"]
    assert decode_position(encode_cursor([1, "a"]), float, str) == [1, "a"]
    assert decode_position(encode_cursor([5]), int) == [5]
    for position, shape in [
        (["a"], (float, str)),
        ([1.5, "a"], (str,)),
        ([True, "a"], (float, str)),
        ([1.5], (int,)),
        (["a", "b"], (str,)),
        ([None], (str,)),
    ]:
        with pytest.raises(InvalidInput):
            decode_position(encode_cursor(position), *shape)


def test_limits() -> None:
    assert check_limit(1) == 1 and check_limit(MAX_LIMIT) == MAX_LIMIT
    for bad in (0, -1, MAX_LIMIT + 1, True, 2.0, "10"):
        with pytest.raises(InvalidInput):
            check_limit(bad)  # type: ignore[arg-type]


def test_collections() -> None:
    assert check_collection("comments") == "comments"
    with pytest.raises(InvalidInput):
        check_collection("sqlite_master")


def test_filters() -> None:
    assert check_filters(None) == {}
    assert check_filters({"split": "train", "label": 1, "p": 0.5, "ok": True, "run": None}) == {
        "split": "train",
        "label": 1,
        "p": 0.5,
        "ok": True,
        "run": None,
    }
    assert check_filters({"text": None}) == {"text": None}
    for bad in ({"a.b": 1}, {"a b": 1}, {"": 1}, {"x": [1]}, {"x": {}}, {"text": "t"}, {1: 1}):
        with pytest.raises(InvalidInput):
            check_filters(bad)  # type: ignore[arg-type]


def test_normalize_query() -> None:
    assert normalize_query(None) is None
    assert normalize_query("") is None
    assert normalize_query(" \t\n\x00 ") is None
    assert normalize_query("  hello\x00world ") == "hello world"
    assert normalize_query("a" * MAX_QUERY_CHARS) == "a" * MAX_QUERY_CHARS
    with pytest.raises(InvalidInput):
        normalize_query("a" * (MAX_QUERY_CHARS + 1))
    with pytest.raises(InvalidInput):
        normalize_query(42)  # type: ignore[arg-type]


def test_unique_by_id_keeps_the_last_version() -> None:
    docs = [{"id": "a", "v": 1}, {"id": "b"}, {"id": "a", "v": 2}]
    assert unique_by_id(docs) == {"a": {"id": "a", "v": 2}, "b": {"id": "b"}}
    for bad in ([{"v": 1}], [{"id": 1}], [{"id": ""}], ["not a doc"]):
        with pytest.raises(InvalidInput):
            unique_by_id(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("hello world", '"hello" "world"'),
        ('say "hi"', '"say" """hi"""'),
        ("AND( x", '"AND(" "x"'),
        ("NEAR(a", '"NEAR(a"'),
        ("col:word", '"col:word"'),
        ("*** ---", None),
        ("😀 ok", '"ok"'),
        ("_", None),
    ],
)
def test_fts_match_expression_quotes_every_word(text: str, expected: str | None) -> None:
    assert match_expression(text) == expected
