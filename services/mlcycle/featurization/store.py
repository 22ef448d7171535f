"""The transform store: fitted transforms in the artifact store, by version, and the current one.

Transforms live under ``<root>/transforms/`` by their content-hash version;
one of them is *current* (``transforms/CURRENT``), the one new feature sets
and requests without a version use. A fitted transform never changes, so a
model trained with version ``tf-…`` is served with exactly that version, or
refused when it is missing. The featurizer writes here; the trainer and the
inference service only read.
"""

from __future__ import annotations

import threading
from pathlib import Path

from mlcycle.common.errors import NotFound
from mlcycle.common.files import write_atomically
from mlcycle.featurization.transform import TRANSFORMS_DIR, Transform, list_versions

CURRENT = "CURRENT"
# How many versions a NotFound lists: the newest ones, enough to spot a typo.
LISTED_VERSIONS = 20


class TransformStore:
    """Stored transforms under ``root``, each loaded once and then shared (thread-safe)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._cache: dict[str, Transform] = {}
        self._lock = threading.Lock()

    def versions(self) -> list[str]:
        """Every stored transform version, sorted by name."""
        return list_versions(self.root)

    def current_version(self) -> str | None:
        """The version used when none is named, or None before the first fit."""
        pointer = self.root / TRANSFORMS_DIR / CURRENT
        return pointer.read_text(encoding="ascii").strip() if pointer.is_file() else None

    def set_current(self, version: str) -> None:
        """Make ``version`` (which must exist) the current transform."""
        self.transform(version)
        write_atomically(self.root / TRANSFORMS_DIR / CURRENT, version.encode("ascii"))

    def transform(self, version: str | None = None) -> Transform:
        """The transform ``version`` (default: current); NotFound says what exists."""
        wanted = version or self.current_version()
        if wanted is None:
            raise NotFound("no transform has been fitted yet: run `mlcycle featurize --fit`")
        with self._lock:
            cached = self._cache.get(wanted)
        if cached is not None:
            return cached
        try:
            loaded = Transform.load(self.root, wanted)
        except NotFound:
            raise NotFound(
                f"transform {wanted!r} is not in the artifact store",
                details={"version": wanted, "available": self.versions()[-LISTED_VERSIONS:]},
            ) from None
        with self._lock:
            self._cache[wanted] = loaded
        return loaded

    def add(self, transform: Transform) -> Transform:
        """Save ``transform`` (a no-op when its version is stored) and keep it loaded."""
        transform.save(self.root)
        with self._lock:
            self._cache[transform.version] = transform
        return transform
