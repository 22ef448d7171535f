"""The model registry's records: model versions, their stages, the serving pointer, events.

A model version is a SavedModel the trainer exported to
``<models_path>/<name>/<version>/`` (TF Serving's layout). Its record in the
``models`` collection (kind ``model``, id ``<name>:<version>``) holds its
lineage, metrics, blessing, stage and, in ``history``, every
:class:`RegistryTransition` it went through (who, why, the evidence, when)::

    candidate -> blessed | unblessed
    blessed -> shadow -> canary -> production -> archived
    shadow | canary | production -> rolled_back  (taken off)
    archived -> production                       (restored by a rollback)

:data:`TRANSITIONS` is the whole state machine: an action, the stages it may
start from (and those it needs ``force`` for), and the stage it ends in.

One :class:`ServingPointer` per name (kind ``serving``, id ``serving:<name>``)
holds the production version, the canary and shadow versions of a running
rollout, and the rollback stack. Each change is also published on the
``models`` topic as a :class:`ModelEvent`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal, get_args

import orjson
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    field_validator,
    model_serializer,
)

from mlcycle.contracts.monitoring import ProfileReference
from mlcycle.contracts.repository import StoredRecord
from mlcycle.contracts.rollouts import Comparison, RoutingState

MODEL_KIND = "model"
SERVING_KIND = "serving"
ModelState = Literal[
    "candidate", "unblessed", "blessed", "shadow", "canary", "production", "archived", "rolled_back"
]
MODEL_STATES: tuple[ModelState, ...] = get_args(ModelState)
# What a transition did: the events on the ``models`` topic have the same names.
Action = Literal[
    "registered",
    "blessed",
    "unblessed",
    "shadowed",
    "canaried",
    "promoted",
    "archived",
    "rolled_back",
    "restored",
]
ACTIONS: tuple[Action, ...] = get_args(Action)
# Records written before stages had these names.
_LEGACY_STATES = {"retired": "archived"}
_LEGACY_ACTIONS = {"retired": "archived"}


@dataclass(frozen=True)
class Transition:
    """One edge set of the state machine: ``action`` takes a version from ``allowed`` (or, with
    ``force``, from ``forced``) to ``to_state``."""

    action: Action
    allowed: frozenset[ModelState]
    to_state: ModelState
    forced: frozenset[ModelState] = frozenset()


def _edges(
    action: Action, allowed: str, to_state: ModelState, forced: str = ""
) -> tuple[Action, Transition]:
    states = lambda names: frozenset(names.split())  # noqa: E731 - a local shorthand
    return action, Transition(action, states(allowed), to_state, states(forced))


# The whole state machine. A version judged unfit (unblessed) or taken off (rolled back)
# goes on again only with ``force`` (an admin's decision); an archived production version
# may come back through a rollout or a rollback (``restored``).
TRANSITIONS: dict[Action, Transition] = dict(
    [
        _edges("blessed", "candidate", "blessed"),
        _edges("unblessed", "candidate", "unblessed"),
        _edges("shadowed", "blessed archived", "shadow", "candidate unblessed rolled_back"),
        _edges("canaried", "blessed shadow archived", "canary", "candidate unblessed rolled_back"),
        _edges(
            "promoted",
            "blessed shadow canary archived",
            "production",
            "candidate unblessed rolled_back",
        ),
        _edges("archived", "production", "archived"),
        _edges("rolled_back", "shadow canary production", "rolled_back"),
        _edges("restored", "archived", "production", "rolled_back"),
    ]
)


def check_transition(action: Action, state: ModelState, *, force: bool = False) -> bool:
    """Whether ``action`` may start from ``state``; True when it needs (and has) ``force``.

    Raises ValueError naming the stages ``action`` starts from when it may not.
    """
    edge = TRANSITIONS[action]
    if state in edge.allowed:
        return False
    if state in edge.forced:
        if force:
            return True
        raise ValueError(
            f"{action} from {state} needs force=true (allowed without it from "
            f"{', '.join(sorted(edge.allowed))})"
        )
    raise ValueError(
        f"a {state} version cannot be {action}: allowed from "
        f"{', '.join(sorted(edge.allowed | edge.forced))}"
    )


# The names a model may have: safe as a folder, in a record id and as a served name.
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
# TF Serving's versions are int64.
MAX_VERSION = 2**63 - 1


def model_id(name: str, version: int) -> str:
    """The record id of a model version: ``<name>:<version>``."""
    return f"{name}:{version}"


def pointer_id(name: str) -> str:
    """The record id of ``name``'s serving pointer: ``serving:<name>``."""
    return f"{SERVING_KIND}:{name}"


