"""Metadata features: standardized numbers and one-hot categories, never an error on bad values.

Layout of the group, fields in name order: each numeric field takes two slots,
``<field>`` (the value standardized with the fitted mean and std, clipped to
±clip) and ``<field>=missing``; each categorical field takes one slot per
fitted category, then ``<field>=<other>`` and ``<field>=<missing>``.

What counts as a value:
- numeric: int, float and bool (as 0/1); NaN, infinities, None, strings,
  lists and dicts are *missing* (the ``=missing`` slot is set, the value slot is 0);
- categorical: strings (empty is missing), booleans as ``true``/``false``,
  integers and integral floats as their decimal text; None, NaN and non-scalar
  values (lists, dicts) are *missing*. A nested value has no canonical text
  (a dict's key order is the sender's), so it is not turned into one.

Which fields: those named in :class:`~mlcycle.featurization.config.MetadataConfig`,
or, where it says None, inferred at fit time from the values seen: a field
whose values are all numbers is numeric; one with strings or booleans (even
mixed with numbers) is categorical; one with only nested values is left out,
as are the ``exclude`` fields. A field the transform was not fitted on is
ignored at apply time, or refused with ``unknown_fields="error"``.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from mlcycle.featurization.config import MetadataConfig

OTHER = "<other>"
MISSING = "<missing>"


def as_number(value: Any) -> float | None:
    """The value as a finite float, or None when it is not a usable number."""
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float):
        try:
            number = float(value)
        except OverflowError:  # an int beyond float range
            return None
        return number if math.isfinite(number) else None
    return None


def as_category(value: Any) -> str | None:
    """The value as a category name, or None when it is missing or not a scalar."""
    if isinstance(value, str):
        return value or None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float) and math.isfinite(value):
        return str(int(value)) if value.is_integer() else repr(value)
    return None


@dataclass(frozen=True)
class NumericField:
    """A numeric field's fitted statistics."""

    name: str
    mean: float
    std: float
    count: int  # records in the fit that had a usable value


@dataclass(frozen=True)
class CategoricalField:
    """A categorical field's fitted categories, most frequent first."""

    name: str
    categories: tuple[str, ...]
    count: int


