"""TensorFlow Serving's REST predict shape on the inference API: its bodies, errors and docs."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel

from mlcycle.common.errors import MlcycleError
from mlcycle.common.http import OrjsonResponse
from mlcycle.inference.access import error_headers
from mlcycle.inference.schemas import Prediction

TF_DESCRIPTION = """\
TensorFlow Serving's REST predict API, for clients written against it.

Request, one of:

- row format: `{"instances": ["text", {"text": "...", "metadata": {...}}, ...]}`: each
  instance is a comment's text, or an object with `text` and optional `metadata`;
- columnar format: `{"inputs": {"text": ["...", ...], "metadata": [{...}, ...]}}`
  (`metadata` optional, as long as `text`), or the single unnamed input
  `{"inputs": ["...", ...]}`.

Both accept `"signature_name": "serving_default"` (the only signature).

Response, as TF Serving shapes it: the row format answers
`{"predictions": [{"score", "label", "threshold", "model_version", "transform_version"}, ...]}`
(plus `"probabilities"` per class for multi-class models); the columnar format answers
`{"outputs": {"score": [...], "label": [...], "threshold": [...], "model_version": [...],
"transform_version": [...]}}`.

Errors are TF Serving's `{"error": "<message>"}`: 400 malformed or invalid input, 401
missing or unknown API key, 403 a key without the `predict` scope, 404 unknown model
name, 413 body or instance count over the limit, 429 rate limited, 503 model server
unavailable.
"""


class TfError(BaseModel):
    """TF Serving's error body."""

    error: str


class TfRowResponse(BaseModel):
    """The row format's answer: one prediction per instance."""

    predictions: list[Prediction]


class TfColumnarResponse(BaseModel):
    """The columnar format's answer: one list per output, one entry per input."""

    outputs: dict[str, list[Any]]


def tf_error(exc: MlcycleError) -> OrjsonResponse:
    """``exc`` as TF Serving answers an error: ``{"error": "<message>"}``."""
    return OrjsonResponse(
        {"error": exc.message}, status_code=exc.http_status, headers=error_headers(exc)
    )


def columns(predictions: Sequence[Mapping[str, object]]) -> dict[str, list[object]]:
    """The columnar format's ``outputs``: one list per field of the predictions."""
    names = list(predictions[0]) if predictions else []
    return {name: [p[name] for p in predictions] for name in names}
