"""Label runs: read the store, compute, write labels and their events, keep a run record.

A run writes its labels in chunks of items (in id order). Before the first
chunk it stores its item snapshot, the ids of each chunk (one small record per
chunk, :class:`~mlcycle.contracts.label_runs.RunItems`), and only then records
``progress.chunks_total``. After each chunk its labels are upserted, the events
of the new or changed ones are acknowledged by Kafka, and only then does the
run record advance ``progress.chunks_done``. A run killed midway is resumed by
executing it again: finished chunks are skipped, a chunk caught halfway is
redone — label ids are ``<run>:<item>`` so the store holds no duplicate, and
events carry the label id so a consumer can drop the few repeats — and every
chunk labels the items of its snapshot, so comments stored since the run
started shift nothing: no item is skipped or labeled twice, and new ones wait
for the next run.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

from mlcycle.common.errors import InvalidInput
from mlcycle.common.kafka.producer import RecordProducer
from mlcycle.common.settings import LabelerSettings
from mlcycle.common.store import Store
from mlcycle.contracts.label_diagnostics import LfErrorSummary
from mlcycle.contracts.label_runs import (
    LabelRun,
    RunParams,
    RunProgress,
)
from mlcycle.contracts.labels import Label, label_id
from mlcycle.contracts.repositories.comments import Comments
from mlcycle.contracts.repositories.label_runs import LabelIssues, LabelRuns, RunSnapshots
from mlcycle.contracts.repositories.labels import Labels
from mlcycle.contracts.repositories.votes import Votes
from mlcycle.contracts.timestamps import utc_now
from mlcycle.featurization.store import TransformStore
from mlcycle.labeler.diagnostics import run_diagnostics
from mlcycle.labeler.label_issues import FinderLimits, RunIssues, find_in_run
from mlcycle.labeler.labeling import (
    Corpus,
    Labeling,
    ProvenanceIndex,
    compute,
    label_records,
    review_queue,
    summary,
)

log = logging.getLogger(__name__)

ProgressHook = Callable[[LabelRun], None]
# Records per store read while loading a run's comments and votes.
SCAN_BATCH = 5000


def new_run_id(now: datetime | None = None) -> str:
    """Sortable by creation time: ``lr-20261124T181500-1a2b3c``."""
    return f"lr-{(now or utc_now()):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}"


class LabelRunner:
    """Creates and executes label runs against one store and one producer.

    Label events go to ``topic`` (the ``labels`` topic). Suspected label errors are
    looked for with the current transform of ``transforms`` (the featurizer's store), or,
    with none, the default transform fitted on the run's texts.
    """

    def __init__(
        self,
        settings: LabelerSettings,
        store: Store,
        producer: RecordProducer,
        *,
        topic: str,
        chunk_items: int | None = None,
        on_progress: ProgressHook | None = None,
        transforms: TransformStore | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.runs = LabelRuns(store)
        self.snapshots = RunSnapshots(store)
        self.issues = LabelIssues(store)
        self.transforms = transforms
        self.labels = Labels(store)
        self.comments = Comments(store)
        self.votes = Votes(store)
        self.producer = producer
        self.topic = topic
        self.chunk_items = chunk_items or settings.chunk_items
        self.on_progress = on_progress

    # -- run records ---------------------------------------------------------------------------

    def create(self, params: RunParams, *, started_by: str | None = None) -> LabelRun:
        """Record a new queued run (and who started it) and return it."""
        now = utc_now()
        previous = self.runs.latest(params.task)
        run = LabelRun(
            id=new_run_id(now),
            task=params.task,
            status="queued",
            params=params,
            previous_run=previous.id if previous else None,
            started_by=started_by,
            progress=RunProgress(phase="queued", chunks_done=0, chunks_total=None),
            created_at=now,
            updated_at=now,
        )
        return self.runs.save(run)

    def _save(self, run: LabelRun, **changes: Any) -> LabelRun:
        for name, value in {**changes, "updated_at": utc_now()}.items():
            setattr(run, name, value)
        self.runs.save(run)
        if self.on_progress is not None:
            self.on_progress(run)
        return run

    def _phase(self, run: LabelRun, phase: str, **progress: int) -> None:
        self._save(run, progress=run.progress.model_copy(update={"phase": phase, **progress}))

    # -- execution -----------------------------------------------------------------------------

    def execute(self, run_id: str) -> LabelRun:
        """Run (or resume) ``run_id`` to the end; returns the finished run record."""
        run = self.runs.require(run_id)
        if run.succeeded:
            return run
        if run.params is None:
            raise InvalidInput(f"label run {run_id} has no parameters to run with")
        params = run.params
        started = time.perf_counter()
        self._save(run, status="running", started_at=run.started_at or utc_now())
        try:
            self._phase(run, "reading")
            self.store.refresh()  # see every write made before the run started
            corpus = Corpus.from_comments(self.comments.scan(batch_size=SCAN_BATCH))
            votes = self.votes.cast(params.task, batch_size=SCAN_BATCH)
            self._phase(run, "aggregating", items=len(corpus))
            labeling = compute(corpus, votes, params, self.settings)
            self._write_labels(run, params, corpus, labeling)
            self._phase(run, "diagnosing")
            report = run_diagnostics(
                labeling.votes,
                probs=labeling.result.probs,
                gold=labeling.gold,
                texts=dict(zip(corpus.item_ids, corpus.texts, strict=True)),
                lf_errors=_lf_errors(labeling, corpus),
                min_votes=params.gold_min_votes or self.settings.gold_min_votes,
            )
            seconds = round(time.perf_counter() - started, 3)
            stats = summary(labeling).model_copy(
                update={"events": run.progress.events, "seconds": seconds}
            )
            self._phase(run, "finding label issues")
            found = self._label_issues(run.id, labeling, corpus)
            self.issues.save_all(found.issues)
            queue = review_queue(labeling, corpus, self.settings.review_queue_size, found.suspicion)
        except Exception as exc:
            log.exception("label run failed", extra={"run": run_id})
            self._save(run, status="failed", error=f"{type(exc).__name__}: {exc}")
            raise
        finished = self._save(
            run,
            status="succeeded",
            stats=stats,
            report=report,
            review_queue=queue,
            label_issues=found.summary,
            progress=run.progress.model_copy(update={"phase": "done"}),
            finished_at=utc_now(),
        )
        self.runs.mark_latest(finished)
        return finished

    def _label_issues(self, run_id: str, labeling: Labeling, corpus: Corpus) -> RunIssues:
        """The run's suspected label errors; an unexpected failure leaves none, and says so.

        Suspects are advice to reviewers: a finder that fails (a transform file that
        cannot be read, say) must not fail the labels the run computed.
        """
        settings = self.settings
        limits = FinderLimits(settings.issue_folds, settings.issue_seed, settings.issue_fit_items)
        try:
            current = self.transforms.current_version() if self.transforms else None
            transform = self.transforms.transform(current) if self.transforms and current else None
            return find_in_run(
                run_id,
                labeling,
                corpus,
                transform,
                limits=limits,
                max_stored=settings.issue_stored_items,
            )
        except Exception as exc:
            log.exception("looking for label issues failed", extra={"run": run_id})
            return RunIssues.none(len(corpus), f"the search failed: {type(exc).__name__}: {exc}")

    def _write_labels(
        self, run: LabelRun, params: RunParams, corpus: Corpus, labeling: Labeling
    ) -> None:
        total = run.progress.chunks_total
        fresh_chunks: list[list[str]] | None = None
        if total is None:  # the first time the run writes: its snapshot, then its chunk count
            ids = corpus.item_ids
            fresh_chunks = [
                ids[start : start + self.chunk_items]
                for start in range(0, len(ids), self.chunk_items)
            ]
            total = self.snapshots.save_chunks(run.id, fresh_chunks)
        done = run.progress.chunks_done
        self._phase(run, "writing", chunks_total=total)
        provenance = ProvenanceIndex(labeling.votes)
        position = {item_id: i for i, item_id in enumerate(corpus.item_ids)}
        previous = run.previous_run
        events = run.progress.events
        for chunk in range(done, total):
            chunk_ids = (
                fresh_chunks[chunk]
                if fresh_chunks is not None
                else self.snapshots.chunk(run.id, chunk)
            )
            # Comments are never deleted: every item of the snapshot is in the corpus read now.
            items = [position[item_id] for item_id in chunk_ids if item_id in position]
            labels = label_records(
                labeling,
                corpus,
                items,
                run_id=run.id,
                params=params,
                provenance=provenance,
                now=utc_now(),
            )
            self.labels.save_all(labels)
            fresh = self._changed_since(previous, labels)
            if fresh:
                self.producer.send_batch(self.topic, (label.to_message() for label in fresh))
            events += len(fresh)
            self._phase(run, "writing", chunks_done=chunk + 1, events=events)

    def _changed_since(self, previous_run: str | None, labels: list[Label]) -> list[Label]:
        if previous_run is None:
            return labels
        ids = {label.id: label_id(previous_run, label.item_id) for label in labels}
        old = self.labels.decisions(list(ids.values()))
        return [label for label in labels if label.changed_from(old.get(ids[label.id]))]


def _lf_errors(labeling: Labeling, corpus: Corpus) -> dict[str, LfErrorSummary]:
    """Per labeling function that raised: how often, the first error, a few item ids."""
    application = labeling.lf_application
    if application is None:
        return {}
    return {
        name: LfErrorSummary(
            count=e.count,
            message=e.message,
            items=[corpus.item_ids[i] for i in e.item_indices],
        )
        for name, e in application.errors.items()
    }
