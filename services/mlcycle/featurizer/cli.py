"""``mlcycle featurize``: fit a transform (optionally) and featurize a label run into shards."""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import ValidationError
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from mlcycle.common.errors import InvalidInput
from mlcycle.common.settings import Settings
from mlcycle.common.store import open_store
from mlcycle.contracts.features import FeatureSetManifest
from mlcycle.contracts.messages import flat_errors
from mlcycle.contracts.repositories.label_runs import LabelRuns
from mlcycle.featurization.config import FeatureConfig
from mlcycle.featurization.shards import feature_set_dir
from mlcycle.featurizer.service import FeaturizerCore, core_for


def load_config(path: Path | None) -> FeatureConfig:
    """A FeatureConfig from a JSON file (defaults without one); errors name the field."""
    if path is None:
        return FeatureConfig()
    try:
        return FeatureConfig.model_validate(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, json.JSONDecodeError) as exc:
        raise InvalidInput(f"cannot read feature config {path}: {exc}") from None
    except ValidationError as exc:
        raise InvalidInput(f"bad feature config {path}: {flat_errors(exc)}") from None


def run_featurize_command(
    settings: Settings,
    console: Console,
    *,
    refit: bool,
    label_run: str | None,
    transform: str | None,
    config_path: Path | None,
) -> FeatureSetManifest:
    """Fit if asked (or if nothing is fitted yet), then build the run's feature set."""
    store = open_store(settings.store)
    try:
        core = core_for(settings, store)
        if label_run is None:
            latest = LabelRuns(store).latest(core.default_task)
            if latest is None:
                raise InvalidInput("no finished label run: run `mlcycle label` first")
            label_run = latest.id
        if refit or (transform is None and core.current_version() is None):
            fitted, _ = core.fit(label_run, load_config(config_path))
            transform = fitted.version
            console.print(f"fitted transform {fitted.version} on {label_run} (train split)")
        progress = Progress(
            SpinnerColumn(),
            TextColumn("[bold]featurize[/] {task.description}"),
            TextColumn("{task.completed:,} rows"),
            TimeElapsedColumn(),
            console=console,
        )
        with progress:
            bars: dict[str, TaskID] = {}

            def show(split: str, rows: int) -> None:
                if split not in bars:
                    bars[split] = progress.add_task(split, total=None)
                progress.update(bars[split], completed=rows)

            manifest = core.build_feature_set(label_run, transform, on_progress=show)
        _print_manifest(manifest, core, console)
        return manifest
    finally:
        store.close()


def _print_manifest(manifest: FeatureSetManifest, core: FeaturizerCore, console: Console) -> None:
    table = Table(title=f"feature set {manifest.label_run} × {manifest.transform}")
    table.add_column("split")
    table.add_column("rows", justify="right")
    table.add_column("shards", justify="right")
    for split, info in manifest.splits.items():
        table.add_row(split, f"{info.rows:,}", str(len(info.shards)))
    console.print(table)
    folder = feature_set_dir(core.root, manifest.transform, manifest.label_run)
    console.print(
        f"dim {manifest.dim:,}; labels without a stored comment: "
        f"{manifest.labels_without_comment:,}; in {folder}"
    )
