"""Feature shards: a label run featurized with one transform, as compressed CSR files.

Layout under the artifact store::

    features/<transform version>/<label run>/
        manifest.json                 written last: its presence means "complete"
        train/shard-00000.npz ...     CSR rows + labels + soft labels + item ids
        dev/...  test/...

A feature set is a pure function of (label run, transform version): items are
written in id order, in shards of a fixed number of rows, so running it again
gives the same files. It is built in a temporary folder and renamed into
place, so a reader never sees half a set and a killed build leaves nothing
behind but a temporary folder that the next build ignores.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from mlcycle.common.errors import InvalidInput, NotFound
from mlcycle.common.store import COMMENTS, LABELS, Store
from mlcycle.contracts.splits import SPLITS
from mlcycle.featurization.transform import SparseBatch, Transform
from mlcycle.featurizer.service import FeaturizerCore
from mlcycle.labeler.runs import get_run

FORMAT = "mlcycle-csr-npz-v1"
MANIFEST = "manifest.json"
Progress = Callable[[str, int], None]  # (split, rows written so far in it)


@dataclass(frozen=True)
class Shard:
    """One shard read back: CSR features and what the rows are labeled."""

    features: SparseBatch
    labels: np.ndarray  # int16 (n,)
    probabilities: np.ndarray  # float32 (n, n_classes)
    item_ids: np.ndarray  # str (n,)


def feature_set_dir(root: Path, version: str, label_run: str) -> Path:
    """Where the feature set of (``version``, ``label_run``) lives."""
    return root / "features" / version / label_run


def read_manifest(root: Path, version: str, label_run: str) -> dict[str, Any]:
    """The manifest of a complete feature set, or NotFound."""
    path = feature_set_dir(root, version, label_run) / MANIFEST
    if not path.is_file():
        raise NotFound(
            f"no feature set for label run {label_run!r} with transform {version!r}",
            details={"transform": version, "label_run": label_run},
        )
    return dict(json.loads(path.read_text(encoding="utf-8")))


def list_feature_sets(root: Path) -> list[dict[str, Any]]:
    """Every complete feature set's manifest."""
    return [
        json.loads(path.read_text(encoding="utf-8"))
        for path in sorted((root / "features").glob(f"*/*/{MANIFEST}"))
    ]


def build_feature_set(
    core: FeaturizerCore,
    store: Store,
    label_run: str,
    version: str | None = None,
    *,
    shard_rows: int | None = None,
    on_progress: Progress | None = None,
) -> dict[str, Any]:
    """Featurize ``label_run``'s labeled items with ``version`` (default current) into shards.

    Returns the manifest; a set that already exists is returned as it is.
    """
    run = get_run(store, label_run)
    if run.get("status") != "succeeded":
        raise InvalidInput(f"label run {label_run} has not finished ({run.get('status')})")
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
        manifest = {
            "format": FORMAT,
            "transform": transform.version,
            "dim": transform.dim,
            "label_run": label_run,
            "task": run.get("task"),
            "n_classes": core.settings.classes_of(str(run.get("task"))),
            "splits": splits,
            "rows": sum(s["rows"] for s in splits.values()),
            "labels_without_comment": missing,
            "created_at": datetime.now(UTC).isoformat(),
        }
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=1), encoding="utf-8")
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
) -> tuple[dict[str, Any], int]:
    splits: dict[str, Any] = {}
    missing = 0
    for split in SPLITS:
        shards = []
        rows = 0
        for index, labels in enumerate(
            _chunks(store.scan(LABELS, filters={"run": label_run, "split": split}), rows_per_shard)
        ):
            comments = store.get_many(COMMENTS, [label["item_id"] for label in labels])
            present = [label for label in labels if label["item_id"] in comments]
            missing += len(labels) - len(present)
            if not present:
                continue
            path = staging / split / f"shard-{index:05d}.npz"
            _write_shard(path, transform, present, comments)
            entry = {"file": f"{split}/{path.name}", "rows": len(present), "sha256": _sha256(path)}
            shards.append(entry)
            rows += len(present)
            if on_progress is not None:
                on_progress(split, rows)
        splits[split] = {"rows": rows, "shards": shards}
    return splits, missing


def _chunks(docs: Iterator[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    chunk: list[dict[str, Any]] = []
    for doc in docs:
        chunk.append(doc)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _write_shard(
    path: Path,
    transform: Transform,
    labels: list[dict[str, Any]],
    comments: dict[str, dict[str, Any]],
) -> None:
    texts = [str(comments[label["item_id"]].get("text") or "") for label in labels]
    metadata = [dict(comments[label["item_id"]].get("metadata") or {}) for label in labels]
    batch = transform.apply(texts, metadata, unknown_fields="ignore")
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as handle:
        np.savez_compressed(
            handle,
            indptr=batch.indptr,
            indices=batch.indices,
            values=batch.values,
            truncated=batch.truncated,
            dim=np.array(batch.dim, dtype=np.int64),
            labels=np.array([label["label"] for label in labels], dtype=np.int16),
            probabilities=np.array([label["probabilities"] for label in labels], dtype=np.float32),
            item_ids=np.array([label["item_id"] for label in labels], dtype=np.str_),
        )


def read_shard(path: Path) -> Shard:
    """One shard file back as arrays."""
    with np.load(path, allow_pickle=False) as data:
        features = SparseBatch(
            indptr=data["indptr"],
            indices=data["indices"],
            values=data["values"],
            dim=int(data["dim"]),
            truncated=data["truncated"],
        )
        return Shard(features, data["labels"], data["probabilities"], data["item_ids"])


def read_split(root: Path, manifest: dict[str, Any], split: str) -> Iterator[Shard]:
    """The shards of one split, in order, each checked against its manifest checksum."""
    base = feature_set_dir(root, manifest["transform"], manifest["label_run"])
    for entry in manifest["splits"].get(split, {}).get("shards", []):
        path = base / entry["file"]
        if _sha256(path) != entry["sha256"]:
            raise InvalidInput(f"feature shard {path} does not match its manifest checksum")
        yield read_shard(path)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


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
