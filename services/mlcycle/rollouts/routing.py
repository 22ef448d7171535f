"""Which version answers a comment, and which other version scores it off the answer's path.

Routing is a pure function of a comment's key and the published
:class:`~mlcycle.contracts.rollouts.RoutingState`, so every inference replica and
the stream scorer route the same comment alike without talking to each other.

- Canary (``state.canary`` set): the canary answers iff
  ``bucket(key, f"{rollout}:canary") < canary_share``. Shares only grow, so a
  comment the canary answered keeps being answered by it (sticky). The stable
  version then scores it off-path, so each canary answer is a pair; comments the
  stable version answers during a canary are not scored twice.
- Shadow (``state.shadow`` set): the stable version answers; the shadow scores the
  comment off-path iff ``bucket(key, f"{rollout}:shadow") < shadow_share``.
- Neither: the stable version answers alone.

The hash is BLAKE2b, never Python's ``hash()`` (salted per process).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from mlcycle.common.errors import Unavailable
from mlcycle.contracts.rollouts import Role, RoutingState

# Keys of comments with an id and of comments without one live in disjoint spaces.
ID_PREFIX = "id:"
TEXT_PREFIX = "text:"
_BUCKET_BITS = 53  # what a float's mantissa holds exactly


def routing_key(instance_id: str | None, text: str) -> str:
    """The key a comment is routed by: its id when it has one, else a hash of its text.

    The two kinds are prefixed differently, so an id can never equal a text's hash.
    An empty id counts as none.
    """
    if instance_id:
        return ID_PREFIX + instance_id
    digest = hashlib.blake2b(text.encode("utf-8"), digest_size=16).hexdigest()
    return TEXT_PREFIX + digest


def bucket(key: str, salt: str) -> float:
    """A uniform number in [0, 1) fixed by ``key`` and ``salt``, alike in every process."""
    digest = hashlib.blake2b(
        salt.encode("utf-8") + b"\x00" + key.encode("utf-8"), digest_size=8
    ).digest()
    return (int.from_bytes(digest, "big") >> (64 - _BUCKET_BITS)) / float(1 << _BUCKET_BITS)


@dataclass(frozen=True)
class Route:
    """The version that answers a comment, and the one (if any) that scores it off-path."""

    answer: int
    answer_role: Role
    offpath: int | None = None
    offpath_role: Role | None = None


def route(state: RoutingState, key: str) -> Route:
    """Route the comment with ``key`` under ``state``.

    Raises :class:`~mlcycle.common.errors.Unavailable` (503) when the stable
    version would answer and there is none (no version is labelled yet).
    """
    if state.canary is not None and state.canary_share > 0.0:
        if bucket(key, f"{state.rollout}:canary") < state.canary_share:
            if state.stable is None or state.stable == state.canary:
                return Route(state.canary, "candidate")
            return Route(state.canary, "candidate", state.stable, "production")
        return Route(_stable(state), "production")
    stable = _stable(state)
    if (
        state.shadow is not None
        and state.shadow != stable
        and state.shadow_share > 0.0
        and bucket(key, f"{state.rollout}:shadow") < state.shadow_share
    ):
        return Route(stable, "production", state.shadow, "candidate")
    return Route(stable, "production")


def _stable(state: RoutingState) -> int:
    if state.stable is None:
        raise Unavailable(f"model {state.name!r} has no version in production to answer with")
    return state.stable
