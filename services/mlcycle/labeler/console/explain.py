"""What the console reads from the inference service: a comment's score and the words behind
it, and the live monitor's state.

The console asks ``POST /v1/predict`` with ``"explain": true`` (the labeler presents
``MLCYCLE_SERVICE_KEY`` when keys are on: a ``predict`` key, ``read`` too for the monitor).
Any failure (inference not running, a timeout, an error answer) gives no explanation: the
page shows the text plain and says so, never an error of its own.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import httpx
from pydantic import BaseModel, ValidationError

from mlcycle.common.addresses import auth_headers, dialable_host, service_url
from mlcycle.common.settings import Settings
from mlcycle.contracts.explanations import Span
from mlcycle.contracts.monitoring import MonitoringState

log = logging.getLogger(__name__)

PREDICT_PATH = "/v1/predict"
MONITORING_PATH = "/v1/monitoring"
# A reviewer waits for the page: better no highlight than a slow one.
TIMEOUT_S = 3.0


class ExplainedPrediction(BaseModel):
    """The part of one prediction the console shows."""

    score: float
    label: str
    model_version: int
    spans: list[Span] | None = None


class _Predictions(BaseModel):
    predictions: list[ExplainedPrediction]


@dataclass(frozen=True)
class Explanation:
    """A prediction with its words, or why there is none."""

    prediction: ExplainedPrediction | None
    unavailable: str | None = None


def peer_url(settings: Settings, configured: str, port: int) -> str:
    """A peer service's URL: the one configured, else this host at ``port`` (as dialled)."""
    if configured:
        return configured.rstrip("/")
    return service_url(dialable_host(settings.host), port)


def inference_url(settings: Settings) -> str:
    """Where the console reaches the inference service (``MLCYCLE_INFERENCE_URL``)."""
    return peer_url(settings, settings.labeler.inference_url, settings.inference.port)


class Explainer:
    """Asks the inference service to score and explain one text at a time."""

    def __init__(self, url: str, service_key: str = "", timeout_s: float = TIMEOUT_S) -> None:
        headers = auth_headers(service_key)
        self.client = httpx.Client(base_url=url, headers=headers, timeout=timeout_s)

    def explain(self, text: str, item_id: str) -> Explanation:
        # Not live: a reviewer's look is not served traffic, for the live monitor to count
        # or for a moderator's decision to be joined to.
        body = {"instances": [{"text": text}], "explain": True, "live": False}
        try:
            answer = self.client.post(PREDICT_PATH, json=body)
        except httpx.HTTPError as exc:
            log.info("no explanation for %s: inference unreachable (%s)", item_id, exc)
            return Explanation(None, "the inference service is unreachable")
        if answer.status_code != 200:
            return Explanation(None, f"the inference service answered {answer.status_code}")
        try:
            predictions = _Predictions.model_validate_json(answer.content).predictions
        except ValidationError:
            return Explanation(None, "the inference service answered in an unknown shape")
        if not predictions:
            return Explanation(None, "the inference service returned no prediction")
        return Explanation(predictions[0])

    def monitoring(self) -> MonitoringState | str:
        """The live monitor's state, or why it cannot be read."""
        try:
            answer = self.client.get(MONITORING_PATH)
        except httpx.HTTPError:
            return "the inference service is unreachable"
        if answer.status_code != 200:
            return f"the inference service answered {answer.status_code}"
        try:
            return MonitoringState.model_validate_json(answer.content)
        except ValidationError:
            return "the inference service answered in an unknown shape"

    def close(self) -> None:
        self.client.close()
