"""Perspective's ``AnalyzeComment`` request and response (commentanalyzer ``v1alpha1``), as records.

The inference service answers ``POST /v1alpha1/comments:analyze`` in this shape so
that moderation tools written for Perspective can point at mlcycle. The records
use Perspective's JSON names (camelCase) as aliases; the proto field names
(``requested_attributes``, ``do_not_store``, ...) are accepted too, as Google's
JSON parser accepts both spellings. A field Perspective does not define is refused
(400 naming it), as Google's API refuses it; ``null`` means unset, as in proto3 JSON.

Fields accepted and not acted upon: ``context`` (Perspective documents it as not used
either), ``sessionId`` and ``communityId`` (mlcycle keeps no sessions or communities).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictStr

ScoreType = Literal["SCORE_TYPE_UNSPECIFIED", "PROBABILITY", "STD_DEV_SCORE", "PERCENTILE", "RAW"]
TextType = Literal["TEXT_TYPE_UNSPECIFIED", "PLAIN_TEXT", "HTML"]


class _Request(BaseModel):
    """A part of a request: Perspective's names, proto names accepted, unknown fields refused."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, validate_by_name=True, validate_by_alias=True
    )


class TextEntry(_Request):
    """A text: the comment to analyze, or an entry of its context."""

    text: StrictStr | None = Field(default=None, description="the text, UTF-8")
    type: TextType | None = Field(
        default=None, description="PLAIN_TEXT (the default); HTML is refused with 400"
    )


class ArticleAndParentComment(_Request):
    """Context of a comment on a single-threaded board: the article and the comment replied to."""

    article: TextEntry | None = None
    parent_comment: TextEntry | None = Field(default=None, alias="parentComment")


class Context(_Request):
    """What the comment refers to; accepted and not used (as by Perspective)."""

    entries: list[TextEntry] | None = None
    article_and_parent_comment: ArticleAndParentComment | None = Field(
        default=None, alias="articleAndParentComment"
    )


class AttributeParameters(_Request):
    """How one requested attribute is to be scored."""

    score_type: ScoreType | None = Field(
        default=None,
        alias="scoreType",
        description="PROBABILITY (the default, and the only type served)",
    )
    score_threshold: StrictFloat | None = Field(
        default=None,
        alias="scoreThreshold",
        ge=0.0,
        le=1.0,
        description="scores below it are left out of the answer",
    )


class AnalyzeCommentRequest(_Request):
    """``POST /v1alpha1/comments:analyze``: a comment and the attributes to score it on."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "comment": {"text": "What kind of idiot name is foo?"},
                    "requestedAttributes": {"TOXICITY": {"scoreThreshold": 0.1}},
                    "spanAnnotations": True,
                    "languages": ["en"],
                    "doNotStore": True,
                    "clientToken": "comment-53922",
                }
            ]
        }
    )

    comment: TextEntry | None = Field(default=None, description="the comment (text required)")
    context: Context | None = Field(default=None, description="accepted, not used")
    requested_attributes: dict[str, AttributeParameters] | None = Field(
        default=None,
        alias="requestedAttributes",
        description="attribute name to its parameters; only TOXICITY is served",
    )
    span_annotations: StrictBool | None = Field(
        default=None,
        alias="spanAnnotations",
        description="also score each word (spanScores)",
    )
    languages: list[StrictStr] | None = Field(
        default=None, description="ISO 639-1 or BCP-47 codes; only English (en) is served"
    )
    do_not_store: StrictBool | None = Field(
        default=None,
        alias="doNotStore",
        description="nothing of the request is cached or stored",
    )
    client_token: StrictStr | None = Field(
        default=None, alias="clientToken", description="echoed in the answer"
    )
    session_id: StrictStr | None = Field(
        default=None, alias="sessionId", description="accepted, not used"
    )
    community_id: StrictStr | None = Field(
        default=None, alias="communityId", description="accepted, not used"
    )
    drop_unsupported_attributes: StrictBool | None = Field(
        default=None,
        alias="dropUnsupportedAttributes",
        description="leave attributes mlcycle does not serve out of the answer instead of "
        "refusing the request",
    )


class _Response(BaseModel):
    model_config = ConfigDict(frozen=True, validate_by_name=True, validate_by_alias=True)


class Score(_Response):
    """A score and its type."""

    value: float = Field(description="a probability in [0, 1]")
    type: ScoreType = Field(description="mirrors the requested scoreType: PROBABILITY")


class SpanScore(_Response):
    """The score of one span of the comment."""

    begin: int = Field(description="first UTF-16 code unit of the span in comment.text")
    end: int = Field(description="one past its last UTF-16 code unit")
    score: Score


class AttributeScores(_Response):
    """One attribute's scores; a part below the requested threshold is left out."""

    summary_score: Score | None = Field(default=None, alias="summaryScore")
    span_scores: list[SpanScore] | None = Field(default=None, alias="spanScores")


