"""The training job's report: a self-contained HTML page and a rich table for the terminal."""

from __future__ import annotations

import base64
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from rich.console import Console

from mlcycle.evaluation.classification import evaluate
from mlcycle.trainer.report import SplitResult, summary_table, write_report

SCRIPT = "<script>alert('x')</script>"
PLOTS = {"roc", "pr", "calibration", "trials", "learning"}


def split(name: str, n: int, k: int, seed: int, **slices: list[Any]) -> SplitResult:
    rng = np.random.RandomState(seed)
    labels = rng.randint(0, k, n)
    probs = rng.dirichlet(np.ones(k), n)
    probs[np.arange(n), labels] += 0.8
    probs /= probs.sum(axis=1, keepdims=True)
    names = ["clean", "toxic", "severe"][:k]
    evaluation = evaluate(probs, labels, names, slices=slices or None, min_slice_size=10)
    return SplitResult(name, probs, labels, evaluation)


TRIALS: list[dict[str, Any]] = [
    {"number": 0, "state": "complete", "params": {"lr": 0.01, "units": 64},
     "dev": {"roc_auc": 0.81234}, "seconds": 12.5, "error": None},
    {"number": 1, "state": "pruned", "params": {"lr": 0.1, "units": 16},
     "dev": {"roc_auc": 0.60111}, "seconds": 3.0, "error": None},
    {"number": 2, "state": "failed", "params": {"lr": 1.0, "units": 8, "[bold]x": "[/]"},
     "dev": None, "seconds": 0.4, "error": f"ValueError: {SCRIPT}"},
    {"number": 3, "state": "complete", "params": {"lr": 0.003, "units": 128},
     "dev": {"roc_auc": 0.91357}, "seconds": 20.25, "error": None},
]  # fmt: skip


def report_args(dev: SplitResult, test: SplitResult | None) -> dict[str, Any]:
    return {
        "title": "Training job tj-<1>",
        "summary": {"job id": "tj-1", "blessed": True, "reason": "roc_auc 0.91 >= 0.9"},
        "trials": TRIALS,
        "metric": "roc_auc",
        "dev": dev,
        "test": test,
        "learning_curves": {"loss": [0.6, 0.4, 0.3], "dev_loss": [0.65, 0.5, 0.45],
                            "dev_roc_auc": [0.7, 0.85, 0.91]},
    }  # fmt: skip


def plots(page: str) -> dict[str, bytes]:
    found = re.findall(
        r"<figure data-plot='(\w+)'><img alt='[^']*' "
        r"src='data:image/png;base64,([A-Za-z0-9+/=]+)'>",
        page,
    )
    return {name: base64.b64decode(data) for name, data in found}


@pytest.fixture(scope="module")
def binary_page(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    dev = split("dev", 120, 2, seed=1, lang=["en", SCRIPT, "de"] * 40)
    test = split("test", 90, 2, seed=2, lang=["en", "de", SCRIPT] * 30)
    path = tmp_path_factory.mktemp("report") / "jobs" / "tj-1" / "report.html"
    comparison = {"production v3": {"roc_auc": 0.88}, "candidate": {"roc_auc": 0.91357}}
    written = write_report(path, **report_args(dev, test), comparison=comparison)
    assert written == path
    return path, path.read_text(encoding="utf-8")


def test_page_is_self_contained_with_every_plot(binary_page: tuple[Path, str]) -> None:
    path, page = binary_page
    images = plots(page)
    assert set(images) == PLOTS
    assert all(png.startswith(b"\x89PNG\r\n\x1a\n") for png in images.values())
    assert page.count("<img") == len(PLOTS)
    assert "http://" not in page and "https://" not in page and "<link" not in page
    # Written atomically: only the page is left in its directory.
    assert [p.name for p in path.parent.iterdir()] == ["report.html"]


def test_page_lists_trials_metrics_and_comparison(binary_page: tuple[Path, str]) -> None:
    _, page = binary_page
    assert "<td>0</td><td>complete</td><td>0.8123</td><td>0.01</td><td>64</td>" in page
    assert "<tr class='best'><td>3</td><td>complete</td><td>0.9136</td>" in page
    assert "<tr class='failed'><td>2</td><td>failed</td><td>–</td>" in page
    assert "<td>1</td><td>pruned</td><td>0.6011</td>" in page
    assert "<h2>Comparison</h2>" in page and "production v3" in page
    assert "<th>dev</th><th>test</th>" in page
    for label in ("ROC-AUC", "PR-AUC", "weighted F1", "best threshold", "ECE", "log loss"):
        assert label in page
    assert "<td>roc_auc 0.91 &gt;= 0.9</td>" in page.replace(" class='text'", "")
    assert "Training job tj-&lt;1&gt;" in page


def test_page_escapes_user_strings(binary_page: tuple[Path, str]) -> None:
    _, page = binary_page
    assert "<script" not in page
    escaped = "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;"
    assert f"ValueError: {escaped}" in page  # the trial error
    assert page.count(f"<td>{escaped}</td>") == 2  # the slice value, on dev and on test


def test_page_without_test_split(tmp_path: Path) -> None:
    dev = split("dev", 80, 2, seed=3)
    path = write_report(tmp_path / "report.html", **report_args(dev, None))
    page = path.read_text(encoding="utf-8")
    assert set(plots(page)) == PLOTS
    assert "<th>dev</th></tr>" in page and "<th>test</th>" not in page
    assert "No slice fields were given." in page
    assert "<h2>Comparison</h2>" not in page


def test_page_of_a_three_class_model_replaces_an_old_one(tmp_path: Path) -> None:
    path = tmp_path / "report.html"
    path.write_text("old", encoding="utf-8")
    dev = split("dev", 150, 3, seed=4)
    test = split("test", 150, 3, seed=5)
    args = report_args(dev, test) | {"learning_curves": {}, "trials": []}
    page = write_report(path, **args).read_text(encoding="utf-8")
    assert set(plots(page)) == {"roc", "pr", "calibration"}
    assert "<td>argmax</td><td>argmax</td>" in page
    assert "<th>dev: true \\ predicted</th><th>clean</th><th>toxic</th><th>severe</th>" in page
    assert "No trial ran." in page and "No per-epoch figures were recorded." in page
    best = "<tr><td>best threshold (positive F1)</td><td>–</td><td>–</td></tr>"
    assert best in page


def test_summary_table_renders_trials_and_the_selected_model() -> None:
    dev = split("dev", 120, 2, seed=1).evaluation
    test = split("test", 90, 2, seed=2).evaluation
    console = Console(record=True, width=160, color_system=None)
    console.print(summary_table(TRIALS, "roc_auc", dev, test))
    text = console.export_text()
    for value in ("0.8123", "0.6011", "0.9136", "20.2", "pruned", "failed"):
        assert value in text
    assert "lr=0.003 units=128" in text
    assert "[bold]x=[/]" in text  # markup in user data is shown, not interpreted
    assert f"dev: accuracy {dev.accuracy:.4f}, ROC-AUC {dev.roc_auc:.4f}" in text
    assert f"test: accuracy {test.accuracy:.4f}" in text
    assert f"weighted F1 {test.weighted_f1:.4f}" in text

    alone = Console(record=True, width=160, color_system=None)
    alone.print(summary_table([], "log_loss", dev, None))
    assert "test:" not in alone.export_text()
