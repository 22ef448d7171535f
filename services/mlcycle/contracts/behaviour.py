"""A model's figures on the behavioural suite, as a job's result and ``metadata.json`` keep them."""

from __future__ import annotations

from pydantic import BaseModel


class CapabilityRate(BaseModel):
    """One capability of the behavioural suite: its cases, how many passed, the rate."""

    cases: int
    passed: int
    rate: float


class BehaviourSummary(BaseModel):
    """A model's figures on the behavioural suite (``suite_digest``: the suite's content hash;
    rates are comparable only between equal digests). Kept in a job's result and in
    ``metadata.json``; the cases' texts are not."""

    suite_digest: str
    cases: int
    pass_rate: float
    worst_capability: str
    worst_rate: float
    capabilities: dict[str, CapabilityRate]
