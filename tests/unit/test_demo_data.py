"""The demo's default data: the English mix of the shared data folder when it is there."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mlcycle.cli import app, context
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


def run_cli(args: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[int, str]:
    monkeypatch.setenv("MLCYCLE_DATA_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("COLUMNS", "400")  # rich wraps at the terminal width
    monkeypatch.setattr(context, "configure_logging", lambda *args, **kwargs: None)
    result = CliRunner().invoke(app, args)
    return result.exit_code, " ".join(result.output.split())


def test_the_demo_stops_before_the_stack_on_a_folder_without_english_corpora(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = corpus_folder(tmp_path / "data")
    args = ["demo", "--data", str(root / "armis"), "--format", "corpora", "--english"]
    code, output = run_cli(args, tmp_path, monkeypatch)
    assert code == 2 and "no English corpus found" in output, output
    assert not (tmp_path / "state" / "store.sqlite3").exists()
    assert not (tmp_path / "state" / "logs").exists()


def test_import_options_only_go_with_the_corpora_format(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = corpus_folder(tmp_path / "data")
    code, output = run_cli(["import", "davidson", str(root), "--english"], tmp_path, monkeypatch)
    assert code == 2 and "--only and --english go with --format corpora" in output, output
    args = ["import", "corpora", str(root), "--only", "wiki"]
    code, output = run_cli(args, tmp_path, monkeypatch)
    assert code == 2 and "unknown corpus 'wiki'" in output, output
