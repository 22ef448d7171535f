"""The one error shape of every REST endpoint, and the JSON response that renders it.

``{"error": {"code", "message", "details"}}``: a stable machine code, a sentence
for people, and structured context. :mod:`.handlers` answers every failure in it.
"""

from __future__ import annotations

import json
from http import HTTPStatus
from typing import Any

import orjson
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

# Field errors listed in a 422 body; the total count is always given.
MAX_REPORTED_ERRORS = 50


class OrjsonResponse(JSONResponse):
    """A JSON response rendered with orjson (compact, fast, handles datetimes)."""

    def render(self, content: Any) -> bytes:
        try:
            return orjson.dumps(content, option=orjson.OPT_NON_STR_KEYS)
        except TypeError:
            # orjson refuses integers beyond 64 bits, which a request may carry into an
            # error's details; the standard library writes them, and anything else as text.
            return json.dumps(content, default=str, ensure_ascii=False).encode("utf-8")


class ErrorDetail(BaseModel):
    """What went wrong: a stable machine code, a sentence for people, and structured details."""

    code: str = Field(description="stable machine-readable code, e.g. validation_failed")
    message: str = Field(description="what is wrong, for a person")
    details: Any = Field(default=None, description="structured context (field errors, limits)")


class ErrorBody(BaseModel):
    """Every error response of every mlcycle REST endpoint."""

    error: ErrorDetail


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries documenting :class:`ErrorBody` for ``statuses``."""
    return {
        status: {"model": ErrorBody, "description": HTTPStatus(status).phrase}
        for status in statuses
    }


def error_response(
    status: int, code: str, message: str, details: Any = None, headers: dict[str, str] | None = None
) -> OrjsonResponse:
    """A response in the shared error shape."""
    body = {"error": {"code": code, "message": message, "details": details}}
    return OrjsonResponse(body, status_code=status, headers=headers)


def describe_validation_errors(errors: list[Any]) -> dict[str, Any]:
    """Field errors as ``{"errors": [{"field", "loc", "message", "type"}], "error_count"}``.

    The rejected input values are left out on purpose: they can be large or sensitive.
    """
    listed = [
        {
            "field": ".".join(str(part) for part in err.get("loc", ())),
            "loc": list(err.get("loc", ())),
            "message": err.get("msg", ""),
            "type": err.get("type", ""),
        }
        for err in errors[:MAX_REPORTED_ERRORS]
    ]
    return {"errors": listed, "error_count": len(errors)}
