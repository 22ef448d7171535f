"""An admin's actions from the models page: roll production back, promote a version, steer a
rollout, each as the trainer's REST API takes it.

The console does not change the registry itself: it calls the trainer (``POST
/v1/models:rollback``, ``POST /v1/models/{version}:promote``, ``POST
/v1/rollouts/{id}:{order}``) with the signed-in admin's own key, so the trainer checks the
``admin`` scope again and its audit records the admin's key name, not the labeler's. With
keys off no key is sent. Whatever the trainer answers becomes an :class:`AdminOutcome` the
page shows: its message on a refusal (a 409 "nothing to roll back to"), a plain sentence
when it cannot be reached; never an error of the console's own.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from urllib.parse import quote

import httpx
from pydantic import BaseModel, ValidationError

from mlcycle.common.addresses import auth_headers
from mlcycle.common.settings import Settings
from mlcycle.labeler.console.explain import peer_url

log = logging.getLogger(__name__)

ROLLBACK_PATH = "/v1/models:rollback"
PROMOTE_PATH = "/v1/models/{version}:promote"
STEER_PATH = "/v1/rollouts/{rollout_id}:{order}"
# The orders the trainer's rollouts API takes (trainer/rollouts_api.py), as the page names them.
ROLLOUT_ORDERS: Mapping[str, str] = MappingProxyType(
    {"pause": "pause", "resume": "resume", "force": "force one step", "abort": "abort"}
)
# Promoting waits on the model server's config being written; give it longer than a read.
TIMEOUT_S = 15.0


class _ErrorBody(BaseModel):
    code: str = ""
    message: str


class _ErrorAnswer(BaseModel):
    """mlcycle's error shape, ``{"error": {"code", "message", "details"}}``."""

    error: _ErrorBody


@dataclass(frozen=True)
class AdminOutcome:
    """What one action came to, as the page says it; ``status`` is the trainer's (0: none)."""

    done: bool
    message: str
    status: int = 0


def trainer_url(settings: Settings) -> str:
    """Where the console reaches the trainer (``MLCYCLE_TRAINER_URL``)."""
    return peer_url(settings, settings.labeler.trainer_url, settings.trainer.port)


class TrainerAdmin:
    """Sends an admin's actions to the trainer's REST API with the admin's own key."""

    def __init__(self, url: str, timeout_s: float = TIMEOUT_S) -> None:
        self.client = httpx.Client(base_url=url, timeout=timeout_s)

    def rollback(self, key: str | None, name: str | None, reason: str) -> AdminOutcome:
        body = {"reason": reason, **({"name": name} if name else {})}
        return self._send(ROLLBACK_PATH, body, key, f"Rolled {name or 'production'} back")

    def promote(
        self, key: str | None, name: str | None, version: int, reason: str, *, force: bool
    ) -> AdminOutcome:
        body = {"reason": reason, "force": force, **({"name": name} if name else {})}
        path = PROMOTE_PATH.format(version=version)
        return self._send(path, body, key, f"Promoted version {version} to production")

    def steer(self, key: str | None, rollout_id: str, order: str, reason: str) -> AdminOutcome:
        path = STEER_PATH.format(rollout_id=quote(rollout_id, safe=""), order=order)
        return self._send(path, {"reason": reason}, key, f"Rollout {rollout_id}: {order} done")

    def _send(self, path: str, body: dict[str, object], key: str | None, done: str) -> AdminOutcome:
        headers = auth_headers(key)
        try:
            answer = self.client.post(path, json=body, headers=headers)
        except httpx.HTTPError as exc:
            log.warning("admin action %s: trainer unreachable (%s)", path, exc)
            return AdminOutcome(
                False, f"The trainer at {self.client.base_url} is unreachable: nothing changed."
            )
        if answer.is_success:
            return AdminOutcome(True, f"{done}.", answer.status_code)
        return AdminOutcome(False, refusal(answer), answer.status_code)

    def close(self) -> None:
        self.client.close()


def refusal(answer: httpx.Response) -> str:
    """The trainer's own message, with its status (a proxy's page cut short)."""
    try:
        message = _ErrorAnswer.model_validate_json(answer.content).error.message
    except ValidationError:
        message = answer.text[:300] or answer.reason_phrase
    verb = "refused" if answer.status_code < 500 else "failed"
    return f"The trainer {verb} ({answer.status_code}): {message}"
