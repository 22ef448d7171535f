"""The inference service's REST API: predictions, a comment's lineage, the live monitor and
moderators' decisions.

The load test and the serving benchmark drive ``POST /v1/predict`` from their
own asyncio HTTP stacks for speed; they take the path and the body's shape
from here (:data:`PREDICT_PATH`, :func:`predict_body`) and the URL and headers
from an :class:`InferenceClient`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, NotRequired, TypedDict
from urllib.parse import quote

from pydantic import BaseModel, ConfigDict

from mlcycle.clients.base import QueryValue, ServiceClient
from mlcycle.contracts.explanations import Span
from mlcycle.contracts.monitoring import (
    Decision,
    MonitoringHistory,
    MonitoringState,
    WindowResult,
)

PREDICT_PATH = "/v1/predict"
LINEAGE_PATH = "/v1/lineage"
MONITORING_PATH = "/v1/monitoring"
MONITORING_HISTORY_PATH = "/v1/monitoring/history"
FEEDBACK_PATH = "/v1/feedback"


class Prediction(BaseModel):
    """One instance's score, label and the model version that scored it."""

    model_config = ConfigDict(extra="allow")

    score: float
    label: str
    threshold: float | None = None
    model_version: int
    transform_version: str | None = None
    probabilities: dict[str, float] | None = None
    spans: list[Span] | None = None  # asked with ``explain``: the words behind the score


class Predictions(BaseModel):
    """One prediction per instance, in order."""

    predictions: list[Prediction]


class FeedbackReceipt(BaseModel):
    """``POST /v1/feedback``'s answer: how many decisions were taken, joined to their comment's
    score, left waiting for it, or already known."""

    accepted: int
    joined: int
    pending: int
    duplicate: int


class PredictBody(TypedDict):
    """The body of ``POST /v1/predict``."""

    instances: list[dict[str, str]]
    explain: NotRequired[bool]
    live: NotRequired[bool]


def predict_body(
    texts: Sequence[str],
    ids: Sequence[str] | None = None,
    *,
    explain: bool = False,
    live: bool = True,
) -> PredictBody:
    """The body of ``POST /v1/predict`` for ``texts``, one instance each (with its ``id``
    when ``ids`` are given: the prediction is then joinable with moderators' decisions);
    ``explain`` asks for each prediction's words (``spans``); not ``live``: a look at the
    texts that the live monitor must not count as served traffic."""
    if ids is None:
        instances = [{"text": text} for text in texts]
    else:
        instances = [{"text": text, "id": id_} for text, id_ in zip(texts, ids, strict=True)]
    body: PredictBody = {"instances": instances}
    if explain:
        body["explain"] = True
    if not live:
        body["live"] = False
    return body


class InferenceClient(ServiceClient):
    """Predictions and lineage from the inference service."""

    service = "inference service"
    start_command = "mlcycle inference api"

    def predict_json(self, texts: Sequence[str], *, explain: bool = False) -> dict[str, Any]:
        """``POST /v1/predict``'s answer as it came, for a caller that prints it as JSON."""
        body = predict_body(texts, explain=explain)
        return dict(self.call_json("POST", PREDICT_PATH, json=body))

    def predict(
        self, texts: Sequence[str], ids: Sequence[str] | None = None, *, explain: bool = False
    ) -> list[Prediction]:
        """The predictions of ``texts``, in order (``ids``: the comments' own, which makes
        each prediction joinable with a moderator's decision on it; ``explain``: with the
        words that drove each score)."""
        body = predict_body(texts, ids, explain=explain)
        answer = self.call_record(Predictions, "POST", PREDICT_PATH, json=body)
        return answer.predictions

    def lineage(self, comment_id: str) -> dict[str, Any]:
        """A comment's prediction chain, from its votes to its score (a free-form document)."""
        return dict(self.call_json("GET", f"{LINEAGE_PATH}/{quote(comment_id, safe='')}"))

    def monitoring(self, version: int | None = None) -> MonitoringState:
        """The monitor's current state per model version and signal: every loaded version's,
        or ``version``'s alone (NotFound when this service has not loaded it)."""
        params: dict[str, QueryValue] = {} if version is None else {"version": version}
        return self.call_record(MonitoringState, "GET", MONITORING_PATH, params=params)

    def monitoring_history(
        self,
        since: datetime | None = None,
        version: int | None = None,
        signal: str | None = None,
        limit: int | None = None,
    ) -> list[WindowResult]:
        """Evaluated windows, oldest first: of ``version`` (default: the serving one), closed
        after ``since``, of ``signal`` when given, at most ``limit`` (the service's default
        when not given). To page, pass the last window's ``closed_at`` as the next ``since``."""
        given = {
            "since": since.isoformat() if since is not None else None,
            "version": version,
            "signal": signal,
            "limit": limit,
        }
        params: dict[str, QueryValue] = {k: v for k, v in given.items() if v is not None}
        answer = self.call_record(MonitoringHistory, "GET", MONITORING_HISTORY_PATH, params=params)
        return answer.items

    def feedback(self, decisions: Sequence[Decision]) -> FeedbackReceipt:
        """Send moderators' decisions. A named API key is the reviewer (a decision naming
        someone else is refused, 403); without keys each decision names its ``reviewer``."""
        body = [decision.model_dump(mode="json", exclude_none=True) for decision in decisions]
        return self.call_record(FeedbackReceipt, "POST", FEEDBACK_PATH, json=body)
