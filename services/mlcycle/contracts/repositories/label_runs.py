"""Label runs in the ``runs`` collection, and the pointer to each task's latest succeeded run."""

from __future__ import annotations

from collections.abc import Sequence

from mlcycle.common.errors import InvalidInput, NotFound
from mlcycle.common.store import RUNS, Store
from mlcycle.common.store.base import SortBy
from mlcycle.contracts.label_runs import (
    LABEL_ISSUE_KIND,
    LABEL_RUN_KIND,
    LATEST_RUN_KIND,
    RUN_ITEMS_KIND,
    UNFINISHED,
    LabelIssue,
    LabelRun,
    LatestLabelRun,
    RunItems,
)
from mlcycle.contracts.repository import RecordPage, Repository


class _LatestPointers(Repository[LatestLabelRun]):
    collection = RUNS
    record_type = LatestLabelRun
    kind = LATEST_RUN_KIND
    noun = "latest label run pointer"


class LabelRuns(Repository[LabelRun]):
    """Label run records; every service that needs a run's labels finds the run here."""

    collection = RUNS
    record_type = LabelRun
    kind = LABEL_RUN_KIND
    noun = "label run"

    def __init__(self, store: Store) -> None:
        super().__init__(store)
        self._pointers = _LatestPointers(store)

    def latest(self, task: str) -> LabelRun | None:
        """The run of ``task`` that succeeded last, or None.

        Read through a small pointer record written when a run succeeds: label
        reads ask for it on every request, and scanning every run record (each
        holding its whole diagnostics report) would grow with the run history.
        """
        pointer = self._pointers.get(LatestLabelRun.id_of(task))
        return self.get(pointer.run) if pointer is not None else None

    def mark_latest(self, run: LabelRun) -> None:
        """Make the succeeded ``run`` the one :meth:`latest` answers for its task."""
        self._pointers.save(LatestLabelRun(id=LatestLabelRun.id_of(run.task), run=run.id))

    def require_succeeded(self, run_id: str) -> LabelRun:
        """The run ``run_id``; NotFound when there is none, InvalidInput until it has succeeded."""
        run = self.require(run_id)
        if not run.succeeded:
            raise InvalidInput(f"label run {run_id} has not finished ({run.status})")
        return run

    def resolve(self, run_id: str | None, task: str) -> LabelRun:
        """The succeeded run ``run_id``, or without one the latest succeeded run of ``task``."""
        if run_id is not None:
            return self.require_succeeded(run_id)
        run = self.latest(task)
        if run is None:
            raise NotFound(f"no finished label run for task {task!r}: run `mlcycle label` first")
        return run

    def newest(self, task: str | None = None, limit: int = 20) -> list[LabelRun]:
        """Up to ``limit`` runs (of ``task``, or of every task), newest first.

        Run ids begin with their creation time, so id order is creation order.
        """
        filters = {"task": task} if task is not None else None
        return self.page(filters=filters, limit=limit, sort=SortBy("id", descending=True)).items

    def unfinished(self) -> list[LabelRun]:
        """Runs left queued or running, oldest first (a crashed process resumes them)."""
        return [run for run in self.scan() if run.status in UNFINISHED]


class RunSnapshots(Repository[RunItems]):
    """Each label run's item snapshot, one record per chunk (see :class:`RunItems`)."""

    collection = RUNS
    record_type = RunItems
    kind = RUN_ITEMS_KIND
    noun = "label run chunk"

    def save_chunks(self, run_id: str, chunks: Sequence[Sequence[str]]) -> int:
        """Store the snapshot: chunk k holds ``chunks[k]``; how many chunks."""
        self.save_all(
            RunItems(id=RunItems.id_of(run_id, k), run=run_id, chunk=k, item_ids=list(ids))
            for k, ids in enumerate(chunks)
        )
        return len(chunks)

    def chunk(self, run_id: str, chunk: int) -> list[str]:
        """The item ids of chunk ``chunk`` of run ``run_id`` (NotFound when not stored)."""
        return self.require(RunItems.id_of(run_id, chunk)).item_ids


class LabelIssues(Repository[LabelIssue]):
    """Each label run's suspected label errors, most suspect first (see :class:`LabelIssue`)."""

    collection = RUNS
    record_type = LabelIssue
    kind = LABEL_ISSUE_KIND
    noun = "label issue"

    def page_of_run(
        self, run: str, *, limit: int = 50, cursor: str | None = None
    ) -> RecordPage[LabelIssue]:
        """One page of ``run``'s suspects in rank order (ids sort by rank)."""
        return self.page(filters={"run": run}, limit=limit, cursor=cursor)

    def item_ids(self, run: str) -> set[str]:
        """The items ``run`` suspects (every stored one)."""
        return {issue.item_id for issue in self.scan({"run": run})}

    def of_item(self, run: str, item_id: str) -> LabelIssue | None:
        """``run``'s suspicion about ``item_id``, if it has one."""
        found = self.page(filters={"run": run, "item_id": item_id}, limit=1).items
        return found[0] if found else None
