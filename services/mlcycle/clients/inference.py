"""The inference service's REST API: predictions and a comment's lineage.

The load test and the serving benchmark drive ``POST /v1/predict`` from their
own asyncio HTTP stacks for speed; they take the path and the body's shape
from here (:data:`PREDICT_PATH`, :func:`predict_body`) and the URL and headers
from an :class:`InferenceClient`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

from pydantic import BaseModel, ConfigDict

from mlcycle.clients.base import ServiceClient

PREDICT_PATH = "/v1/predict"
LINEAGE_PATH = "/v1/lineage"


class Prediction(BaseModel):
    """One instance's score, label and the model version that scored it."""

    model_config = ConfigDict(extra="allow")

    score: float
    label: str
    threshold: float | None = None
    model_version: int
    transform_version: str | None = None
    probabilities: dict[str, float] | None = None


class Predictions(BaseModel):
    """One prediction per instance, in order."""

    predictions: list[Prediction]


def predict_body(texts: Sequence[str]) -> dict[str, list[dict[str, str]]]:
    """The body of ``POST /v1/predict`` for ``texts``, one instance each."""
    return {"instances": [{"text": text} for text in texts]}


class InferenceClient(ServiceClient):
    """Predictions and lineage from the inference service."""

    service = "inference service"
    start_command = "mlcycle inference api"

    def predict_json(self, texts: Sequence[str]) -> dict[str, Any]:
        """``POST /v1/predict``'s answer as it came, for a caller that prints it as JSON."""
        return dict(self.call_json("POST", PREDICT_PATH, json=predict_body(texts)))

    def predict(self, texts: Sequence[str]) -> list[Prediction]:
        """The predictions of ``texts``, in order."""
        answer = self.call_record(Predictions, "POST", PREDICT_PATH, json=predict_body(texts))
        return answer.predictions

    def lineage(self, comment_id: str) -> dict[str, Any]:
        """A comment's prediction chain, from its votes to its score (a free-form document)."""
        return dict(self.call_json("GET", f"{LINEAGE_PATH}/{quote(comment_id, safe='')}"))
