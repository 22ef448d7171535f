"""An admin's orders over REST: ``POST /v1/<records>/{<record>_id}:<order>`` with a reason.

An order (pause, resume, force or abort a rollout; stop a retraining run) changes
what runs, so the service's route table gives its route the ``admin`` scope. The
route hands the record's id, the caller's key name and the reason to the order,
which finds the record (404), refuses one that is over (409) and
applies itself; the route answers the record as the order left it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Annotated, Any, Literal, Protocol, TypeVar

from fastapi import APIRouter, Body, Depends, Path
from pydantic import BaseModel, ConfigDict, StringConstraints

from mlcycle.common.http import OrjsonResponse, RouteAccess, error_responses
from mlcycle.common.keys import Caller

Reason = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500)]
T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)
_RECORD_ID = re.compile(r"\{(\w+_id)\}")


class OrderRequest(BaseModel):
    """Why an admin gives the order; kept with what it changes."""

    model_config = ConfigDict(extra="forbid")

    reason: Reason


class Order(Protocol[T_co]):
    """Carry an order out on one record: ``(record id, *, actor, reason) -> the record``."""

    def __call__(self, record_id: str, /, *, actor: str, reason: str) -> T_co: ...


def add_order_route(
    router: APIRouter,
    access: RouteAccess,
    path: str,
    orders: Mapping[str, Order[T]],
    answer: Callable[[T], OrjsonResponse],
    *,
    id_pattern: str,
    response_model: type[BaseModel],
    summary: str,
    name: str,
) -> None:
    """Add ``POST path`` to ``router``: one order on one record.

    ``path`` holds the record's id as its one ``{..._id}`` parameter (checked against
    ``id_pattern``) and ends either with ``:{order}``, one of ``orders`` (anything else
    is a 422), or with the one order's own verb (``:stop``). ``answer`` turns what the
    order returns into the response; ``name`` is the route's (and the operation id's).
    """
    found = _RECORD_ID.findall(path)
    if len(found) != 1:
        raise ValueError(f"{path} must name one record id parameter, like {{run_id}}")
    record = Path(alias=found[0], pattern=id_pattern)
    route = router.post(
        path,
        response_model=response_model,
        responses=error_responses(400, 401, 403, 404, 409, 422),
        summary=summary,
        name=name,
    )
    if path.endswith(":{order}"):

        def several(
            record_id: str = record,
            order: str = Path(description=" | ".join(orders)),
            request: OrderRequest = Body(...),
            caller: Caller = Depends(access.caller),
        ) -> OrjsonResponse:
            carry_out = orders[order]
            return answer(carry_out(record_id, actor=caller.name, reason=request.reason))

        # The orders as a Literal, so that FastAPI checks them and the OpenAPI lists them.
        order_type: Any = Literal[tuple(orders)]  # type: ignore[valid-type]
        several.__annotations__["order"] = order_type
        route(several)
        return
    verb = path.rsplit(":", 1)[-1]
    if verb not in orders or len(orders) != 1:
        raise ValueError(f"{path} ends with {verb!r}: orders must be exactly that one")

    def one(
        record_id: str = record,
        request: OrderRequest = Body(...),
        caller: Caller = Depends(access.caller),
    ) -> OrjsonResponse:
        return answer(orders[verb](record_id, actor=caller.name, reason=request.reason))

    route(one)
