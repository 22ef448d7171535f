"""Feature shards on disk: a label run featurized with one transform, as compressed CSR files.

Layout under the artifact store::

    features/<transform version>/<label run>/
        manifest.json                 written last: its presence means "complete"
        train/shard-00000.npz ...     CSR rows + labels + soft labels + item ids + sources
        dev/...  test/...

This module is the file format: where a set lives, one shard written and read
back, a manifest read and a split iterated with its checksums checked. The
featurizer builds sets (it reads labels and comments); the trainer reads them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mlcycle.common.errors import InvalidInput, NotFound
from mlcycle.common.files import confined
from mlcycle.contracts.features import FeatureSetManifest
from mlcycle.featurization.sparse import SparseBatch

FEATURES_DIR = "features"
MANIFEST = "manifest.json"


@dataclass(frozen=True)
class Shard:
    """One shard read back: CSR features and what the rows are labeled."""

    features: SparseBatch
    labels: np.ndarray  # int16 (n,)
    probabilities: np.ndarray  # float32 (n, n_classes)
    item_ids: np.ndarray  # str (n,)
    # Each row's comment source (its corpus); "" when unknown, as in shards written before
    # sources were kept.
    sources: np.ndarray  # str (n,)


UNKNOWN_SOURCE = ""


def feature_set_dir(root: Path, version: str, label_run: str) -> Path:
    """Where the feature set of (``version``, ``label_run``) lives; 400 when that leads out."""
    versions = root / FEATURES_DIR
    return confined(confined(versions, version, what="transform"), label_run, what="label run")


def read_manifest(root: Path, version: str, label_run: str) -> FeatureSetManifest:
    """The manifest of a complete feature set, or NotFound."""
    path = feature_set_dir(root, version, label_run) / MANIFEST
    if not path.is_file():
        raise NotFound(
            f"no feature set for label run {label_run!r} with transform {version!r}",
            details={"transform": version, "label_run": label_run},
        )
    return FeatureSetManifest.model_validate_json(path.read_bytes())


def list_feature_sets(root: Path) -> list[FeatureSetManifest]:
    """Every complete feature set's manifest, by transform version then label run."""
    return [
        FeatureSetManifest.model_validate_json(path.read_bytes())
        for path in sorted((root / FEATURES_DIR).glob(f"*/*/{MANIFEST}"))
    ]


def write_shard(
    path: Path,
    features: SparseBatch,
    labels: Sequence[int],
    probabilities: Sequence[Sequence[float]],
    item_ids: Sequence[str],
    sources: Sequence[str | None] | None = None,
) -> None:
    """Write one shard file: the rows' CSR features, hard and soft labels, ids and sources."""
    if sources is None:
        sources = [UNKNOWN_SOURCE] * len(item_ids)
    if len(sources) != len(item_ids):
        raise ValueError(f"{len(sources)} sources for {len(item_ids)} rows")
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as handle:
        np.savez_compressed(
            handle,
            indptr=features.indptr,
            indices=features.indices,
            values=features.values,
            truncated=features.truncated,
            dim=np.array(features.dim, dtype=np.int64),
            labels=np.array(labels, dtype=np.int16),
            probabilities=np.array(probabilities, dtype=np.float32),
            item_ids=np.array(item_ids, dtype=np.str_),
            sources=np.array([s or UNKNOWN_SOURCE for s in sources], dtype=np.str_),
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
        item_ids = data["item_ids"]
        sources = (
            data["sources"]
            if "sources" in data.files
            else np.full(len(item_ids), UNKNOWN_SOURCE, dtype=np.str_)
        )
        return Shard(features, data["labels"], data["probabilities"], item_ids, sources)


def read_split(root: Path, manifest: FeatureSetManifest, split: str) -> Iterator[Shard]:
    """The shards of one split, in order, each checked against its manifest checksum."""
    base = feature_set_dir(root, manifest.transform, manifest.label_run)
    for entry in manifest.split(split).shards:
        path = base / entry.file
        if file_sha256(path) != entry.sha256:
            raise InvalidInput(f"feature shard {path} does not match its manifest checksum")
        yield read_shard(path)


def file_sha256(path: Path) -> str:
    """The hex SHA-256 of a file, read in 1 MB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
