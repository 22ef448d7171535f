"""The committed gRPC stubs are exactly what regenerating them from proto/ gives."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
COMMITTED = REPO / "services" / "mlcycle" / "protos"
# Hand-written: the package docstring of mlcycle.protos itself.
HAND_WRITTEN = {"__init__.py"}


def _tree(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` but caches and hand-written ones, by relative path."""
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file()
        and "__pycache__" not in p.parts
        and p.relative_to(root).as_posix() not in HAND_WRITTEN
    }


@pytest.mark.integration
def test_committed_stubs_match_a_fresh_generation(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, str(REPO / "scripts" / "gen_protos.py"), "--out", str(tmp_path)],
        check=True,
        cwd=REPO,
        capture_output=True,
    )
    fresh, committed = _tree(tmp_path), _tree(COMMITTED)
    assert "mlcycle/v1/collector_pb2_grpc.py" in fresh
    assert sorted(fresh) == sorted(committed), "run `make protos` and commit the result"
    stale = [name for name in fresh if fresh[name] != committed[name]]
    assert not stale, f"stale stubs {stale}: run `make protos` and commit the result"


def test_generated_imports_resolve_inside_the_package() -> None:
    text = (COMMITTED / "mlcycle" / "v1" / "collector_pb2_grpc.py").read_text("utf-8")
    assert "from mlcycle.protos.mlcycle.v1 import collector_pb2" in text
    assert "\nfrom mlcycle.v1 import" not in text