class _OmitsUnset(BaseModel):
    """Optional fields that were never set stay out of the stored JSON.

    A blessing records only the facts its judge gave, and a transition says
    ``forced`` only when it was; a record read back and saved again keeps
    exactly the keys it had.
    """

    _omitted_unless_set: ClassVar[frozenset[str]] = frozenset()

    # The return is left unannotated: an annotation would replace the model's own
    # schema in the OpenAPI documents.
    @model_serializer(mode="wrap")
    def _omit_unset(self, handler: SerializerFunctionWrapHandler):
        data = handler(self)
        unset = self._omitted_unless_set - self.model_fields_set
        return {key: value for key, value in data.items() if key not in unset}


class RegistryTransition(_OmitsUnset):
    """One step of a model version's life: from which state to which, when, why and by whom."""

    _omitted_unless_set: ClassVar[frozenset[str]] = frozenset(
        {"forced", "actor", "evidence", "rollout"}
    )

    time: str = Field(description="ISO 8601, UTC")
    action: Action
    from_state: ModelState | None = Field(description="None for the registration")
    to_state: ModelState
    reason: str
    forced: bool | None = Field(None, description="true when done from a stage that needs force")
    actor: str | None = Field(
        None,
        description="who asked for it: an API key's name, job:<id> for a job's step, "
        "rollout:<id> for a rollout's own decision",
    )
    evidence: Comparison | None = Field(
        None, description="what a rollout's step was decided on: its comparison"
    )
    rollout: str | None = Field(None, description="the rollout the step belongs to")

    @field_validator("action", mode="before")
    @classmethod
    def _legacy_action(cls, value: object) -> object:
        return _LEGACY_ACTIONS.get(value, value) if isinstance(value, str) else value

    @field_validator("from_state", "to_state", mode="before")
    @classmethod
    def _legacy_state(cls, value: object) -> object:
        return _LEGACY_STATES.get(value, value) if isinstance(value, str) else value


class Blessing(_OmitsUnset):
    """The judgement of a version: blessed or not, why, and the facts it rested on.

    Besides the declared facts, a judge may record others; they are kept as given.
    """

    model_config = ConfigDict(extra="allow")
    _omitted_unless_set: ClassVar[frozenset[str]] = frozenset(
        {"judged_at", "metric", "candidate", "margin", "infra_validation", "production", "measured"}
    )

    blessed: bool
    reason: str
    compared_to: int | None = Field(None, description="the production version it was held to")
    judged_at: str | None = None
    metric: str | None = Field(None, description="the dev metric compared")
    candidate: float | None = Field(None, description="this version's dev metric")
    margin: float | None = Field(None, description="by how much it had to beat production")
    infra_validation: str | None = Field(None, description="what the model server check found")
    production: float | None = Field(None, description="production's metric on the same items")
    measured: str | None = Field(None, description="how production's metric was obtained")


