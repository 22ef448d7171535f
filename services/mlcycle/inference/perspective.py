"""Perspective's ``POST /v1alpha1/comments:analyze`` on the inference service.

A request in Perspective's shape (:mod:`mlcycle.contracts.perspective`) becomes one
call of an :class:`Analyze` (the served score of the text, and its words' shares
when ``spanAnnotations`` is true); the answer is Perspective's shape, and so is
every error of the route, Google's ``{"error": {"code", "message", "status",
"details"}}``. What is served, and how Perspective's options map onto mlcycle:

- ``TOXICITY`` only, in English: its ``summaryScore`` is the served probability of
  toxicity. Another attribute Perspective knows is refused like an attribute
  Perspective lacks for a language (400 ``LANGUAGE_NOT_SUPPORTED_BY_ATTRIBUTE``
  naming it, which clients already handle by dropping it), or dropped from the
  answer when ``dropUnsupportedAttributes`` is true; a name Perspective does not
  know is a 400 ``Unknown requested attribute``;
- ``languages``: ISO 639-1 or BCP-47 codes whose language is English (``en``,
  ``en-US``, ...); any other is a 400 naming it. Without ``languages`` the text is
  taken as English (mlcycle detects no language) and ``languages`` answers
  ``["en"]``; ``detectedLanguages`` is never answered;
- ``scoreType``: ``PROBABILITY`` (or unset); ``scoreThreshold``: scores below it
  are left out, the summary as the spans; an attribute left with nothing is left
  out of ``attributeScores``, and empty lists are left out, as proto3 JSON does;
- ``spanAnnotations``: one span per word rather than Perspective's per sentence
  (see :class:`Analysis` for the value), ``begin``/``end`` in UTF-16 code units as
  Perspective counts them;
- ``doNotStore``: the analysis is neither cached nor stored (``store=False``);
- ``comment.type`` ``HTML`` is refused, as Perspective refuses it; ``context``,
  ``sessionId`` and ``communityId`` are accepted and not used;
- the API key: ``Authorization: Bearer``, else ``X-Goog-Api-Key``, else ``?key=``
  (where Perspective's clients put it).

The answer carries the scoring model version in the ``X-Mlcycle-Model-Version``
header, outside Perspective's body.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable
from dataclasses import dataclass
from http import HTTPStatus
from itertools import accumulate
from typing import Protocol

from fastapi import FastAPI, Request, Response
from starlette.types import Scope

from mlcycle.common.errors import MlcycleError
from mlcycle.common.http import OrjsonResponse, read_body
from mlcycle.contracts.explanations import Span
from mlcycle.contracts.perspective import (
    AnalyzeCommentRequest,
    AnalyzeCommentResponse,
    AttributeScores,
    ErrorDetail,
    ErrorInfoDetail,
    GoogleError,
    PerspectiveErrorBody,
    Score,
    SpanScore,
)
from mlcycle.inference.access import CallerGate, error_headers
from mlcycle.inference.perspective_request import (
    SERVED_ATTRIBUTE,
    AnalysisPlan,
    PerspectiveRefusal,
    parse_analyze,
    plan_analysis,
)

log = logging.getLogger(__name__)

PATH = "/v1alpha1/comments:analyze"
MODEL_VERSION_HEADER = "X-Mlcycle-Model-Version"
PROBABILITY = "PROBABILITY"


@dataclass(frozen=True)
class Analysis:
    """What the served model says of one comment.

    ``score``: the served probability of toxicity (the positive class's, for a
    binary model). ``spans``: when asked for, one :class:`Span` per word of the text
    as sent, whose ``score`` is the word's signed share of ``score`` (decision
    record 0018). A span's Perspective ``score.value`` is that share clipped to
    [0, 1]: how much the word raised the probability of toxicity, 0 for a word
    that lowered it or left it be. ``model_version``: the version that scored it.
    """

    score: float
    spans: list[Span] | None
    model_version: int


class Analyze(Protocol):
    """The served model's analysis of one text (the runtime's ``analyze``).

    ``spans``: explain the score word by word (else ``Analysis.spans`` is None).
    ``store``: False when the caller asked that nothing of the request be kept: no
    cache read or write, no stored score. Raises :class:`MlcycleError` (e.g.
    ``Unavailable`` when the model server is down), which the route answers.
    """

    def __call__(self, text: str, *, spans: bool, store: bool) -> Awaitable[Analysis]: ...


def error_body(error: MlcycleError) -> PerspectiveErrorBody:
    """``{"error": {"code", "message", "status", "details"}}`` of ``error``.

    The route's own refusals carry their typed detail (Perspective's ``errorType``,
    or a field violation); any other error's details become a ``google.rpc.ErrorInfo``
    (its reason, the ``mlcycle`` domain, its details as metadata).
    """
    detail: ErrorDetail
    if isinstance(error, PerspectiveRefusal):
        detail = error.detail
    else:
        about = error.details if isinstance(error.details, dict) else {}
        metadata = {str(key): str(value) for key, value in about.items()}
        detail = ErrorInfoDetail(reason=error.code.upper(), metadata=metadata)
    status = error.http_status
    return PerspectiveErrorBody(
        error=GoogleError(
            code=status,
            message=error.message,
            status=error.grpc_code.name,  # Google's canonical status, as over gRPC
            details=[detail],
        )
    )


def error_response(error: MlcycleError) -> OrjsonResponse:
    """``error`` in Google's shape, with the headers its status calls for."""
    body = error_body(error).model_dump(mode="json", by_alias=True, exclude_none=True)
    return OrjsonResponse(body, status_code=error.http_status, headers=error_headers(error))


