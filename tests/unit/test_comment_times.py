"""A record's ``created_at`` is what its schema says: an ISO 8601 string, never a guessed number."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from mlcycle.contracts.comments import Comment, Vote


@pytest.mark.parametrize("number", [2.5, 0, 1_700_000_000, True])
@pytest.mark.parametrize("make", [Comment, Vote], ids=["comment", "vote"])
def test_a_number_is_refused_with_the_field_named(make: type, number: object) -> None:
    fields = (
        {"id": "c1", "text": "hello"}
        if make is Comment
        else {"item_id": "c1", "annotator_id": "w", "label": 1}
    )
    with pytest.raises(ValidationError, match="created_at") as caught:
        make.model_validate({**fields, "created_at": number})
    assert "ISO 8601" in str(caught.value)


def test_iso_strings_and_datetimes_are_accepted_and_the_schema_is_unchanged() -> None:
    parsed = Comment.model_validate({"id": "c1", "text": "x", "created_at": "2015-03-01T10:00:00Z"})
    assert parsed.created_at == datetime(2015, 3, 1, 10, tzinfo=UTC)
    assert Vote(item_id="c1", annotator_id="w", label=1, created_at=datetime(2020, 1, 1)).created_at
    assert Comment.model_json_schema()["properties"]["created_at"]["anyOf"] == [
        {"format": "date-time", "type": "string"},
        {"type": "null"},
    ]
