"""A model version's ``metadata.json``: what the trainer exports next to the SavedModel.

The inference service reads it from the models volume the model server serves
from: serving needs the transform, the classes and the threshold, lineage shows
the rest.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError

from mlcycle.common.errors import Unavailable
from mlcycle.contracts.messages import flat_errors
from mlcycle.inference.schemas import JsonObject

METADATA = "metadata.json"


@dataclass(frozen=True)
class ServedModel:
    """The model this service serves and where its files are.

    The name and the models volume are the trainer's (it exports there), the
    artifact store the featurizer's; the inference service only reads them.
    """

    name: str
    models_dir: Path
    artifacts_dir: Path

    def version_dir(self, version: int) -> Path:
        """``<models_dir>/<name>/<version>``, where the trainer exported that version."""
        return self.models_dir / self.name / str(version)


class VersionMetadata(BaseModel):
    """A model version's ``metadata.json``, as the trainer exports it next to the SavedModel.

    Serving needs ``transform``, ``classes`` and ``threshold``; lineage shows the
    rest. Every field may be absent; fields not declared here are kept as given.
    """

    model_config = ConfigDict(extra="allow", frozen=True)

    name: str | None = None
    version: int | None = None
    created_at: str | None = None
    job: str | None = None
    task: str | None = None
    label_run: str | None = None
    transform: str | None = None
    classes: list[str | int] | None = None
    threshold: float | None = None
    # How the threshold was chosen; "score_prior" is the prior the served scores are under.
    threshold_policy: JsonObject | None = None
    selection_metric: str | None = None
    # {"dev": {metric: value}, "test": {...} | null}
    metrics: dict[str, JsonObject | None] | None = None
    hyperparameters: JsonObject | None = None
    training: JsonObject | None = None
    data: JsonObject | None = None
    blessing: JsonObject | None = None
    git_revision: str | None = None
    # What the signature reads: absent for sparse n-gram rows; {"kind": "tokens", ...}
    # for the encoder variant (mlcycle.inference.tokens).
    input: JsonObject | None = None


def read_version_metadata(model: ServedModel, version: int) -> VersionMetadata:
    """``<models_dir>/<name>/<version>/metadata.json``; Unavailable when missing or unreadable."""
    name = model.name
    path = model.version_dir(version) / METADATA
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise Unavailable(
            f"model {name} version {version} has no {METADATA} at {path}: the inference "
            "service reads it from the models volume the model server serves from",
            details={"path": str(path)},
        ) from None
    except OSError as exc:
        raise Unavailable(f"cannot read {path}: {exc}", details={"path": str(path)}) from None
    try:
        return VersionMetadata.model_validate_json(text)
    except ValidationError as exc:
        kinds = {error["type"] for error in exc.errors()}
        if "json_invalid" in kinds:
            reason = "it is not valid JSON"
        elif "model_type" in kinds:
            reason = "it does not hold a JSON object"
        else:
            reason = flat_errors(exc)
        raise Unavailable(f"cannot read {path}: {reason}", details={"path": str(path)}) from None
