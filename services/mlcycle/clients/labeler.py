"""The labeler's REST API: label runs, the labels they wrote, human labels."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any
from urllib.parse import quote

from pydantic import BaseModel, ConfigDict

from mlcycle.clients.base import ServiceClient
from mlcycle.contracts.comments import HumanLabel
from mlcycle.contracts.labels import Label

RUNS_PATH = "/v1/label-runs"
LABELS_PATH = "/v1/labels"
FINISHED = ("succeeded", "failed")


class RunStarted(BaseModel):
    """A queued label run."""

    id: str
    status: str
    previous_run: str | None = None


class LabelRunProgress(BaseModel):
    """How far a run is: its phase and the chunks of labels written."""

    model_config = ConfigDict(extra="allow")

    phase: str | None = None
    chunks_done: int | None = None
    chunks_total: int | None = None
    events: int | None = None


class LabelRunParams(BaseModel):
    """What a run was asked to do."""

    model_config = ConfigDict(extra="allow")

    strategy: str
    task: str | None = None
    threshold: float | None = None
    labeling_functions: list[str] | None = None
    gold_min_votes: int | None = None


class Baseline(BaseModel):
    """The majority vote next to the run's strategy, on the same votes."""

    model_config = ConfigDict(extra="allow")

    method: str
    accuracy_on_gold: float | None = None
    agreement_with_strategy: float | None = None


class LabelRunStats(BaseModel):
    """A finished run's figures (the labeler's summary; more fields are kept as they come)."""

    model_config = ConfigDict(extra="allow")

    items: int
    labeled: int
    events: int = 0
    gold_items: int
    accuracy_on_gold: float | None = None
    class_balance: dict[str, dict[str, int]]
    baseline: Baseline | None = None


class LabelRun(BaseModel):
    """A label run as ``GET /v1/label-runs/{id}`` shows it (listings carry the first fields)."""

    model_config = ConfigDict(extra="allow")

    id: str
    task: str | None = None
    status: str
    progress: LabelRunProgress = LabelRunProgress()
    params: LabelRunParams | None = None
    previous_run: str | None = None
    stats: LabelRunStats | None = None
    # The diagnostics document (per labeling function and worker): a report payload.
    report: dict[str, Any] | None = None
    error: str | None = None
    created_at: str | None = None

    @property
    def finished(self) -> bool:
        """Whether the run has ended, well or not."""
        return self.status in FINISHED


class LabelRunList(BaseModel):
    """Label runs, newest first."""

    items: list[LabelRun]


class LabelPage(BaseModel):
    """One page of a run's labels; pass ``next_cursor`` back as ``cursor``."""

    run: str
    items: list[Label]
    next_cursor: str | None = None


class HumanLabelsAccepted(BaseModel):
    """Human labels in Kafka as trusted votes."""

    accepted: int
    votes: list[str]


class LabelerClient(ServiceClient):
    """Label runs, labels and human labels on the labeler."""

    service = "labeler service"
    start_command = "mlcycle labeler api"

    def start_run(
        self,
        strategy: str,
        *,
        task: str | None = None,
        threshold: float | None = None,
        labeling_functions: Sequence[str] | None = None,
    ) -> RunStarted:
        """Queue a label run; ``labeling_functions=[]`` labels from the crowd alone."""
        params: dict[str, object] = {"strategy": strategy}
        if task is not None:
            params["task"] = task
        if threshold is not None:
            params["threshold"] = threshold
        if labeling_functions is not None:
            params["labeling_functions"] = list(labeling_functions)
        return self.call_record(RunStarted, "POST", RUNS_PATH, json=params)

    def run(self, run_id: str) -> LabelRun:
        """One run: status and progress, then its figures and diagnostics."""
        return self.call_record(LabelRun, "GET", f"{RUNS_PATH}/{quote(run_id, safe='')}")

    def runs(self, *, task: str | None = None, limit: int | None = None) -> list[LabelRun]:
        """The newest runs (id, task, status, progress, created_at each)."""
        params = {k: v for k, v in {"task": task, "limit": limit}.items() if v is not None}
        return self.call_record(LabelRunList, "GET", RUNS_PATH, params=params).items

    def labels(
        self,
        *,
        run: str | None = None,
        split: str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
        timeout_s: float | None = None,
    ) -> LabelPage:
        """One page of a run's labels (the latest run's without ``run``)."""
        given = {"run": run, "split": split, "limit": limit, "cursor": cursor}
        params = {k: v for k, v in given.items() if v is not None}
        return self.call_record(LabelPage, "GET", LABELS_PATH, params=params, timeout_s=timeout_s)

    def all_labels(
        self, run: str, *, page_size: int = 1000, timeout_s: float | None = None
    ) -> Iterator[LabelPage]:
        """Every page of ``run``'s labels, in order."""
        cursor: str | None = None
        while True:
            page = self.labels(run=run, limit=page_size, cursor=cursor, timeout_s=timeout_s)
            yield page
            cursor = page.next_cursor
            if not cursor:
                return

    def label(self, item_id: str, *, run: str | None = None) -> Label:
        """An item's label in ``run`` (default: the latest run, else the live label)."""
        params = {"run": run} if run is not None else None
        return self.call_record(Label, "GET", f"{LABELS_PATH}/{quote(item_id)}", params=params)

    def post_labels(self, labels: Sequence[HumanLabel]) -> HumanLabelsAccepted:
        """Send human labels; each joins the votes as a trusted voter."""
        body = [label.model_dump(mode="json") for label in labels]
        return self.call_record(HumanLabelsAccepted, "POST", LABELS_PATH, json=body)
