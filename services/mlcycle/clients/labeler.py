"""The labeler's REST API: label runs, the labels they wrote, human labels."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from urllib.parse import quote

from pydantic import BaseModel

from mlcycle.clients.base import ServiceClient
from mlcycle.contracts.comments import HumanLabel
from mlcycle.contracts.label_runs import LabelIssuesSummary, LabelRun, RunParams
from mlcycle.contracts.labels import Label

RUNS_PATH = "/v1/label-runs"
LABELS_PATH = "/v1/labels"
LABEL_ISSUES_PATH = "/v1/label-issues"


class RunStarted(BaseModel):
    """A queued label run."""

    id: str
    status: str
    previous_run: str | None = None


class LabelRunList(BaseModel):
    """Label runs, newest first (id, task, status, progress and created_at each)."""

    items: list[LabelRun]


class LabelPage(BaseModel):
    """One page of a run's labels; pass ``next_cursor`` back as ``cursor``."""

    run: str
    items: list[Label]
    next_cursor: str | None = None


class SuspectedLabel(BaseModel):
    """One suspected label error: the run's label and what the out-of-sample classifier
    prefers, with the label's quality (low: likely wrong)."""

    rank: int
    item_id: str
    given_label: int
    suggested_label: int
    quality: float
    probability: float
    probabilities: list[float]


class LabelIssuePage(BaseModel):
    """One page of a run's suspected label errors, most suspect first; ``summary`` says how
    they were found, or why the run has none (no run yet: ``run`` is None)."""

    run: str | None
    summary: LabelIssuesSummary | None = None
    items: list[SuspectedLabel]
    next_cursor: str | None = None


class HumanLabelsAccepted(BaseModel):
    """Human labels in Kafka as trusted votes."""

    accepted: int
    votes: list[str]
    reviewers: list[str] = []


class LabelerClient(ServiceClient):
    """Label runs, labels and human labels on the labeler."""

    service = "labeler service"
    start_command = "mlcycle labeler api"

    def start_run(self, params: RunParams) -> RunStarted:
        """Queue a label run; the parameters not set on ``params`` take the labeler's defaults."""
        body = params.model_dump(mode="json", exclude_unset=True)
        return self.call_record(RunStarted, "POST", RUNS_PATH, json=body)

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
        self,
        run: str,
        *,
        split: str | None = None,
        page_size: int = 1000,
        timeout_s: float | None = None,
    ) -> Iterator[LabelPage]:
        """Every page of ``run``'s labels (of ``split`` when given), in order."""
        cursor: str | None = None
        while True:
            page = self.labels(
                run=run, split=split, limit=page_size, cursor=cursor, timeout_s=timeout_s
            )
            yield page
            cursor = page.next_cursor
            if not cursor:
                return

    def label_issues(
        self,
        *,
        run: str | None = None,
        task: str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> LabelIssuePage:
        """One page of a run's suspected label errors (the task's latest run without ``run``)."""
        given = {"run": run, "task": task, "limit": limit, "cursor": cursor}
        params = {k: v for k, v in given.items() if v is not None}
        return self.call_record(LabelIssuePage, "GET", LABEL_ISSUES_PATH, params=params)

    def label(self, item_id: str, *, run: str | None = None) -> Label:
        """An item's label in ``run`` (default: the latest run, else the live label)."""
        params = {"run": run} if run is not None else None
        return self.call_record(Label, "GET", f"{LABELS_PATH}/{quote(item_id)}", params=params)

    def post_labels(self, labels: Sequence[HumanLabel]) -> HumanLabelsAccepted:
        """Send human labels; each joins the votes as a trusted voter.

        With a named API key the labeler records the key's name as the reviewer, so a
        label may leave ``reviewer`` out.
        """
        body = [label.model_dump(mode="json", exclude_none=True) for label in labels]
        return self.call_record(HumanLabelsAccepted, "POST", LABELS_PATH, json=body)
