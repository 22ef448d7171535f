"""The registry's rollout stages: shadow, canary, shares, promotion, a candidate's roll-back.

Every move is checked against the contracts' state machine from every state, with
and without force; a whole rollout is followed through the store, ``models.config``
(read back by TF Serving's own proto), ``routing.json`` and the events.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from google.protobuf import text_format
from tensorflow_serving.config.model_server_config_pb2 import ModelServerConfig

from mlcycle.common.errors import InvalidInput, ValidationFailed
from mlcycle.common.settings import Settings
from mlcycle.contracts.models import MODEL_STATES, TRANSITIONS, ModelState
from mlcycle.contracts.rollouts import Comparison, QualityTest, VersionFigures
from mlcycle.contracts.serving import read_routing_table, serving_config_path
from mlcycle.trainer.registry import ModelRegistry
from tests.fixtures.registry import NAME, register


def seen(pair: str, pairs: int, agreement: float) -> Comparison:
    """A rollout's comparison, as the controller hands one to a stage move."""
    return Comparison(
        pair=pair,
        production=VersionFigures(version=2),
        candidate=VersionFigures(version=3),
        pairs=pairs,
        agreement=agreement,
        quality=QualityTest(margin=0.02, alpha=0.05),
    )


SEEN_IN_SHADOW = seen("production-shadow", 500, 0.95)
SEEN_IN_CANARY = seen("production-canary", 1200, 0.97)


def add(registry: ModelRegistry, version: int, *, bless: bool = True) -> None:
    reason = "beats production" if bless else None
    register(registry, version, bless=reason, metrics={"dev": {"roc_auc": 0.9}})


def config(settings: Settings) -> ModelServerConfig:
    """models.config as TF Serving itself parses it."""
    text = serving_config_path(settings.trainer.models_dir).read_text()
    return text_format.Parse(text, ModelServerConfig())


def loaded(settings: Settings) -> tuple[list[int], dict[str, int]]:
    (model,) = config(settings).model_config_list.config
    return list(model.model_version_policy.specific.versions), dict(model.version_labels)


def test_a_rollout_through_shadow_and_canary_to_production(
    registry: ModelRegistry, settings: Settings, events: list
) -> None:
    for version in (1, 2, 3):
        add(registry, version)
    registry.promote(NAME, 1, "first")
    registry.promote(NAME, 2, "second")
    events.clear()
    tags = {"rollout": "r-1", "actor": "rollout:r-1"}

    shadow = registry.start_shadow(NAME, 3, "blessed", share=1.0, evidence=SEEN_IN_SHADOW, **tags)
    assert shadow.state == "shadow"
    step = shadow.history[-1]
    assert (step.action, step.from_state, step.rollout, step.actor) == (
        "shadowed",
        "blessed",
        "r-1",
        "rollout:r-1",
    )
    assert step.evidence == SEEN_IN_SHADOW
    pointer = registry.pointer(NAME)
    assert (pointer.version, pointer.shadow, pointer.shadow_share, pointer.rollout) == (
        2,
        3,
        1.0,
        "r-1",
    )
    # Production, the shadow and the head of the rollback stack are loaded; each label too.
    assert loaded(settings) == ([1, 2, 3], {"stable": 2, "shadow": 3})
    routing = read_routing_table(settings.trainer.models_dir)
    assert routing is not None and routing.models[NAME] == pointer.routing_state()

    registry.start_canary(NAME, 3, "shadow agrees", share=0.05, **tags)
    pointer = registry.pointer(NAME)
    assert (pointer.shadow, pointer.canary, pointer.canary_share) == (None, 3, 0.05)
    assert loaded(settings) == ([1, 2, 3], {"stable": 2, "canary": 3})

    revision = pointer.revision
    history = len(registry.get(NAME, 3).history)
    registry.set_canary_share(NAME, 0.25, reason="step 2", **tags)
    pointer = registry.pointer(NAME)
    assert (pointer.canary_share, pointer.revision) == (0.25, revision + 1)
    assert len(registry.get(NAME, 3).history) == history  # no stage change: no history
    routing = read_routing_table(settings.trainer.models_dir)
    assert routing is not None and routing.models[NAME].canary_share == 0.25
    assert routing.models[NAME].revision == revision + 1

    promoted = registry.promote(NAME, 3, "every step passed", evidence=SEEN_IN_CANARY, **tags)
    assert (promoted.state, promoted.history[-1].from_state) == ("production", "canary")
    pointer = registry.pointer(NAME)
    assert (pointer.version, pointer.canary, pointer.canary_share, pointer.rollout) == (
        3,
        None,
        0.0,
        None,
    )
    assert pointer.previous == [2, 1]
    assert registry.get(NAME, 2).state == "archived"
    assert loaded(settings) == ([2, 3], {"stable": 3})
    assert [(e.event, e.version, e.from_state, e.rollout) for e in events] == [
        ("shadowed", 3, "blessed", "r-1"),
        ("canaried", 3, "shadow", "r-1"),
        ("archived", 2, "production", "r-1"),
        ("promoted", 3, "canary", "r-1"),
    ]
    assert events[0].evidence == SEEN_IN_SHADOW and events[-1].evidence == SEEN_IN_CANARY
    assert events[-1].previous_version == 2 and events[-1].actor == "rollout:r-1"


