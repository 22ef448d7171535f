"""The registry of labeling functions: plain Python heuristics, by task and name.

A labeling function (LF) is a function ``(text, metadata) -> int`` returning a
class of its task or :data:`~mlcycle.labeler.votes.ABSTAIN`. LFs are
registered by name with :func:`labeling_function`; names are unique within a
task, because they become voter ids (``lf:<name>``). How many classes a task
has is declared here too (a task not declared is binary).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from mlcycle.common.errors import InvalidInput

LfFn = Callable[[str, Mapping[str, Any]], int]

# Classes per task; a task not listed here is binary.
TASK_CLASSES: dict[str, int] = {"toxicity": 2}
DEFAULT_CLASSES = 2
_NAME_RE = re.compile(r"^[A-Za-z0-9_.-]{1,100}$")
EMPTY_METADATA: Mapping[str, Any] = MappingProxyType({})


@dataclass(frozen=True)
class LabelingFunction:
    """A named heuristic voting a class of ``task`` (or abstaining) for one text."""

    name: str
    fn: LfFn
    description: str
    task: str = "toxicity"

    def __call__(self, text: str, metadata: Mapping[str, Any] | None = None) -> int:
        """Apply the LF to one text, as :func:`apply_lfs` would (without its error handling)."""
        return self.fn(text, EMPTY_METADATA if metadata is None else metadata)


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