def render(error: MlcycleError, scope: Scope) -> Response:
    """The edge's refusals (e.g. a body over the limit) on this route, in Google's shape."""
    return error_response(error)


def is_perspective_path(scope: Scope) -> bool:
    """Whether a request is for this route (its errors are then answered in Google's shape)."""
    return scope.get("path") == PATH


def utf16_offsets(text: str) -> list[int] | None:
    """Each code point index's UTF-16 offset in ``text``; None when they are the same."""
    if text.isascii() or max(map(ord, text)) <= 0xFFFF:
        return None
    return list(accumulate((2 if ord(c) > 0xFFFF else 1 for c in text), initial=0))


def answer(plan: AnalysisPlan, analysis: Analysis | None) -> AnalyzeCommentResponse:
    """Perspective's answer to ``plan`` scored as ``analysis`` (None: nothing was scored)."""
    scores: dict[str, AttributeScores] = {}
    if analysis is not None and SERVED_ATTRIBUTE in plan.attributes:
        threshold = plan.attributes[SERVED_ATTRIBUTE]
        summary = None
        if threshold is None or analysis.score >= threshold:
            summary = Score(value=analysis.score, type=PROBABILITY)
        spans = []
        if plan.spans and analysis.spans:
            spans = _span_scores(plan.text, analysis.spans, threshold)
        if summary is not None or spans:  # empty parts are left out, as proto3 JSON does
            scores[SERVED_ATTRIBUTE] = AttributeScores(
                summary_score=summary, span_scores=spans or None
            )
    return AnalyzeCommentResponse(
        attribute_scores=scores, languages=plan.languages, client_token=plan.client_token
    )


def _span_scores(text: str, spans: list[Span], threshold: float | None) -> list[SpanScore]:
    offsets = utf16_offsets(text)
    answered = []
    for span in sorted(spans, key=lambda s: s.begin):
        value = min(1.0, max(0.0, span.score))
        if threshold is not None and value < threshold:
            continue
        begin, end = span.begin, span.end
        if offsets is not None:
            begin, end = offsets[begin], offsets[end]
        score = Score(value=value, type=PROBABILITY)
        answered.append(SpanScore(begin=begin, end=end, score=score))
    return answered


def presented_key(request: Request) -> str | None:
    """A key sent where Perspective's clients send it: ``X-Goog-Api-Key``, else ``?key=``."""
    return request.headers.get("x-goog-api-key") or request.query_params.get("key") or None


DESCRIPTION = """\
Perspective's AnalyzeComment, for moderation tools written against Perspective.

Request: `{"comment": {"text"}, "requestedAttributes": {"TOXICITY": {"scoreType",
"scoreThreshold"}}, "spanAnnotations", "languages", "doNotStore", "clientToken",
"sessionId"}`. Answer: `{"attributeScores": {"TOXICITY": {"summaryScore": {"value", "type"},
"spanScores": [{"begin", "end", "score": {"value", "type"}}]}}, "languages", "clientToken"}`.

Only `TOXICITY` in English is served; another attribute or language is a 400 naming it
(`LANGUAGE_NOT_SUPPORTED_BY_ATTRIBUTE`), unless `dropUnsupportedAttributes`. Spans are per
word, offsets in UTF-16 code units; a span's value is the word's share of the score, clipped
to [0, 1]. Scores below `scoreThreshold` are left out. `doNotStore`: nothing is cached or
stored. The key: `Authorization: Bearer`, `X-Goog-Api-Key` or `?key=`.

Errors are Google's `{"error": {"code", "message", "status", "details"}}`: 400 invalid
request, 401 missing or unknown key, 403 a key without the `predict` scope, 413 body over
the limit, 409 a serving version that cannot answer (a multi-class model, or one that
cannot explain when spans are asked), 429 rate limited, 503 model server unavailable.
"""


def add_perspective_route(
    app: FastAPI, analyze: Analyze, gate: CallerGate, *, max_body_bytes: int
) -> None:
    """``POST /v1alpha1/comments:analyze`` on ``app``, answered by ``analyze``."""

    @app.post(
        PATH,
        response_model=None,
        responses={
            200: {"model": AnalyzeCommentResponse, "description": "The comment's scores"},
            **{
                status: {"model": PerspectiveErrorBody, "description": HTTPStatus(status).phrase}
                for status in (400, 401, 403, 409, 413, 429, 503)
            },
        },
        tags=["perspective"],
        summary="Perspective's AnalyzeComment: TOXICITY and its word spans",
        description=DESCRIPTION,
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {"$ref": f"#/components/schemas/{AnalyzeCommentRequest.__name__}"}
                    }
                },
            },
            "parameters": [
                {
                    "name": "key",
                    "in": "query",
                    "required": False,
                    "schema": {"type": "string"},
                    "description": "an API key, where Perspective's clients send it",
                }
            ],
            **gate.access.openapi_security(),
        },
    )
    async def analyze_comment(request: Request) -> Response:
        try:
            await gate.admit(request, presented_key(request))
            plan = plan_analysis(parse_analyze(await read_body(request, max_body_bytes)))
            analysis = None
            if plan.attributes:
                analysis = await analyze(plan.text, spans=plan.spans, store=plan.store)
        except MlcycleError as exc:
            return error_response(exc)
        except Exception:  # a bug: logged here, the client learns only that it was ours
            log.exception("analyzing a comment failed")
            return error_response(MlcycleError("Internal error encountered."))
        headers = {} if analysis is None else {MODEL_VERSION_HEADER: str(analysis.model_version)}
        body = answer(plan, analysis).model_dump(mode="json", by_alias=True, exclude_none=True)
        return OrjsonResponse(body, headers=headers)