class ModelVersion(StoredRecord):
    """A registered model version: lineage, metrics, blessing, state and history.

    ``metrics``, ``params`` and ``data`` are the exported model's free-form
    figures (``{"dev": {...}, "test": {...}}``, its hyper-parameters, its row
    and class counts), as in its ``metadata.json``.
    """

    kind: Literal["model"] = MODEL_KIND
    name: str
    version: int
    state: ModelState = Field(description=" | ".join(MODEL_STATES))
    created_at: str
    updated_at: str
    job: str | None = None
    transform: str
    label_run: str
    metrics: dict[str, Any]
    params: dict[str, Any]
    data: dict[str, Any] = Field(default_factory=dict)
    blessing: Blessing
    path: str
    history: list[RegistryTransition]
    # The reference profile the live monitor judges its traffic against (None: exported
    # before profiles).
    profile: ProfileReference | None = None

    @field_validator("state", mode="before")
    @classmethod
    def _legacy_state(cls, value: object) -> object:
        return _LEGACY_STATES.get(value, value) if isinstance(value, str) else value

    def transition(
        self,
        action: Action,
        to_state: ModelState,
        reason: str,
        time: str,
        *,
        forced: bool | None = None,
        actor: str | None = None,
        evidence: Comparison | None = None,
        rollout: str | None = None,
    ) -> RegistryTransition:
        """Move to ``to_state`` and append the step to ``history``; returns the step."""
        step = RegistryTransition(
            time=time, action=action, from_state=self.state, to_state=to_state, reason=reason
        )
        for key, value in (
            ("forced", forced),
            ("actor", actor),
            ("evidence", evidence),
            ("rollout", rollout),
        ):
            if value is not None:
                setattr(step, key, value)  # set, so the stored JSON has it (see _OmitsUnset)
        self.history.append(step)
        self.state = to_state
        self.updated_at = time
        return step


class ServingPointer(StoredRecord):
    """Which versions of ``name`` are served, and the rollback stack (newest first).

    ``version`` is production (label ``stable``); ``canary`` and ``shadow`` are the
    versions a running rollout tries (labels ``canary`` and ``shadow``). The model
    server loads all three and the head of ``previous`` (so a rollback is instant).
    """

    kind: Literal["serving"] = SERVING_KIND
    name: str
    version: int | None = None
    canary: int | None = None
    canary_share: float = Field(0.0, ge=0.0, le=1.0, description="of traffic the canary answers")
    shadow: int | None = None
    shadow_share: float = Field(0.0, ge=0.0, le=1.0, description="of traffic the shadow scores")
    rollout: str | None = Field(None, description="the rollout canary and shadow belong to")
    previous: list[int] = Field(default_factory=list)
    revision: int = Field(0, description="grows with every change; routing states carry it")
    updated_at: str | None = None

    def routing_state(self) -> RoutingState:
        """What the inference replicas route this name by."""
        return RoutingState(
            name=self.name,
            stable=self.version,
            rollout=self.rollout,
            canary=self.canary,
            canary_share=self.canary_share if self.canary is not None else 0.0,
            shadow=self.shadow,
            shadow_share=self.shadow_share if self.shadow is not None else 0.0,
            revision=self.revision,
            updated_at=self.updated_at,
        )

    def labels(self) -> dict[str, int]:
        """TF Serving's version labels of this name: ``stable``, ``canary``, ``shadow``."""
        pairs = (("stable", self.version), ("canary", self.canary), ("shadow", self.shadow))
        return {label: version for label, version in pairs if version is not None}

    def loaded_versions(self) -> list[int]:
        """Every version the model server should hold for this name, ascending."""
        wanted = {v for v in (self.version, self.canary, self.shadow) if v is not None}
        if self.version is not None and self.previous:
            wanted.add(self.previous[0])
        return sorted(wanted)


class ModelEvent(_OmitsUnset):
    """A registry change as published on the ``models`` topic, keyed by model name."""

    model_config = ConfigDict(frozen=True)
    _omitted_unless_set: ClassVar[frozenset[str]] = frozenset(
        {"previous_version", "actor", "evidence", "rollout", "from_state"}
    )

    event: Action
    id: str
    name: str
    version: int
    state: ModelState
    reason: str
    time: str
    previous_version: int | None = Field(
        None, description="on promoted and rolled_back: the version served before"
    )
    actor: str | None = Field(None, description="who asked for it, as in the model's history")
    from_state: ModelState | None = Field(None, description="the stage it left")
    evidence: Comparison | None = Field(None, description="what the step was decided on")
    rollout: str | None = Field(None, description="the rollout the step belongs to")

    def to_message(self) -> tuple[str, bytes]:
        """The (key, value) of this event on the ``models`` topic."""
        return self.name, orjson.dumps(self.model_dump(mode="json"))
