"""What a bulk response's items mean: refused for good, or only for now."""

from __future__ import annotations

import pytest

from mlcycle.common.errors import Unavailable
from mlcycle.common.store.elastic_bulk import chunks, describe, refusals

pytestmark = pytest.mark.unit


def _item(doc_id: str, status: int, error: dict | None = None) -> dict:
    result: dict = {"_id": doc_id, "status": status}
    if error is not None:
        result["error"] = error
    return {"index": result}


CONFLICT = {
    "type": "document_parsing_exception",
    "reason": "[1:20] failed to parse field [source] of type [double]",
    "caused_by": {"type": "number_format_exception", "reason": 'For input string: "wiki"'},
}


def test_a_4xx_item_is_a_refusal_with_elasticsearchs_reason() -> None:
    items = [_item("a", 201), _item("b", 400, CONFLICT), _item("c", 200)]
    assert refusals("idx", items) == {
        "b": "document_parsing_exception: [1:20] failed to parse field [source] of type "
        '[double] (caused by number_format_exception: For input string: "wiki")'
    }


@pytest.mark.parametrize("status", [429, 503, 500])
def test_a_429_or_5xx_item_means_retry_the_batch(status: int) -> None:
    busy = {"type": "es_rejected_execution_exception", "reason": "rejected execution"}
    items = [_item("a", 400, CONFLICT), _item("b", status, busy)]
    with pytest.raises(Unavailable, match="could not write 1 documents to idx for now"):
        refusals("idx", items)


def test_describe_tolerates_what_it_does_not_know() -> None:
    assert describe("plain") == "plain"
    assert describe({"type": "x"}) == "x"


def test_chunks_keep_every_document_once_in_order() -> None:
    lines = [(f"d{i}", b"x" * 10) for i in range(4500)]
    batches = list(chunks(lines))
    assert [len(b) for b in batches] == [2000, 2000, 500]
    assert [doc_id for b in batches for doc_id, _ in b] == [d for d, _ in lines]
