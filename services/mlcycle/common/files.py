"""Files every service shares: durable writes, and paths confined to their directory."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from mlcycle.common.errors import InvalidInput


def write_atomically(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so readers see the old file or the new one, never half.

    The bytes are fsynced before the rename, so after a crash the file is
    either complete or absent.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def confined(root: Path, path: str | Path, *, what: str) -> Path:
    """``path`` (relative to ``root``, or absolute) resolved, if it names something in ``root``.

    Symlinks are resolved on both sides, so neither ``..`` nor a link can lead
    out. A path that leads out, or to ``root`` itself, is bad input naming the
    path (a 400 at the edges): it came from a request or a record and is never
    followed.
    """
    base = Path(root).resolve()
    target = (base / path).resolve()
    if target == base or not target.is_relative_to(base):
        raise InvalidInput(
            f"{what} {str(path)!r} is outside {base}",
            details={"path": str(path), "directory": str(base)},
        )
    return target
