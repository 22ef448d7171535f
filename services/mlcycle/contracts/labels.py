"""Labels: one item's class from one label run, its soft probabilities, and where it came from."""

from __future__ import annotations

from datetime import datetime

import orjson
from pydantic import BaseModel, ConfigDict, Field


class Provenance(BaseModel):
    """Which voters a label came from."""

    model_config = ConfigDict(frozen=True)

    crowd: list[str] = Field(default_factory=list, description="annotator ids whose votes counted")
    labeling_functions: list[str] = Field(default_factory=list, description="LFs that voted")
    humans: list[str] = Field(default_factory=list, description="reviewers who labeled the item")


class Label(BaseModel):
    """A label of one item from one label run: hard class, soft probabilities, and why.

    ``probability`` is the soft label's probability of ``label``;
    ``probabilities`` is the whole distribution over the task's classes.
    """

    model_config = ConfigDict(frozen=True)

    id: str
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
    created_at: datetime

    def to_message(self) -> tuple[str, bytes]:
        """The (key, value) of this label's event on the ``labels`` topic, keyed by item."""
        return self.item_id, orjson.dumps(self.model_dump(mode="json"))
