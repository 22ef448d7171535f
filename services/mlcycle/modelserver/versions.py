"""Which versions of a model exist on disk, and which of them its version policy serves.

TF Serving's layout: ``<base_path>/<version>/`` where the folder name is a
number. Anything else in the base path (``.candidate-3/``, ``tmp/``, files) is
not a version and is ignored, so writers can stage a version under another name
and rename it into place when it is complete.

Policies, as in ``ModelServerConfig``: ``latest { num_versions: N }`` (the
default, N=1), ``all {}`` and ``specific { versions: ... }``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

PolicyKind = Literal["latest", "all", "specific"]
SAVED_MODEL_FILES = ("saved_model.pb", "saved_model.pbtxt")


@dataclass(frozen=True)
class VersionPolicy:
    """The versions of a model that should be served, given those on disk."""

    kind: PolicyKind = "latest"
    num_versions: int = 1
    versions: frozenset[int] = field(default_factory=frozenset)

    def aspired(self, found: Iterable[int]) -> set[int]:
        """The subset of ``found`` this policy serves."""
        present = set(found)
        if self.kind == "all":
            return present
        if self.kind == "specific":
            return present & self.versions
        return set(sorted(present, reverse=True)[: max(1, self.num_versions)])

    def describe(self) -> str:
        """``latest 1``, ``all`` or ``specific [1, 3]``, for logs and messages."""
        if self.kind == "latest":
            return f"latest {self.num_versions}"
        if self.kind == "specific":
            return f"specific {sorted(self.versions)}"
        return "all"


def list_versions(base_path: Path) -> dict[int, Path]:
    """Version number → folder of every numeric folder directly under ``base_path``.

    Empty when the base path does not exist (yet). When two folders denote the same
    number (``7`` and ``007``), the canonical spelling wins.
    """
    found: dict[int, Path] = {}
    try:
        entries = list(os.scandir(base_path))
    except (FileNotFoundError, NotADirectoryError):
        return found
    for entry in sorted(entries, key=lambda e: e.name):
        name = entry.name
        if not (name.isascii() and name.isdigit()):
            continue
        try:
            if not entry.is_dir():
                continue
        except OSError:
            continue
        version = int(name)
        if version not in found or name == str(version):
            found[version] = Path(entry.path)
    return found


def fingerprint(path: Path) -> tuple[int, ...]:
    """Changes when a version folder's SavedModel is rewritten (so a failed load is retried)."""
    stamps: list[int] = []
    for name in ("", *SAVED_MODEL_FILES):
        try:
            stat = (path / name).stat() if name else path.stat()
        except OSError:
            stamps += [0, 0]
            continue
        stamps += [stat.st_mtime_ns, stat.st_size]
    return tuple(stamps)
