"""The featurizer's REST API: fit transforms, build feature sets, featurize texts."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from urllib.parse import quote

from pydantic import BaseModel, ConfigDict

from mlcycle.clients.base import ServiceClient

# Fitting and featurizing a large label run takes minutes, not seconds.
BUILD_TIMEOUT_S = 600.0


class TransformInfo(BaseModel):
    """A fitted transform as the featurizer describes it (more fields are kept as they come)."""

    model_config = ConfigDict(extra="allow")

    version: str
    dim: int
    current: bool | None = None
    label_run: str | None = None


class ShardEntry(BaseModel):
    """One shard file of a split: where it is (relative to the set), its rows, its checksum."""

    file: str
    rows: int
    sha256: str


class SplitShards(BaseModel):
    """The rows and shard files of one split of a feature set."""

    model_config = ConfigDict(extra="allow")

    rows: int
    shards: list[ShardEntry] = []


class FeatureSet(BaseModel):
    """A complete feature set: its manifest (a label run featurized with one transform)."""

    model_config = ConfigDict(extra="allow")

    transform: str
    label_run: str
    dim: int
    rows: int
    splits: dict[str, SplitShards]
    labels_without_comment: int = 0

    def rows_of(self, split: str) -> int:
        """Rows of ``split`` (0 when the set has none)."""
        found = self.splits.get(split)
        return found.rows if found else 0


class FeatureSetList(BaseModel):
    """Every complete feature set."""

    items: list[FeatureSet]


class SparseVector(BaseModel):
    """One text's vector: the non-zero columns and their values."""

    indices: list[int]
    values: list[float]
    truncated: bool = False


class FeaturizedTexts(BaseModel):
    """Vectors of texts, one per text in order, from one transform version."""

    transform: str
    dim: int
    vectors: list[SparseVector]
    truncated: int = 0


class FeaturizerClient(ServiceClient):
    """Transforms and feature sets on the featurizer."""

    service = "featurizer service"
    start_command = "mlcycle featurizer api"

    def fit(
        self,
        label_run: str | None = None,
        *,
        config: Mapping[str, object] | None = None,
        timeout_s: float = BUILD_TIMEOUT_S,
    ) -> TransformInfo:
        """Fit a transform on ``label_run``'s train split (the latest run without one)."""
        body: dict[str, object] = {}
        if label_run is not None:
            body["label_run"] = label_run
        if config is not None:
            body["config"] = dict(config)
        return self.call_record(
            TransformInfo, "POST", "/v1/transforms", json=body, timeout_s=timeout_s
        )

    def transform(self, version: str = "current") -> TransformInfo:
        """A stored transform's description (``current`` for the current one)."""
        return self.call_record(TransformInfo, "GET", f"/v1/transforms/{quote(version, safe='')}")

    def build_feature_set(
        self, label_run: str, *, transform: str | None = None, timeout_s: float = BUILD_TIMEOUT_S
    ) -> FeatureSet:
        """Featurize ``label_run`` into shards (idempotent); its manifest."""
        body = {"label_run": label_run}
        if transform is not None:
            body["transform"] = transform
        return self.call_record(
            FeatureSet, "POST", "/v1/feature-sets", json=body, timeout_s=timeout_s
        )

    def feature_sets(self) -> list[FeatureSet]:
        """Every complete feature set."""
        return self.call_record(FeatureSetList, "GET", "/v1/feature-sets").items

    def featurize(self, texts: Sequence[str], *, transform: str | None = None) -> FeaturizedTexts:
        """Sparse vectors of ``texts`` with ``transform`` (default: the current one)."""
        body: dict[str, object] = {"instances": [{"text": text} for text in texts]}
        if transform is not None:
            body["transform"] = transform
        return self.call_record(FeaturizedTexts, "POST", "/v1/featurize", json=body)
