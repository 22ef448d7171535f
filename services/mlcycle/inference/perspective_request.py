"""Reading a Perspective ``AnalyzeComment`` request: parsing, validation, what to score.

Every refusal is a 400 in the words Perspective (or Google's JSON front end) uses for
it, with Perspective's typed details: ``{"@type": ...Error, "errorType": ...}`` for the
service's own checks (``COMMENT_EMPTY``, ``COMMENT_TOO_LONG``,
``NO_REQUESTED_ATTRIBUTES``, ``LANGUAGE_NOT_SUPPORTED_BY_ATTRIBUTE``,
``INVALID_REQUEST``), a ``google.rpc.BadRequest`` field violation for a malformed
body (bad JSON, an unknown field, a value of the wrong type).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
from pydantic import ValidationError
from pydantic_core import ErrorDetails

from mlcycle.common.errors import InvalidInput
from mlcycle.contracts.comments import MAX_TEXT_CHARS
from mlcycle.contracts.perspective import (
    AnalyzeCommentRequest,
    BadRequestDetail,
    ErrorDetail,
    FieldViolation,
    LanguageNotSupported,
    PerspectiveErrorDetail,
)

SERVED_ATTRIBUTE = "TOXICITY"
SERVED_LANGUAGE = "en"
# Perspective's other attributes: refused like an attribute without the request's language.
PERSPECTIVE_ATTRIBUTES = frozenset(
    {
        "TOXICITY_EXPERIMENTAL",
        "TOXICITY_FAST",
        "SEVERE_TOXICITY",
        "SEVERE_TOXICITY_EXPERIMENTAL",
        "IDENTITY_ATTACK",
        "IDENTITY_ATTACK_EXPERIMENTAL",
        "INSULT",
        "INSULT_EXPERIMENTAL",
        "PROFANITY",
        "PROFANITY_EXPERIMENTAL",
        "THREAT",
        "THREAT_EXPERIMENTAL",
        "SEXUALLY_EXPLICIT",
        "FLIRTATION",
        "ATTACK_ON_AUTHOR",
        "ATTACK_ON_COMMENTER",
        "INCOHERENT",
        "INFLAMMATORY",
        "LIKELY_TO_REJECT",
        "OBSCENE",
        "SPAM",
        "UNSUBSTANTIAL",
    }
)
PROBABILITY_TYPES = (None, "SCORE_TYPE_UNSPECIFIED", "PROBABILITY")
PLAIN_TEXT_TYPES = (None, "TEXT_TYPE_UNSPECIFIED", "PLAIN_TEXT")
# The JSON type named in "Invalid value at ..." for each kind of pydantic type error.
JSON_TYPES = {
    "string_type": "TYPE_STRING",
    "bool_type": "TYPE_BOOL",
    "float_type": "TYPE_FLOAT",
    "literal_error": "TYPE_ENUM",
    "list_type": "TYPE_LIST",
    "dict_type": "TYPE_MESSAGE",
    "model_type": "TYPE_MESSAGE",
    "model_attributes_type": "TYPE_MESSAGE",
}


class PerspectiveRefusal(InvalidInput):
    """A 400 with the typed detail Google's shape answers it with."""

    def __init__(self, message: str, detail: ErrorDetail) -> None:
        super().__init__(message, details=detail.model_dump(by_alias=True, exclude_none=True))
        self.detail = detail


def refused(
    message: str, error_type: str, language: LanguageNotSupported | None = None
) -> PerspectiveRefusal:
    """A 400 of Perspective's own: its message and its ``errorType``."""
    return PerspectiveRefusal(
        message,
        PerspectiveErrorDetail(
            error_type=error_type, language_not_supported_by_attribute_error=language
        ),
    )


def malformed(message: str, field: str | None = None) -> PerspectiveRefusal:
    """A 400 of Google's JSON front end: a body that is not a valid request message."""
    violation = FieldViolation(field=field, description=message)
    return PerspectiveRefusal(message, BadRequestDetail(field_violations=[violation]))


@dataclass(frozen=True)
class AnalysisPlan:
    """What a valid request asks: the text, the attributes served (with their thresholds)."""

    text: str
    attributes: dict[str, float | None]
    spans: bool
    store: bool
    languages: list[str]
    client_token: str | None