@dataclass(frozen=True)
class MetadataEncoder:
    """Fitted metadata fields and the group layout."""

    numeric: tuple[NumericField, ...] = ()
    categorical: tuple[CategoricalField, ...] = ()
    clip: float = 5.0

    @property
    def fields(self) -> frozenset[str]:
        """Names of every field the encoder was fitted on."""
        return frozenset(f.name for f in self.numeric) | {f.name for f in self.categorical}

    @property
    def dim(self) -> int:
        """Width of the metadata group."""
        return 2 * len(self.numeric) + sum(len(f.categories) + 2 for f in self.categorical)

    def slot_names(self) -> list[str]:
        """Human-readable name of each slot, in index order."""
        names: list[str] = []
        for f in self.numeric:
            names += [f.name, f"{f.name}=missing"]
        for c in self.categorical:
            names += [f"{c.name}={v}" for v in c.categories]
            names += [f"{c.name}={OTHER}", f"{c.name}={MISSING}"]
        return names

    def slot_fields(self) -> np.ndarray:
        """For each slot, the position of its field in the layout (numeric first)."""
        sizes = [2] * len(self.numeric) + [len(c.categories) + 2 for c in self.categorical]
        return np.repeat(np.arange(len(sizes)), sizes).astype(np.int64)

    def encode(
        self, metadata: Sequence[Mapping[str, Any] | None] | None, n_rows: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """(slots, values), both (n_rows, fields): each field's one slot per record.

        A slot of -1 means no entry (a numeric value that standardizes to exactly 0).
        Fields are encoded a column at a time, with fast paths for the common
        types, because this runs for every served request.
        """
        n_fields = len(self.numeric) + len(self.categorical)
        slots = np.empty((n_rows, n_fields), np.int64)
        values = np.ones((n_rows, n_fields), np.float32)
        if n_fields == 0:
            return slots, values
        records = [r or _NOTHING for r in metadata] if metadata is not None else None
        offset = 0
        for i, f in enumerate(self.numeric):
            column = _column(records, f.name, n_rows)
            numbers = _numbers(column)
            missing = np.isnan(numbers)
            z = np.clip((numbers - f.mean) / f.std, -self.clip, self.clip)
            slots[:, i] = np.where(missing, offset + 1, np.where(z == 0.0, -1, offset))
            values[:, i] = np.where(missing, 1.0, z)
            offset += 2
        for i, c in enumerate(self.categorical, start=len(self.numeric)):
            column = _column(records, c.name, n_rows)
            slots[:, i] = offset + _category_slots(column, c.categories)
            offset += len(c.categories) + 2
        return slots, values

    def to_dict(self) -> dict[str, Any]:
        """Canonical, JSON-able form (part of the transform's hash)."""
        return {
            "clip": self.clip,
            "numeric": [
                {"name": f.name, "mean": f.mean, "std": f.std, "count": f.count}
                for f in self.numeric
            ],
            "categorical": [
                {"name": c.name, "categories": list(c.categories), "count": c.count}
                for c in self.categorical
            ],
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> MetadataEncoder:
        """Inverse of :meth:`to_dict`."""
        return cls(
            numeric=tuple(
                NumericField(f["name"], float(f["mean"]), float(f["std"]), int(f["count"]))
                for f in d["numeric"]
            ),
            categorical=tuple(
                CategoricalField(c["name"], tuple(c["categories"]), int(c["count"]))
                for c in d["categorical"]
            ),
            clip=float(d["clip"]),
        )


_NOTHING: Mapping[str, Any] = {}
_NUMBER_TYPES = frozenset({int, float, bool})


def _column(records: list[Mapping[str, Any]] | None, name: str, n_rows: int) -> list[Any]:
    if records is None:
        return [None] * n_rows
    return [r.get(name) for r in records]


def _numbers(column: list[Any]) -> np.ndarray:
    """The column as float64, NaN where a value is not a usable number."""
    if set(map(type, column)) <= _NUMBER_TYPES:
        try:
            numbers = np.array(column, dtype=np.float64)
        except OverflowError:
            pass  # an int beyond float range: the slow path makes it missing
        else:
            numbers[~np.isfinite(numbers)] = np.nan
            return numbers
    return np.array([np.nan if (v := as_number(x)) is None else v for x in column], np.float64)


def _category_slots(column: list[Any], categories: tuple[str, ...]) -> np.ndarray:
    """Each value's slot: its category's index, then <other>, then <missing>."""
    other, missing = len(categories), len(categories) + 1
    lookup: dict[Any, int] = {name: i for i, name in enumerate(categories)}
    if set(map(type, column)) <= {str, type(None)}:
        # Only strings and None here, so no True == 1 look-alikes can hit the dict.
        lookup[None] = lookup[""] = missing
        return np.array([lookup.get(v, other) for v in column], np.int64)
    names = map(as_category, column)
    return np.array([missing if v is None else lookup.get(v, other) for v in names], np.int64)


def _infer_kinds(
    records: Sequence[Mapping[str, Any]], config: MetadataConfig
) -> tuple[list[str], list[str]]:
    """Numeric and categorical field names, inferred where the config says None."""
    numbers: Counter[str] = Counter()
    scalars: Counter[str] = Counter()
    for record in records:
        for key, value in record.items():
            if isinstance(value, bool | str):
                scalars[key] += 1
            elif isinstance(value, int | float):
                numbers[key] += 1
    fixed = set(config.numeric or ()) | set(config.categorical or ()) | set(config.exclude)
    free = sorted((set(numbers) | set(scalars)) - fixed)
    numeric = list(config.numeric) if config.numeric is not None else []
    categorical = list(config.categorical) if config.categorical is not None else []
    for name in free:
        # A field whose values are all numbers is numeric; mixed with text it is categorical.
        if numbers[name] and not scalars[name]:
            if config.numeric is None:
                numeric.append(name)
        elif config.categorical is None:
            categorical.append(name)
    return sorted(numeric), sorted(categorical)


def fit_metadata(
    metadata: Sequence[Mapping[str, Any] | None] | None, config: MetadataConfig
) -> MetadataEncoder:
    """Fit field kinds, numeric statistics and category vocabularies on ``metadata``."""
    if not config.enabled:
        return MetadataEncoder(clip=config.clip)
    records = [r or {} for r in metadata or ()]
    numeric_names, categorical_names = _infer_kinds(records, config)
    numeric = []
    for name in numeric_names:
        values = [v for v in (as_number(r.get(name)) for r in records) if v is not None]
        mean = math.fsum(values) / len(values) if values else 0.0
        var = math.fsum((v - mean) ** 2 for v in values) / len(values) if values else 0.0
        std = math.sqrt(var) if var > 0 else 1.0
        numeric.append(NumericField(name, mean, std, len(values)))
    categorical = []
    for name in categorical_names:
        counts = Counter(v for v in (as_category(r.get(name)) for r in records) if v is not None)
        top = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[: config.max_categories]
        categorical.append(CategoricalField(name, tuple(v for v, _ in top), sum(counts.values())))
    return MetadataEncoder(tuple(numeric), tuple(categorical), config.clip)
