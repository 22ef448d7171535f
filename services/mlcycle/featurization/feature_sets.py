"""Building feature sets and fitting transforms on a label run's items, read through the store.

A feature set is a label run's labeled items featurized with one transform,
written in the shard format of :mod:`mlcycle.featurization.shards`. Both the
featurizer (its consumer, API and CLI) and the trainer (one set per n-gram
variant its search tries) build them, and the trainer fits the variants'
transforms; this module is the one way both do it, so a set is the same files
whoever builds it.

A feature set is a pure function of (label run, transform version): items are
written in id order, in shards of a fixed number of rows, so running it again
gives the same files. It is built in a temporary folder and renamed into
place, so a reader never sees half a set and a killed build leaves nothing
behind but a temporary folder that the next build ignores.

The behavioural suite's cases are held out (:mod:`.held_out`): an item whose
text is a case is neither fitted on nor written to a set, and the manifest
counts what was left out.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

from mlcycle.common.errors import InvalidInput
from mlcycle.common.store import Store
from mlcycle.contracts.comments import StoredComment
from mlcycle.contracts.features import FeatureSetManifest, ShardEntry, SplitShards
from mlcycle.contracts.labels import Label
from mlcycle.contracts.repositories.comments import Comments
from mlcycle.contracts.repositories.label_runs import LabelRuns
from mlcycle.contracts.repositories.labels import Labels
from mlcycle.contracts.splits import SPLITS
from mlcycle.featurization.config import FeatureConfig
from mlcycle.featurization.held_out import NOTHING_HELD_OUT, HeldOutTexts
from mlcycle.featurization.shards import (
    MANIFEST,
    feature_set_dir,
    file_sha256,
    read_manifest,
    write_shard,
)
from mlcycle.featurization.store import TransformStore
from mlcycle.featurization.transform import Transform, fit

Progress = Callable[[str, int], None]  # (split, rows written so far in it)


def fit_on_label_run(
    store: Store,
    transforms: TransformStore,
    label_run: str,
    config: FeatureConfig,
    *,
    held_out: HeldOutTexts = NOTHING_HELD_OUT,
) -> Transform:
    """Fit ``config`` on the train split of the succeeded ``label_run`` and store the transform.

    Texts in ``held_out`` are not fitted on.
    """
    run = LabelRuns(store).require_succeeded(label_run)
    train = Labels(store).item_ids(run.id, "train")
    comments = [c for c in Comments(store).in_order(train) if c.text not in held_out]
    if not comments:
        raise InvalidInput(f"label run {run.id} has no labeled train items to fit on")
    texts, metadata = [c.text for c in comments], [dict(c.metadata) for c in comments]
    return transforms.add(fit(texts, metadata, config, artifacts=transforms.root))


def build_feature_set(
    store: Store,
    transforms: TransformStore,
    label_run: str,
    version: str | None = None,
    *,
    shard_rows: int,
    classes_of: Callable[[str], int],
    on_progress: Progress | None = None,
    held_out: HeldOutTexts = NOTHING_HELD_OUT,
) -> FeatureSetManifest:
    """Featurize ``label_run``'s labeled items with ``version`` (default current) into shards.

    ``classes_of`` gives a task's number of classes; items whose text is in
    ``held_out`` are left out and counted. Returns the manifest; a set that
    already exists is returned as it is.
    """
    run = LabelRuns(store).require_succeeded(label_run)
    transform = transforms.transform(version)
    root = transforms.root
    target = feature_set_dir(root, transform.version, label_run)
    if (target / MANIFEST).is_file():
        return read_manifest(root, transform.version, label_run)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{label_run}.building-"))
    try:
        splits, missing, left_out = _write_splits(
            store, transform, label_run, staging, shard_rows, on_progress, held_out
        )
        manifest = FeatureSetManifest(
            transform=transform.version,
            dim=transform.dim,
            label_run=label_run,
            task=run.task,
            n_classes=classes_of(run.task),
            splits=splits,
            rows=sum(s.rows for s in splits.values()),
            labels_without_comment=missing,
            held_out_rows=left_out,
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
            return read_manifest(root, transform.version, label_run)
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
    held_out: HeldOutTexts,
) -> tuple[dict[str, SplitShards], int, int]:
    labels_of, comments_of = Labels(store), Comments(store)
    splits: dict[str, SplitShards] = {}
    missing = left_out = 0
    for split in SPLITS:
        shards: list[ShardEntry] = []
        rows = 0
        chunks = _chunks(labels_of.of_split(label_run, split), rows_per_shard)
        for index, labels in enumerate(chunks):
            comments = comments_of.get_many([label.item_id for label in labels])
            present = [label for label in labels if label.item_id in comments]
            missing += len(labels) - len(present)
            kept = [label for label in present if comments[label.item_id].text not in held_out]
            left_out += len(present) - len(kept)
            present = kept
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
    return splits, missing, left_out


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
        # The trainer weighs and the evaluation slices each row by its corpus.
        sources=[comments[label.item_id].source for label in labels],
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