class AnalyzeCommentResponse(_Response):
    """The answer: the scores of the requested attributes, the languages, the client's token."""

    attribute_scores: dict[str, AttributeScores] = Field(alias="attributeScores")
    languages: list[str] = Field(description="the request's languages, else ['en']")
    client_token: str | None = Field(default=None, alias="clientToken")


PERSPECTIVE_ERROR = "type.googleapis.com/google.commentanalyzer.v1alpha1.Error"
BAD_REQUEST = "type.googleapis.com/google.rpc.BadRequest"
ERROR_INFO = "type.googleapis.com/google.rpc.ErrorInfo"


class LanguageNotSupported(_Response):
    """Which attribute lacks which of the request's languages."""

    attribute: str
    requested_languages: list[str] = Field(alias="requestedLanguages")


class PerspectiveErrorDetail(_Response):
    """Perspective's own detail: the kind of refusal, in its ``errorType`` words."""

    type_url: Literal["type.googleapis.com/google.commentanalyzer.v1alpha1.Error"] = Field(
        default=PERSPECTIVE_ERROR, alias="@type"
    )
    error_type: str = Field(
        alias="errorType",
        description="COMMENT_EMPTY, COMMENT_TOO_LONG, NO_REQUESTED_ATTRIBUTES, "
        "LANGUAGE_NOT_SUPPORTED_BY_ATTRIBUTE or INVALID_REQUEST",
    )
    language_not_supported_by_attribute_error: LanguageNotSupported | None = Field(
        default=None, alias="languageNotSupportedByAttributeError"
    )


class FieldViolation(_Response):
    """A field of the body that is not valid, and why."""

    field: str | None = None
    description: str


class BadRequestDetail(_Response):
    """Google's detail of a body that is not a valid request message."""

    type_url: Literal["type.googleapis.com/google.rpc.BadRequest"] = Field(
        default=BAD_REQUEST, alias="@type"
    )
    field_violations: list[FieldViolation] = Field(alias="fieldViolations")


class ErrorInfoDetail(_Response):
    """Google's detail of any other error: a reason, its domain, and what it is about."""

    type_url: Literal["type.googleapis.com/google.rpc.ErrorInfo"] = Field(
        default=ERROR_INFO, alias="@type"
    )
    reason: str = Field(description="e.g. PAYLOAD_TOO_LARGE, UNAVAILABLE")
    domain: str = "mlcycle"
    metadata: dict[str, str] = Field(default_factory=dict)


ErrorDetail = PerspectiveErrorDetail | BadRequestDetail | ErrorInfoDetail


class GoogleError(_Response):
    """The error of a Google API: HTTP code, message, canonical status, typed details."""

    code: int = Field(description="the HTTP status")
    message: str = Field(description="what is wrong, naming it")
    status: str = Field(description="canonical status: INVALID_ARGUMENT, UNAUTHENTICATED, ...")
    details: list[ErrorDetail] = Field(default_factory=list, description="typed, by '@type'")


class PerspectiveErrorBody(_Response):
    """Every error of the Perspective-compatible route: ``{"error": {...}}``."""

    error: GoogleError
