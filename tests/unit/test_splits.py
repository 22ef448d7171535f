"""Splits: deterministic from the id, the source's own split kept."""

from __future__ import annotations

from collections import Counter

import pytest

from mlcycle.contracts.splits import hash_split, source_split, split_of


def test_hash_split_is_a_pure_function_of_the_id() -> None:
    ids = [f"item-{i}" for i in range(2000)]
    assert [hash_split(i) for i in ids] == [hash_split(i) for i in reversed(ids)][::-1]


def test_hash_split_follows_the_fractions() -> None:
    counts = Counter(hash_split(f"c{i}") for i in range(50_000))
    assert counts["train"] / 50_000 == pytest.approx(0.8, abs=0.01)
    assert counts["dev"] / 50_000 == pytest.approx(0.1, abs=0.01)
    assert counts["test"] / 50_000 == pytest.approx(0.1, abs=0.01)
    only_test = Counter(hash_split(f"c{i}", (0.0, 0.0, 1.0)) for i in range(100))
    assert only_test == {"test": 100}


@pytest.mark.parametrize(
    ("metadata", "expected"),
    [
        ({"split": "train"}, "train"),
        ({"split": "Validation"}, "dev"),
        ({"split": "dev"}, "dev"),
        ({"split": " test "}, "test"),
        ({"split": "holdout"}, None),
        ({"split": 3}, None),
        ({}, None),
        (None, None),
    ],
)
def test_source_split_spellings(metadata: dict | None, expected: str | None) -> None:
    assert source_split(metadata) == expected


def test_the_source_split_wins_over_the_hash() -> None:
    item = next(f"x{i}" for i in range(100) if hash_split(f"x{i}") == "train")
    assert split_of(item, {"split": "test"}) == "test"
    assert split_of(item, {"year": 2015}) == "train"
