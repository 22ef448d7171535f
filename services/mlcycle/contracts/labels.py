"""Labels: one item's class from one label run, its soft probabilities, and where it came from.

A label's id is ``<run>:<item>``, so a run writes each item once however often
it is resumed. Batch label runs have ids ``lr-...``; the live label of a task,
kept up to date from the votes as they arrive, has the run id ``live-<task>``.
"""

from __future__ import annotations

from typing import NamedTuple

import orjson
from pydantic import BaseModel, ConfigDict, Field

from mlcycle.contracts.ids import joined_id
from mlcycle.contracts.repository import StoredRecord
from mlcycle.contracts.timestamps import Timestamp

LIVE_RUN_PREFIX = "live-"


def live_run(task: str) -> str:
    """The run id live labels of ``task`` are written under."""
    return f"{LIVE_RUN_PREFIX}{task}"


def is_live_run(run_id: str) -> bool:
    """Whether ``run_id`` names live labels rather than a batch label run."""
    return run_id.startswith(LIVE_RUN_PREFIX)


def label_id(run: str, item_id: str) -> str:
    """The id of ``item_id``'s label in ``run``: ``<run>:<item>``, hashed when too long."""
    return joined_id("label", run, item_id)


class LabelDecision(NamedTuple):
    """What a label decides: a change in any of these is published as a label event."""

    label: int
    split: str
    probability: float

    def differs_from(self, previous: LabelDecision | None) -> bool:
        """Whether this is new or differs from ``previous`` (the item's earlier decision).

        A probability that moved by less than 1e-3 is not a change: it would
        only republish the same decision.
        """
        if previous is None:
            return True
        return (
            self.label != previous.label
            or self.split != previous.split
            or abs(self.probability - previous.probability) > 1e-3
        )


class Provenance(BaseModel):
    """Which voters a label came from."""

    model_config = ConfigDict(frozen=True)

    crowd: list[str] = Field(default_factory=list, description="annotator ids whose votes counted")
    labeling_functions: list[str] = Field(default_factory=list, description="LFs that voted")
    humans: list[str] = Field(default_factory=list, description="reviewers who labeled the item")


class Label(StoredRecord):
    """A label of one item from one label run: hard class, soft probabilities, and why.

    ``probability`` is the soft label's probability of ``label``;
    ``probabilities`` is the whole distribution over the task's classes. The
    stored document and the ``labels`` event are the same JSON.
    """

    model_config = ConfigDict(frozen=True)

    run: str
    item_id: str
    task: str
    label: int
    probability: float
    probabilities: list[float]
    method: str
    n_votes: int = Field(description="crowd and human votes (labeling functions not counted)")
    provenance: Provenance
    split: str
    created_at: Timestamp

    @property
    def decision(self) -> LabelDecision:
        """The label's class, split and probability."""
        return LabelDecision(self.label, self.split, self.probability)

    def changed_from(self, previous: LabelDecision | None) -> bool:
        """Whether this label is new or decides otherwise than ``previous``."""
        return self.decision.differs_from(previous)

    def to_message(self) -> tuple[str, bytes]:
        """The (key, value) of this label's event on the ``labels`` topic, keyed by item."""
        return self.item_id, orjson.dumps(self.to_document())
