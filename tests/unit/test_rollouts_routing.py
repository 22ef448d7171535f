"""Routing: deterministic, sticky as the canary grows, uniform, and the off-path rules."""

from __future__ import annotations

import subprocess
import sys

import pytest

from mlcycle.common.errors import Unavailable
from mlcycle.contracts.rollouts import RoutingState
from mlcycle.rollouts.routing import Route, bucket, route, routing_key

KEYS = [routing_key(f"c{i}", "") for i in range(20_000)]


def state(**fields: object) -> RoutingState:
    return RoutingState(name="toxicity", stable=1, rollout="r1", **fields)


def test_keys_use_the_id_else_a_stable_text_hash_in_disjoint_spaces() -> None:
    assert routing_key("abc", "some text") == routing_key("abc", "other text")
    assert routing_key(None, "some text") == routing_key("", "some text")
    assert routing_key(None, "some text") != routing_key(None, "other text")
    hashed = routing_key(None, "some text")
    # An id spelled like a text hash still routes as an id.
    assert routing_key(hashed, "") != hashed
    assert routing_key(hashed.split(":", 1)[1], "") != hashed


def test_bucket_is_the_same_in_another_process_and_uniform() -> None:
    code = (
        "from mlcycle.rollouts.routing import bucket, routing_key;"
        "print(repr(bucket(routing_key(None, 'héllo'), 'r1:canary')))"
    )
    other = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True,
        env={"PYTHONHASHSEED": "123", "PYTHONPATH": ":".join(sys.path)},
    )  # fmt: skip
    assert float(other.stdout) == bucket(routing_key(None, "héllo"), "r1:canary")
    values = [bucket(k, "salt") for k in KEYS]
    assert all(0.0 <= v < 1.0 for v in values)
    for edge in (0.05, 0.25, 0.5, 0.9):
        share = sum(v < edge for v in values) / len(values)
        assert abs(share - edge) < 0.015
    # Another salt is another, independent draw.
    other_salt = [bucket(k, "pepper") for k in KEYS[:2000]]
    both = sum(a < 0.5 and b < 0.5 for a, b in zip(values, other_salt, strict=False))
    assert abs(both / 2000 - 0.25) < 0.04


def test_canary_is_sticky_as_its_share_grows_and_production_scores_it_off_path() -> None:
    answered: set[str] = set()
    for share in (0.05, 0.25, 0.5, 1.0):
        canary = state(canary=2, canary_share=share)
        routes = {k: route(canary, k) for k in KEYS}
        now = {k for k, r in routes.items() if r.answer == 2}
        assert answered <= now  # once the canary answered a comment, it keeps it
        assert abs(len(now) / len(KEYS) - share) < 0.015
        assert all(r == Route(2, "candidate", 1, "production") for k, r in routes.items()
                   if k in now)  # fmt: skip
        assert all(r == Route(1, "production") for k, r in routes.items() if k not in now)
        answered = now
    assert len(answered) == len(KEYS)


def test_routing_depends_on_the_rollout_id() -> None:
    one = {k for k in KEYS if route(state(canary=2, canary_share=0.5), k).answer == 2}
    other = state(canary=2, canary_share=0.5).model_copy(update={"rollout": "r2"})
    two = {k for k in KEYS if route(other, k).answer == 2}
    assert 0.2 < len(one & two) / len(KEYS) < 0.3


def test_shadow_scores_its_share_off_path_and_never_answers() -> None:
    shadow = state(shadow=3, shadow_share=0.25)
    routes = [route(shadow, k) for k in KEYS]
    assert {r.answer for r in routes} == {1}
    scored = [r for r in routes if r.offpath is not None]
    assert {(r.offpath, r.offpath_role) for r in scored} == {(3, "candidate")}
    assert abs(len(scored) / len(KEYS) - 0.25) < 0.015
    assert all(r.offpath == 3 for r in map(lambda k: route(state(shadow=3, shadow_share=1.0), k),
                                           KEYS[:100]))  # fmt: skip


def test_without_a_rollout_stable_answers_alone() -> None:
    assert {route(state(), k) for k in KEYS[:200]} == {Route(1, "production")}
    assert route(state(canary=2, canary_share=0.0), KEYS[0]) == Route(1, "production")


def test_nothing_labelled_is_unavailable() -> None:
    empty = RoutingState(name="toxicity")
    with pytest.raises(Unavailable, match="toxicity"):
        route(empty, KEYS[0])
    # A canary with no production still answers its own share.
    first = RoutingState(name="toxicity", rollout="r1", canary=2, canary_share=1.0)
    assert route(first, KEYS[0]) == Route(2, "candidate")
