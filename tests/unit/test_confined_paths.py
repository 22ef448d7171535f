"""Paths from requests and records stay in their directory: ``..``, absolute paths and links."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlcycle.common.errors import InvalidInput
from mlcycle.common.files import confined
from mlcycle.featurization.shards import FEATURES_DIR, MANIFEST, feature_set_dir, read_manifest

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("inside", ["a.html", "sub/a.html", "sub/../a.html"])
def test_a_path_inside_is_resolved(tmp_path: Path, inside: str) -> None:
    assert confined(tmp_path, inside, what="report") == (tmp_path / inside).resolve()


@pytest.mark.parametrize("outside", ["..", "../x", "a/../../x", "/etc/passwd", ".", ""])
def test_a_path_leading_out_is_bad_input_naming_it(tmp_path: Path, outside: str) -> None:
    with pytest.raises(InvalidInput) as raised:
        confined(tmp_path / "root", outside, what="report")
    assert repr(outside) in raised.value.message
    assert raised.value.http_status == 400
    assert raised.value.details["path"] == outside


def test_a_symlink_leading_out_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    (tmp_path / "secret.txt").write_text("no")
    (root / "link.txt").symlink_to(tmp_path / "secret.txt")
    with pytest.raises(InvalidInput, match="link.txt"):
        confined(root, "link.txt", what="report")


def test_a_feature_set_path_cannot_leave_the_feature_sets(tmp_path: Path) -> None:
    # A manifest-shaped file beside the artifact store's feature sets, not in them.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / MANIFEST).write_text("{}")
    root = tmp_path / "artifacts"
    (root / FEATURES_DIR).mkdir(parents=True)
    for version, label_run in [
        ("..", "../elsewhere"),
        ("tf-1", "../../../elsewhere"),
        ("tf-1", ".."),
    ]:
        with pytest.raises(InvalidInput):
            read_manifest(root, version, label_run)
    assert (
        feature_set_dir(root, "tf-1", "lr-1") == (root / FEATURES_DIR / "tf-1" / "lr-1").resolve()
    )