@pytest.mark.parametrize("slot", ["shadow", "canary"])
def test_rolling_a_candidate_back_clears_its_slot(
    registry: ModelRegistry, settings: Settings, events: list, slot: str
) -> None:
    add(registry, 1)
    add(registry, 2)
    registry.promote(NAME, 1, "first")
    start = registry.start_shadow if slot == "shadow" else registry.start_canary
    start(NAME, 2, "try it", share=0.5, rollout="r-2")
    events.clear()
    model = registry.roll_back_candidate(NAME, 2, "error rate 4 %", rollout="r-2", actor="r")
    assert model.state == "rolled_back" and model.history[-1].from_state == slot
    pointer = registry.pointer(NAME)
    assert (pointer.version, pointer.canary, pointer.shadow, pointer.rollout) == (
        1,
        None,
        None,
        None,
    )
    assert loaded(settings) == ([1], {"stable": 1})
    assert [(e.event, e.from_state, e.reason) for e in events] == [
        ("rolled_back", slot, "error rate 4 %")
    ]
    with pytest.raises(ValidationFailed, match="only a shadow or a canary"):
        registry.roll_back_candidate(NAME, 1, "production is rolled back with rollback")


def test_one_candidate_at_a_time_and_the_refusals_name_why(registry: ModelRegistry) -> None:
    for version in (1, 2, 3):
        add(registry, version)
    registry.promote(NAME, 1, "first")
    with pytest.raises(ValidationFailed, match="no canary"):
        registry.set_canary_share(NAME, 0.5, reason="step")
    registry.start_shadow(NAME, 2, "try", share=1.0, rollout="r-1")
    for start in (registry.start_shadow, registry.start_canary):
        with pytest.raises(ValidationFailed, match="version 2 is the shadow of rollout r-1"):
            start(NAME, 3, "another", share=0.1)
    with pytest.raises(ValidationFailed, match="a production version cannot be shadowed"):
        registry.start_shadow(NAME, 1, "production", share=0.1)
    for share in (-0.1, 1.5, float("nan"), True):
        with pytest.raises(InvalidInput, match="share"):
            registry.start_canary(NAME, 2, "bad share", share=share)  # type: ignore[arg-type]
    # A rollback of production leaves the running rollout's shadow in place.
    registry.promote(NAME, 3, "manual", force=False)
    assert registry.pointer(NAME).shadow == 2
    registry.rollback(NAME, "manual was wrong")
    pointer = registry.pointer(NAME)
    assert (pointer.version, pointer.shadow) == (1, 2)


# -- every move from every state ----------------------------------------------------------------


def in_state(registry: ModelRegistry, state: ModelState) -> int:
    """Version 2 of NAME in ``state`` (version 1 serves), its pointer consistent with it."""
    add(registry, 1)
    registry.promote(NAME, 1, "first")
    add(registry, 2, bless=False)
    model = registry.get(NAME, 2)
    model.state = state
    pointer = registry.pointer(NAME)
    if state == "production":
        pointer.version, pointer.previous = 2, [1]
        registry.versions.save_with_pointer([model], pointer)
    elif state in ("shadow", "canary"):
        setattr(pointer, state, 2)
        registry.versions.save_with_pointer([model], pointer)
    else:
        registry.versions.save(model)
    return 2


MOVES: dict[str, Callable[[ModelRegistry, bool], object]] = {
    "shadowed": lambda r, force: r.start_shadow(NAME, 2, "move", share=0.5, force=force),
    "canaried": lambda r, force: r.start_canary(NAME, 2, "move", share=0.5, force=force),
    "promoted": lambda r, force: r.promote(NAME, 2, "move", force=force),
}


@pytest.mark.parametrize("force", [False, True])
@pytest.mark.parametrize("state", MODEL_STATES)
@pytest.mark.parametrize("action", sorted(MOVES))
def test_each_move_follows_the_state_machine(
    registry: ModelRegistry, action: str, state: ModelState, force: bool
) -> None:
    in_state(registry, state)
    edge = TRANSITIONS[action]  # type: ignore[index]
    legal = state in edge.allowed or (force and state in edge.forced)
    if action == "promoted" and state == "production":
        legal = True  # promoting the production version is a no-op
    if legal:
        model = MOVES[action](registry, force)
        assert registry.get(NAME, 2).state == edge.to_state
        if state != edge.to_state:
            step = registry.get(NAME, 2).history[-1]
            assert (step.action, step.from_state) == (action, state)
            assert step.forced is (True if state in edge.forced else None)
        assert model is not None
        return
    with pytest.raises(ValidationFailed) as caught:
        MOVES[action](registry, force)
    assert state in caught.value.message
    if state in edge.forced:
        assert "force=true" in caught.value.message
    else:
        assert all(s in caught.value.message for s in edge.allowed)
    assert caught.value.details["allowed_from"] == sorted(edge.allowed)
    assert registry.get(NAME, 2).state == state


@pytest.mark.parametrize("state", MODEL_STATES)
def test_a_candidate_is_rolled_back_from_shadow_or_canary_only(
    registry: ModelRegistry, state: ModelState
) -> None:
    in_state(registry, state)
    if state in ("shadow", "canary"):
        assert registry.roll_back_candidate(NAME, 2, "worse").state == "rolled_back"
        return
    with pytest.raises(ValidationFailed, match=f"is {state}"):
        registry.roll_back_candidate(NAME, 2, "worse")


def test_an_unblessed_version_forced_live_leaves_its_staging_folder(
    registry: ModelRegistry, settings: Settings
) -> None:
    add(registry, 1)
    registry.promote(NAME, 1, "first")
    add(registry, 2, bless=False)
    registry.unbless(NAME, 2, "a drill: shuffled labels")
    models = settings.trainer.models_dir / NAME
    (models / "2").rename(models / ".candidate-2")  # where a job leaves an unblessed version
    with pytest.raises(ValidationFailed, match="force"):
        registry.start_canary(NAME, 2, "a drill", share=0.05)
    registry.start_canary(NAME, 2, "a drill", share=0.05, force=True)
    assert (models / "2" / "saved_model.pb").is_file() and not (models / ".candidate-2").exists()
    assert 2 in loaded(settings)[0]
