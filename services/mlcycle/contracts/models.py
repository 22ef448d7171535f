"""The model registry's records: model versions, their transitions, the serving pointer, events.

A model version is a SavedModel the trainer exported to
``<models_path>/<name>/<version>/`` (TF Serving's layout). Its record in the
``models`` collection (kind ``model``, id ``<name>:<version>``) holds its
lineage, metrics, blessing, state and, in ``history``, every
:class:`RegistryTransition` it went through::

    candidate (registered, not yet judged) -> blessed | unblessed
    blessed | retired -> production (the one serving version of a name)
    production -> retired (replaced, or rolled back)

One :class:`ServingPointer` per name (kind ``serving``, id ``serving:<name>``)
holds the production version and the rollback stack. Each change is also
published on the ``models`` topic as a :class:`ModelEvent`.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal, get_args

import orjson
from pydantic import BaseModel, ConfigDict, Field, SerializerFunctionWrapHandler, model_serializer

from mlcycle.contracts.monitoring import ProfileReference
from mlcycle.contracts.repository import StoredRecord

MODEL_KIND = "model"
SERVING_KIND = "serving"
ModelState = Literal["candidate", "unblessed", "blessed", "production", "retired"]
MODEL_STATES: tuple[ModelState, ...] = get_args(ModelState)
# What a transition did: the events on the ``models`` topic have the same names.
Action = Literal["registered", "blessed", "unblessed", "promoted", "retired", "rolled_back"]
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

    _omitted_unless_set: ClassVar[frozenset[str]] = frozenset({"forced", "actor"})

    time: str = Field(description="ISO 8601, UTC")
    action: Action
    from_state: ModelState | None = Field(description="None for the registration")
    to_state: ModelState
    reason: str
    forced: bool | None = Field(None, description="true when promoted without being blessed")
    actor: str | None = Field(
        None, description="who asked for it: an API key's name, or job:<id> for a job's step"
    )


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

    def transition(
        self,
        action: Action,
        to_state: ModelState,
        reason: str,
        time: str,
        *,
        forced: bool | None = None,
        actor: str | None = None,
    ) -> RegistryTransition:
        """Move to ``to_state`` and append the step to ``history``; returns the step."""
        optional: dict[str, bool | str] = {"forced": forced} if forced is not None else {}
        if actor is not None:
            optional["actor"] = actor
        step = RegistryTransition(
            time=time,
            action=action,
            from_state=self.state,
            to_state=to_state,
            reason=reason,
            **optional,
        )
        self.history.append(step)
        self.state = to_state
        self.updated_at = time
        return step


class ServingPointer(StoredRecord):
    """Which version of ``name`` is served, and the rollback stack (newest first)."""

    kind: Literal["serving"] = SERVING_KIND
    name: str
    version: int | None = None
    previous: list[int] = Field(default_factory=list)
    updated_at: str | None = None


class ModelEvent(_OmitsUnset):
    """A registry change as published on the ``models`` topic, keyed by model name."""

    model_config = ConfigDict(frozen=True)
    _omitted_unless_set: ClassVar[frozenset[str]] = frozenset({"previous_version", "actor"})

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

    def to_message(self) -> tuple[str, bytes]:
        """The (key, value) of this event on the ``models`` topic."""
        return self.name, orjson.dumps(self.model_dump(mode="json"))
