"""The featurizer's REST API: fit transforms, build feature sets, featurize texts."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from urllib.parse import quote

from pydantic import BaseModel

from mlcycle.clients.base import ServiceClient
from mlcycle.contracts.features import FeatureSetManifest, TransformDescription

# Fitting and featurizing a large label run takes minutes, not seconds.
BUILD_TIMEOUT_S = 600.0


class FittedTransform(TransformDescription):
    """A transform just fitted, and the label run whose train split it was fitted on."""

    label_run: str | None = None


class FeatureSetList(BaseModel):
    """Every complete feature set."""

    items: list[FeatureSetManifest]


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
    ) -> FittedTransform:
        """Fit a transform on ``label_run``'s train split (the latest run without one)."""
        body: dict[str, object] = {}
        if label_run is not None:
            body["label_run"] = label_run
        if config is not None:
            body["config"] = dict(config)
        return self.call_record(
            FittedTransform, "POST", "/v1/transforms", json=body, timeout_s=timeout_s
        )

    def transform(self, version: str = "current") -> TransformDescription:
        """A stored transform's description (``current`` for the current one)."""
        return self.call_record(
            TransformDescription, "GET", f"/v1/transforms/{quote(version, safe='')}"
        )

    def build_feature_set(
        self, label_run: str, *, transform: str | None = None, timeout_s: float = BUILD_TIMEOUT_S
    ) -> FeatureSetManifest:
        """Featurize ``label_run`` into shards (idempotent); its manifest."""
        body = {"label_run": label_run}
        if transform is not None:
            body["transform"] = transform
        return self.call_record(
            FeatureSetManifest, "POST", "/v1/feature-sets", json=body, timeout_s=timeout_s
        )

    def feature_sets(self) -> list[FeatureSetManifest]:
        """Every complete feature set."""
        return self.call_record(FeatureSetList, "GET", "/v1/feature-sets").items

    def featurize(self, texts: Sequence[str], *, transform: str | None = None) -> FeaturizedTexts:
        """Sparse vectors of ``texts`` with ``transform`` (default: the current one)."""
        body: dict[str, object] = {"instances": [{"text": text} for text in texts]}
        if transform is not None:
            body["transform"] = transform
        return self.call_record(FeaturizedTexts, "POST", "/v1/featurize", json=body)
