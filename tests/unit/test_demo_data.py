"""The demo's default data: the English mix of the shared data folder when it is there."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from mlcycle.common.errors import InvalidInput
from mlcycle.local.demo import describe_data
from tests.unit.test_corpora_import import corpus_folder

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]


def demo_command(root: Path) -> str:
    """The command `make demo` would run from a checkout at ``root/repo`` (dry run)."""
    repo = root / "repo"
    repo.mkdir()
    shutil.copy(REPO / "Makefile", repo / "Makefile")
    (repo / "pyproject.toml").write_text("")
    out = subprocess.run(
        ["make", "-n", "demo"], cwd=repo, capture_output=True, text=True, check=True
    ).stdout
    return next(line for line in out.splitlines() if "mlcycle demo" in line).strip()


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_demo_reads_the_english_mix_when_the_shared_folder_is_there(tmp_path: Path) -> None:
    (tmp_path / "shared" / "data").mkdir(parents=True)
    assert demo_command(tmp_path) == (
        ".venv/bin/mlcycle demo --data ../shared/data --format corpora --english"
    )


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_demo_downloads_without_the_shared_folder(tmp_path: Path) -> None:
    assert demo_command(tmp_path) == ".venv/bin/mlcycle demo"


def test_the_dataset_stage_names_the_corpora_of_the_mix(tmp_path: Path) -> None:
    root = corpus_folder(tmp_path / "data")
    assert describe_data([root], "corpora:english") == (
        "corpora: davidson, md-agreement, convabuse, hs-brexit, hatexplain"
    )
    assert describe_data([root / "armis"], "lewidi") == "1 local file(s), format lewidi"


def test_a_folder_without_corpora_fails_in_the_dataset_stage(tmp_path: Path) -> None:
    (tmp_path / "README.md").write_text("nothing here")
    with pytest.raises(InvalidInput, match="no English corpus found"):
        describe_data([tmp_path], "corpora:english")
