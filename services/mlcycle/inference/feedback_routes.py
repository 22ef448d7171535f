"""``POST /v1/feedback``: moderators' decisions on the comments this service scored.

:func:`add_feedback_routes` adds the route and answers the :class:`Feedback` it wires: the
join store, the recorder the predict routes hand their scores with an ``id`` to, and
:meth:`Feedback.quality_windows`, the quality windows ``GET /v1/monitoring`` shows.
"""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Depends, FastAPI, Request
from pydantic import BaseModel, Field, ValidationError
from starlette.concurrency import run_in_threadpool

from mlcycle.common.errors import InvalidInput, PayloadTooLarge, ValidationFailed
from mlcycle.common.http import OrjsonResponse, error_responses, read_body
from mlcycle.common.keys import Caller, reviewer_of
from mlcycle.common.settings import Settings
from mlcycle.contracts.messages import flat_errors
from mlcycle.contracts.monitoring import Decision, QualityWindow
from mlcycle.inference.access import CallerGate
from mlcycle.inference.feedback import FeedbackIntake, ScoreRecorder, open_feedback_store
from mlcycle.inference.runtime import InferenceRuntime
from mlcycle.inference.schemas import loads
from mlcycle.monitoring.feedback_store import FeedbackStore

FEEDBACK_DESCRIPTION = """\
A JSON array of decisions, `[{"comment_id", "label", "decided_at"?, "task"?}]`: `label` is
the class index (0/1 for toxicity), `decided_at` defaults to now. The reviewer is the
caller's key (without keys, or with a bare legacy key, each decision's `reviewer` names
them).

Each decision is joined to the score this service gave the comment (`joined`): a
prediction is joinable when its instance carried an `id`, and every comment the stream
scored is. During a rollout a comment may be scored by two versions (production and the
shadow, or a canary and production): the decision joins each version's score, into that
version's quality window. A decision on a comment not scored yet waits for its score
(`pending`); the same reviewer's same decision again counts once (`duplicate`), a changed
label replaces the earlier one. Every decision also reaches the labeler as a trusted
human vote.
"""


class FeedbackAccepted(BaseModel):
    """How the decisions joined."""

    accepted: int
    joined: int = Field(description="joined to their comment's score")
    pending: int = Field(description="waiting for their comment's score")
    duplicate: int = Field(description="the same reviewer's same decision again")


@dataclass
class Feedback:
    """The service's feedback parts; :meth:`close` releases them."""

    store: FeedbackStore
    recorder: ScoreRecorder
    intake: FeedbackIntake

    def quality_windows(self, model: str, version: int) -> list[QualityWindow]:
        """The version's closed quality windows (oldest first), then the filling one."""
        return self.store.quality_windows(model, version)

    def close(self) -> None:
        self.recorder.close()
        self.intake.close()
        self.store.close()


def parse_decisions(body: bytes, max_items: int) -> list[Decision]:
    """A feedback body; 400 not an array or empty, 413 too many, 422 an invalid decision."""
    data = loads(body)
    if not isinstance(data, list):
        raise InvalidInput("the body must be a JSON array of decisions")
    if not data:
        raise InvalidInput("the array is empty: send at least one decision")
    if len(data) > max_items:
        raise PayloadTooLarge(
            f"{len(data)} decisions in one request; the limit is {max_items}",
            details={"decisions": len(data), "max_decisions": max_items},
        )
    decisions = []
    for index, item in enumerate(data):
        try:
            decisions.append(Decision.model_validate(item))
        except ValidationError as exc:
            raise ValidationFailed(
                f"decision {index}: {flat_errors(exc)}", details={"index": index}
            ) from None
    return decisions


def add_feedback_routes(
    app: FastAPI, settings: Settings, runtime: InferenceRuntime, gate: CallerGate
) -> Feedback:
    """Add ``POST /v1/feedback`` to ``app``; the caller closes the answered parts."""
    redis_url = settings.cache.redis_url or (
        runtime.embedded_redis.url if runtime.embedded_redis is not None else None
    )
    store = open_feedback_store(settings, redis_url)
    feedback = Feedback(store, ScoreRecorder(store), FeedbackIntake(settings, store))
    access = gate.access
    max_body, max_items = settings.edge.max_body_bytes, settings.inference.predict_max_instances

    @app.post(
        "/v1/feedback",
        status_code=202,
        response_model=FeedbackAccepted,
        responses=error_responses(400, 401, 403, 413, 422, 429, 503),
        dependencies=gate.dependencies(),
        tags=["monitoring"],
        summary="Moderators' decisions, joined to the scores given and sent to the labeler",
        description=FEEDBACK_DESCRIPTION,
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {"type": "array", "items": Decision.model_json_schema()}
                    }
                },
            }
        },
    )
    async def post_feedback(
        request: Request, caller: Caller = Depends(access.caller)
    ) -> OrjsonResponse:
        decisions = parse_decisions(await read_body(request, max_body), max_items)
        feedback.intake.check(decisions)
        reviewers = [reviewer_of(d.reviewer, caller, access.keys_required) for d in decisions]
        outcomes = await run_in_threadpool(feedback.intake.take, decisions, reviewers)
        body = {
            "accepted": len(outcomes),
            **{name: outcomes.count(name) for name in ("joined", "pending", "duplicate")},
        }
        return OrjsonResponse(body, status_code=202)

    return feedback