def parse_analyze(body: bytes) -> AnalyzeCommentRequest:
    """The request in ``body`` (an empty body is the empty request); 400 naming what is wrong."""
    data: Any = {}
    if body.strip():
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise malformed(
                f"Invalid JSON payload received. {exc.msg} at line {exc.lineno}, "
                f"column {exc.colno}."
            ) from None
    if not isinstance(data, dict):
        raise malformed("Invalid JSON payload received. Root element must be a message.")
    try:
        return AnalyzeCommentRequest.model_validate(data)
    except ValidationError as exc:
        raise _invalid(exc.errors(include_url=False)[0]) from None


def _invalid(error: ErrorDetails) -> PerspectiveRefusal:
    """Google's words for the first field in error."""
    *parents, last = [str(part) for part in error["loc"]] or [""]
    path = ".".join([*parents, last])
    if error["type"] == "extra_forbidden":
        where = f" at '{'.'.join(parents)}'" if parents else ""
        return malformed(
            f'Invalid JSON payload received. Unknown name "{last}"{where}: Cannot find field.',
            path,
        )
    value = _shown(error.get("input"))
    kind = JSON_TYPES.get(error["type"])
    if kind is not None:
        return malformed(f"Invalid value at '{path}' ({kind}), {value}", path)
    return malformed(f"Invalid value at '{path}', {value}: {error['msg']}", path)


def _shown(value: Any) -> str:
    try:
        shown = orjson.dumps(value).decode()
    except TypeError:
        shown = repr(value)
    return shown if len(shown) <= 80 else shown[:77] + "..."


def plan_analysis(request: AnalyzeCommentRequest) -> AnalysisPlan:
    """What to score for ``request``, or a 400 naming the first thing mlcycle cannot serve."""
    comment = request.comment
    text = (comment.text if comment is not None else None) or ""
    if not text:
        raise refused("Comment must be non-empty.", "COMMENT_EMPTY")
    if len(text) > MAX_TEXT_CHARS:
        raise refused(
            f"Comment text too long: {len(text)} characters, the limit is {MAX_TEXT_CHARS}.",
            "COMMENT_TOO_LONG",
        )
    if comment is not None and comment.type not in PLAIN_TEXT_TYPES:
        raise refused("Currently, only 'PLAIN_TEXT' comments are supported", "INVALID_REQUEST")
    context = request.context
    if context is not None and context.entries and context.article_and_parent_comment:
        raise refused(
            "Context can have either entries or article_and_parent_comment, "
            "but both fields were populated.",
            "INVALID_REQUEST",
        )
    if not request.requested_attributes:
        raise refused("Missing requested_attributes", "NO_REQUESTED_ATTRIBUTES")
    languages = list(request.languages) if request.languages else [SERVED_LANGUAGE]
    attributes = _served_attributes(request, languages)
    return AnalysisPlan(
        text=text,
        attributes=attributes,
        spans=bool(request.span_annotations),
        store=not request.do_not_store,
        languages=languages,
        client_token=request.client_token,
    )


def _served_attributes(
    request: AnalyzeCommentRequest, languages: list[str]
) -> dict[str, float | None]:
    """Each requested attribute mlcycle serves, with its threshold; 400 for the others."""
    unsupported = [language for language in languages if not _is_english(language)]
    served: dict[str, float | None] = {}
    for name, parameters in (request.requested_attributes or {}).items():
        if name == SERVED_ATTRIBUTE:
            refused_languages = unsupported
        elif name in PERSPECTIVE_ATTRIBUTES:
            refused_languages = languages  # mlcycle serves it in no language
        else:
            versioned = " (mlcycle serves its own model versions)" if "@" in name else ""
            shown = name or '""'
            raise refused(f"Unknown requested attribute: {shown}{versioned}", "INVALID_REQUEST")
        if refused_languages:
            if request.drop_unsupported_attributes:
                continue
            raise refused(
                f"Attribute {name} does not support request languages: "
                + ", ".join(language or '""' for language in refused_languages),
                "LANGUAGE_NOT_SUPPORTED_BY_ATTRIBUTE",
                LanguageNotSupported(attribute=name, requested_languages=languages),
            )
        if parameters.score_type not in PROBABILITY_TYPES:
            raise refused(
                f"Requested score type {parameters.score_type} is not supported by "
                f"attribute {name}",
                "INVALID_REQUEST",
            )
        served[name] = parameters.score_threshold
    return served


def _is_english(language: str) -> bool:
    """Whether an ISO 639-1 or BCP-47 code names English (``en``, ``en-GB``, ``en_US``)."""
    return language.replace("_", "-").split("-")[0].lower() == SERVED_LANGUAGE
