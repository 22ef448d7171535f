"""Labeling functions: plain Python heuristics that vote a class for one comment, or abstain.

A labeling function (LF) is a function ``(text, metadata) -> int`` returning a
class of its task or :data:`~mlcycle.labeler.votes.ABSTAIN`. LFs are
registered by name with :func:`labeling_function`; :func:`apply_lfs` runs a set
of them over many comments into an ``(n_items, n_lfs)`` vote array, and
:func:`lf_triplets` turns that array into ``(item_id, "lf:<name>", class)``
votes, so that a label model weighs LFs and crowd workers alike.

An LF that raises, or returns something that is not a class of its task,
abstains on that item; the error is recorded in :class:`LfApplication` and
the run goes on: one bad heuristic must not stop a labeling run.

Several LFs usually look at the same derived views of a text (lower-cased,
tokenized). :func:`per_text_cache` memoizes such a view for the text being
processed, so that :func:`apply_lfs`, which runs every LF on one text before
moving to the next, computes it once per text while each LF stays an
ordinary function of ``(text, metadata)``.

The starter set for the ``toxicity`` task lives in
:mod:`mlcycle.labeler.toxicity_lfs` and is registered when this module is
imported.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, TypeVar

import numpy as np

from mlcycle.common.errors import InvalidInput
from mlcycle.contracts.comments import LF_PREFIX
from mlcycle.labeler.votes import ABSTAIN

LfFn = Callable[[str, Mapping[str, Any]], int]
T = TypeVar("T")

# Classes per task; a task not listed here is binary.
TASK_CLASSES: dict[str, int] = {"toxicity": 2}
DEFAULT_CLASSES = 2
MAX_ERROR_INDICES = 5
_NAME_RE = re.compile(r"^[A-Za-z0-9_.-]{1,100}$")
_EMPTY: Mapping[str, Any] = MappingProxyType({})


@dataclass(frozen=True)
class LabelingFunction:
    """A named heuristic voting a class of ``task`` (or abstaining) for one text."""

    name: str
    fn: LfFn
    description: str
    task: str = "toxicity"

    def __call__(self, text: str, metadata: Mapping[str, Any] | None = None) -> int:
        """Apply the LF to one text, as :func:`apply_lfs` would (without its error handling)."""
        return self.fn(text, _EMPTY if metadata is None else metadata)


@dataclass(frozen=True)
class LfError:
    """What went wrong with one LF during an application."""

    count: int  # items on which it raised or returned an invalid value
    message: str  # the first error, "ExcType: message"
    item_indices: tuple[int, ...]  # the first few item indices concerned


@dataclass(frozen=True)
class LfApplication:
    """The votes of ``names`` (columns) on the applied texts (rows)."""

    votes: np.ndarray  # (n_items, n_lfs) int8, ABSTAIN = -1
    names: tuple[str, ...]
    errors: dict[str, LfError] = field(default_factory=dict)  # only the LFs that failed

    @property
    def n_items(self) -> int:
        return int(self.votes.shape[0])

    def coverage(self) -> dict[str, float]:
        """Share of items each LF voted on (did not abstain)."""
        if self.n_items == 0:
            return {name: 0.0 for name in self.names}
        share = (self.votes != ABSTAIN).mean(axis=0)
        return {name: float(share[j]) for j, name in enumerate(self.names)}


# --------------------------------------------------------------------------- registry

# (task, name) -> LF. Names are unique within a task: they become voter ids.
_REGISTRY: dict[tuple[str, str], LabelingFunction] = {}


def labeling_function(
    name: str | None = None, *, task: str = "toxicity", description: str = ""
) -> Callable[[LfFn], LfFn]:
    """Register the decorated ``(text, metadata) -> class | ABSTAIN`` function as an LF.

    ``name`` defaults to the function's name and ``description`` to the first
    line of its docstring. The function itself is returned unchanged, so it
    can still be called and tested directly. Registering a name twice for
    one task raises :class:`InvalidInput`. ``@labeling_function`` without
    parentheses works too.
    """
    if callable(name):  # used bare: @labeling_function
        fn, name = name, None
        return labeling_function(task=task, description=description)(fn)  # type: ignore[return-value]

    def decorator(fn: LfFn) -> LfFn:
        lf_name = name or fn.__name__
        doc = (fn.__doc__ or "").strip().splitlines()
        register(
            LabelingFunction(
                name=lf_name,
                fn=fn,
                description=description or (doc[0] if doc else ""),
                task=task,
            )
        )
        return fn

    return decorator


def register(lf: LabelingFunction) -> LabelingFunction:
    """Add ``lf`` to the registry; its name must be new for its task."""
    if not _NAME_RE.match(lf.name):
        raise InvalidInput(
            f"invalid labeling function name {lf.name!r}: use letters, digits, '_', '.', '-'"
        )
    if not callable(lf.fn):
        raise InvalidInput(f"labeling function {lf.name!r} is not callable")
    key = (lf.task, lf.name)
    if key in _REGISTRY:
        raise InvalidInput(
            f"labeling function {lf.name!r} is already registered for task {lf.task!r}",
            details={"name": lf.name, "task": lf.task},
        )
    _REGISTRY[key] = lf
    return lf


def register_task(task: str, n_classes: int) -> None:
    """Declare how many classes ``task`` has (a task not declared is binary)."""
    if isinstance(n_classes, bool) or not isinstance(n_classes, int) or not 2 <= n_classes <= 127:
        # Votes are stored as int8.
        raise InvalidInput(f"a task has 2 to 127 classes, not {n_classes!r}")
    TASK_CLASSES[task] = n_classes


def unregister(name: str, task: str = "toxicity") -> None:
    """Remove an LF from the registry (a no-op when it is not there)."""
    _REGISTRY.pop((task, name), None)


def registered(
    task: str = "toxicity", names: Sequence[str] | None = None
) -> list[LabelingFunction]:
    """The registered LFs of ``task``, in registration order, or exactly ``names`` in that order.

    Unknown names raise :class:`InvalidInput` naming them and listing the
    known ones.
    """
    known = {name: lf for (lf_task, name), lf in _REGISTRY.items() if lf_task == task}
    if names is None:
        return list(known.values())
    if isinstance(names, str):
        names = [names]
    unknown = [name for name in names if name not in known]
    if unknown:
        raise InvalidInput(
            f"unknown labeling function(s) for task {task!r}: {', '.join(unknown)}; "
            f"known: {', '.join(sorted(known)) or '(none)'}",
            details={"unknown": unknown, "known": sorted(known), "task": task},
        )
    return [known[name] for name in names]


# --------------------------------------------------------------------------- shared views


def per_text_cache(compute: Callable[[str], T]) -> Callable[[str], T]:
    """Memoize ``compute(text)`` for the most recent text (compared by identity).

    :func:`apply_lfs` runs all LFs on one text before the next, so a view
    several LFs need (a lower-cased copy, a token set) is computed once per
    text. The cache holds one entry, replaced atomically, so it is safe to
    share between threads and never grows.
    """
    last: list[tuple[str, T] | None] = [None]

    @functools.wraps(compute)
    def cached(text: str) -> T:
        entry = last[0]
        if entry is not None and entry[0] is text:
            return entry[1]
        value = compute(text)
        last[0] = (text, value)
        return value

    return cached


_TOKEN = re.compile(r"[^\W_]+")
# ASCII texts (nearly all) are tokenized with two C loops instead of a regex: one
# bytes.translate lower-cases letters and blanks everything but letters and digits, then
# split. About twice as fast as findall, and the same tokens.
_ASCII_FOLD = bytes(
    b + 32 if 65 <= b <= 90 else b if (48 <= b <= 57 or 97 <= b <= 122) else 32 for b in range(256)
)


@dataclass(frozen=True, slots=True)
class TextView:
    """Views of one text most LFs need: lower-cased, and its set of lower-case word tokens.

    Tokens are maximal runs of letters and digits (so "don't" gives "don" and
    "t"); curly apostrophes are straightened in ``lower`` so that one pattern
    serves both spellings.
    """

    text: str
    lower: str
    tokens: frozenset[str]


@per_text_cache
def text_view(text: str) -> TextView:
    """The :class:`TextView` of ``text``, computed once for all LFs applied to it."""
    if text.isascii():
        folded = text.encode("ascii").translate(_ASCII_FOLD).decode("ascii")
        return TextView(text, text.lower(), frozenset(folded.split()))
    lower = text.lower().replace("\u2019", "'")
    return TextView(text, lower, frozenset(_TOKEN.findall(lower)))


# --------------------------------------------------------------------------- application


def apply_lfs(
    lfs: Sequence[LabelingFunction],
    texts: Sequence[str],
    metadata: Sequence[Mapping[str, Any]] | None = None,
) -> LfApplication:
    """Run every LF on every text; ``votes[i, j]`` is LF ``j``'s class for text ``i`` or ABSTAIN.

    An LF that raises, or returns anything but ABSTAIN or a class of its
    task (``0 <= class < n_classes``; bools are not classes), abstains on
    that item and is reported in :attr:`LfApplication.errors`.
    """
    names = tuple(lf.name for lf in lfs)
    if len(set(names)) != len(names):
        duplicated = sorted({n for n in names if names.count(n) > 1})
        raise InvalidInput(f"labeling functions applied twice: {', '.join(duplicated)}")
    n_items = len(texts)
    if metadata is not None and len(metadata) != n_items:
        raise InvalidInput(f"{len(metadata)} metadata for {n_items} texts")
    metas: Sequence[Mapping[str, Any]] = metadata if metadata is not None else [_EMPTY] * n_items

    # Non-abstain votes are rare, so they are collected sparsely and written once.
    hit_items: list[list[int]] = [[] for _ in lfs]
    hit_values: list[list[int]] = [[] for _ in lfs]
    failures: dict[int, list[Any]] = {}  # column -> [count, first message, indices]
    columns = [
        (j, lf.fn, TASK_CLASSES.get(lf.task, DEFAULT_CLASSES), hit_items[j], hit_values[j])
        for j, lf in enumerate(lfs)
    ]
    for i, text in enumerate(texts):
        meta = metas[i]
        if meta is None:
            meta = _EMPTY
        for j, fn, n_classes, items, values in columns:
            try:
                vote = fn(text, meta)
            except Exception as exc:  # an LF is user code: any failure is its abstain
                _fail(failures, j, i, _describe(exc))
                continue
            if vote is ABSTAIN:  # small ints are interned: the common case costs one test
                continue
            if vote.__class__ is not int:
                coerced = _coerce(vote)
                if coerced is None:
                    _fail(failures, j, i, _invalid_message(vote))
                    continue
                vote = coerced
                if vote == ABSTAIN:
                    continue
            if 0 <= vote < n_classes:
                items.append(i)
                values.append(vote)
            elif vote != ABSTAIN:
                _fail(failures, j, i, f"ValueError: returned {vote!r}, not a class or ABSTAIN")

    votes = np.full((n_items, len(lfs)), ABSTAIN, dtype=np.int8)
    for j in range(len(lfs)):
        if hit_items[j]:
            votes[np.asarray(hit_items[j], dtype=np.int64), j] = hit_values[j]
    errors = {
        names[j]: LfError(count=count, message=message, item_indices=tuple(indices))
        for j, (count, message, indices) in sorted(failures.items())
    }
    return LfApplication(votes=votes, names=names, errors=errors)


def _coerce(vote: Any) -> int | None:
    """An integral non-bool vote as an int, else None (numpy integers are accepted)."""
    if isinstance(vote, bool | np.bool_):
        return None
    if isinstance(vote, int | np.integer):
        return int(vote)
    return None


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _describe(exc: Exception) -> str:
    """``"ExcType: message"``, even for an exception whose ``str`` itself fails."""
    try:
        message = str(exc)
    except Exception:
        message = "<unprintable>"
    return f"{type(exc).__name__}: {_shorten(message, 500)}"


def _invalid_message(value: Any) -> str:
    try:
        shown = _shorten(repr(value), 80)
    except Exception:
        shown = "<unprintable>"
    return f"TypeError: returned {shown} ({type(value).__name__}), not a class or ABSTAIN"


def _fail(failures: dict[int, list[Any]], column: int, item: int, message: str) -> None:
    record = failures.get(column)
    if record is None:
        failures[column] = [1, message, [item]]
        return
    record[0] += 1
    if len(record[2]) < MAX_ERROR_INDICES:
        record[2].append(item)


def lf_triplets(
    application: LfApplication, item_ids: Sequence[str]
) -> Iterator[tuple[str, str, int]]:
    """``(item_id, "lf:<name>", class)`` for every non-abstain vote, item by item.

    The triplets feed :meth:`VoteMatrix.from_triplets` together with the
    crowd's votes. ``item_ids[i]`` is the id of the ``i``-th applied text.
    """
    if len(item_ids) != application.n_items:
        raise InvalidInput(f"{len(item_ids)} item ids for {application.n_items} labeled items")
    voters = [LF_PREFIX + name for name in application.names]
    rows, cols = np.nonzero(application.votes != ABSTAIN)
    values = application.votes[rows, cols]
    for i, j, value in zip(rows.tolist(), cols.tolist(), values.tolist(), strict=True):
        yield item_ids[i], voters[j], value


# The starter LFs register themselves with the decorator above; imported last because
# they need it (a cycle Python resolves: this module is complete by then).
from mlcycle.labeler import toxicity_lfs as _toxicity_lfs  # noqa: E402, F401
