"""What the registry accepts as a model name, a version and a reason (InvalidInput otherwise)."""

from __future__ import annotations

import re

from mlcycle.common.errors import InvalidInput
from mlcycle.contracts.models import MAX_VERSION, NAME_PATTERN, SERVING_KIND

_NAME = re.compile(NAME_PATTERN)
# "serving:<name>" is the pointer id; a model named "serving" could collide with it.
_RESERVED_NAMES = frozenset({SERVING_KIND})


def check_name(name: str) -> str:
    """A model name usable as a folder, a record id part and a served name, or InvalidInput."""
    if not isinstance(name, str) or not _NAME.match(name) or name in _RESERVED_NAMES:
        raise InvalidInput(
            f"invalid model name {name!r}: letters, digits, '_', '.', '-' (up to 64), "
            f"starting with a letter or digit, not {sorted(_RESERVED_NAMES)}",
            details={"name": name},
        )
    return name


def check_version(version: int) -> int:
    """A positive int64 version (TF Serving's numeric version folders), or InvalidInput."""
    if isinstance(version, bool) or not isinstance(version, int) or not 1 <= version <= MAX_VERSION:
        raise InvalidInput(
            f"version must be an integer from 1 to {MAX_VERSION}", details={"version": str(version)}
        )
    return version


def check_reason(reason: str) -> str:
    """The reason without surrounding blanks; a blank one is InvalidInput."""
    if not isinstance(reason, str) or not reason.strip():
        raise InvalidInput("a reason is required: say why, it is kept in the model's history")
    return reason.strip()
