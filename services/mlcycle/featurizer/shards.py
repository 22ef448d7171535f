"""Building feature sets: a finished label run featurized with one transform into shards.

The file format (layout, shard files, manifest) is
:mod:`mlcycle.featurization.shards`; this module reads the run's labels and
comments from the store and writes a set in that format.

A feature set is a pure function of (label run, transform version): items are
written in id order, in shards of a fixed number of rows, so running it again
gives the same files. It is built in a temporary folder and renamed into
place, so a reader never sees half a set and a killed build leaves nothing
behind but a temporary folder that the next build ignores.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

from mlcycle.common.store import Store
from mlcycle.contracts.comments import StoredComment
from mlcycle.contracts.features import FeatureSetManifest, ShardEntry, SplitShards
from mlcycle.contracts.labels import Label
from mlcycle.contracts.repositories.comments import Comments
from mlcycle.contracts.repositories.label_runs import LabelRuns
from mlcycle.contracts.repositories.labels import Labels
from mlcycle.contracts.splits import SPLITS
from mlcycle.featurization.shards import (
    MANIFEST,
    feature_set_dir,
    file_sha256,
    read_manifest,
    write_shard,
)
from mlcycle.featurization.transform import Transform
from mlcycle.featurizer.service import FeaturizerCore

Progress = Callable[[str, int], None]  # (split, rows written so far in it)


def build_feature_set(
    core: FeaturizerCore,
    store: Store,
    label_run: str,
    version: str | None = None,
    *,
    shard_rows: int | None = None,
    on_progress: Progress | None = None,
) -> FeatureSetManifest:
    """Featurize ``label_run``'s labeled items with ``version`` (default current) into shards.

    Returns the manifest; a set that already exists is returned as it is.
    """
    run = LabelRuns(store).require_succeeded(label_run)
    transform = core.transform(version)
    target = feature_set_dir(core.root, transform.version, label_run)
    if (target / MANIFEST).is_file():
        return read_manifest(core.root, transform.version, label_run)
    rows_per_shard = shard_rows or core.settings.shard_rows
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{label_run}.building-"))
    try:
        splits, missing = _write_splits(
            store, transform, label_run, staging, rows_per_shard, on_progress
        )
        manifest = FeatureSetManifest(
            transform=transform.version,
            dim=transform.dim,
            label_run=label_run,
            task=run.task,
            n_classes=core.settings.classes_of(run.task),
            splits=splits,
            rows=sum(s.rows for s in splits.values()),
            labels_without_comment=missing,
            created_at=datetime.now(UTC),
        )
        (staging / MANIFEST).write_text(json.dumps(manifest.to_json(), indent=1), encoding="utf-8")
        _fsync_tree(staging)
        try:
            os.rename(staging, target)
        except OSError:
            if not (target / MANIFEST).is_file():
                raise
            shutil.rmtree(staging, ignore_errors=True)  # built concurrently by someone else
            return read_manifest(core.root, transform.version, label_run)
        return manifest
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _write_splits(
    store: Store,
    transform: Transform,
    label_run: str,
    staging: Path,
    rows_per_shard: int,
    on_progress: Progress | None,
) -> tuple[dict[str, SplitShards], int]:
    labels_of, comments_of = Labels(store), Comments(store)
    splits: dict[str, SplitShards] = {}
    missing = 0
    for split in SPLITS:
        shards: list[ShardEntry] = []
        rows = 0
        chunks = _chunks(labels_of.of_split(label_run, split), rows_per_shard)
        for index, labels in enumerate(chunks):
            comments = comments_of.get_many([label.item_id for label in labels])
            present = [label for label in labels if label.item_id in comments]
            missing += len(labels) - len(present)
            if not present:
                continue
            path = staging / split / f"shard-{index:05d}.npz"
            _write_shard(path, transform, present, comments)
            file = f"{split}/{path.name}"
            shards.append(ShardEntry(file=file, rows=len(present), sha256=file_sha256(path)))
            rows += len(present)
            if on_progress is not None:
                on_progress(split, rows)
        splits[split] = SplitShards(rows=rows, shards=shards)
    return splits, missing


def _chunks(labels: Iterator[Label], size: int) -> Iterator[list[Label]]:
    chunk: list[Label] = []
    for label in labels:
        chunk.append(label)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _write_shard(
    path: Path,
    transform: Transform,
    labels: list[Label],
    comments: dict[str, StoredComment],
) -> None:
    texts = [comments[label.item_id].text for label in labels]
    metadata = [dict(comments[label.item_id].metadata) for label in labels]
    write_shard(
        path,
        transform.apply(texts, metadata, unknown_fields="ignore"),
        labels=[label.label for label in labels],
        probabilities=[label.probabilities for label in labels],
        item_ids=[label.item_id for label in labels],
    )


def _fsync_tree(root: Path) -> None:
    """Flush every file and folder of a staged set before it is renamed into place."""
    for path in sorted(root.rglob("*"), reverse=True):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    fd = os.open(root, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
