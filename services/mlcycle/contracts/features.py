"""Feature sets and transforms: what the featurizer writes and the trainer and inference read.

A feature set is a label run featurized with one transform version, stored as
shards under the artifact store; its manifest (``manifest.json``, written last)
says what it holds. A transform's description is what the featurizer's API
shows of a fitted transform.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from mlcycle.contracts.timestamps import Timestamp

FEATURE_SET_FORMAT = "mlcycle-csr-npz-v1"


class ShardEntry(BaseModel):
    """One shard file of a split: where it is, its rows, and its checksum."""

    model_config = ConfigDict(frozen=True)

    file: str = Field(description="path relative to the feature set's folder")
    rows: int
    sha256: str


class SplitShards(BaseModel):
    """The shards of one split, in order."""

    model_config = ConfigDict(frozen=True)

    rows: int
    shards: list[ShardEntry] = Field(default_factory=list)


class FeatureSetManifest(BaseModel):
    """What a complete feature set holds: ``features/<transform>/<label_run>/manifest.json``."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    format: str = FEATURE_SET_FORMAT
    transform: str
    dim: int
    label_run: str
    task: str | None
    n_classes: int
    splits: dict[str, SplitShards]
    rows: int
    labels_without_comment: int
    # Items left out because their text is a behavioural suite case (never trained on).
    held_out_rows: int = 0
    created_at: Timestamp

    def split(self, name: str) -> SplitShards:
        """The shards of split ``name`` (none when the set has no such split)."""
        return self.splits.get(name) or SplitShards(rows=0)

    def to_json(self) -> dict[str, Any]:
        """The manifest as JSON types, as it is written and served."""
        return self.model_dump(mode="json")


# -- transforms -----------------------------------------------------------------------------------


class WordGroup(BaseModel):
    """The word columns: a vocabulary or hashed n-grams, first in the vector."""

    offset: int
    dim: int
    mode: str | None
    ngram_max: int
    vocabulary_size: int


class CharGroup(BaseModel):
    """The hashed character n-gram columns."""

    offset: int
    dim: int
    ngram_range: list[int]


class NumericField(BaseModel):
    """A numeric metadata field and the statistics it is standardized with."""

    name: str
    mean: float
    std: float
    count: int


class CategoricalField(BaseModel):
    """A categorical metadata field and how many categories it was fitted with."""

    name: str
    categories: int
    count: int


class MetadataGroup(BaseModel):
    """The metadata columns, after the n-grams (and before any static embeddings)."""

    offset: int
    dim: int
    numeric: list[NumericField]
    categorical: list[CategoricalField]


class EmbeddingsGroup(BaseModel):
    """The dense static-embedding columns, after metadata: one pooled vector per text."""

    offset: int
    dim: int
    artifact: str = Field(description="content id of the embeddings artifact (m2v-...)")


class TransformGroups(BaseModel):
    """The column groups of a transform's vector, side by side."""

    word: WordGroup
    char: CharGroup
    metadata: MetadataGroup
    embeddings: EmbeddingsGroup | None = Field(
        default=None, description="present when the transform has static embeddings"
    )


class TransformDescription(BaseModel):
    """A fitted transform's version, widths, fit counts and config.

    ``config`` is the transform's feature config as JSON (its schema belongs to
    the featurization library); ``current`` is set by the featurizer, which
    knows which version is current.
    """

    version: str
    dim: int
    created_at: str = Field(description="ISO 8601, to the second; not part of the version")
    fitted_on: dict[str, int]
    groups: TransformGroups
    config: dict[str, Any]
    current: bool | None = Field(default=None, description="whether it is the current version")

    def to_json(self) -> dict[str, Any]:
        """JSON types; ``current`` only when it is known."""
        return self.model_dump(mode="json", exclude={"current"} if self.current is None else None)
