"""Batch featurization driven by the ``labels`` topic.

Label events name their run. When a batch of events mentions a label run,
the run is featurized with the current transform into a feature set (see
:mod:`mlcycle.featurization.feature_sets`) once the run has finished; events arrive
while a run is still writing, so the handler waits for it a while and, if it
is still running, fails the batch so the consumer loop retries it later
(nothing is committed meanwhile). Building a set that exists is a no-op, so
redelivered events cost one manifest read.

Live labels (``live-<task>``) are not snapshots and are not featurized here;
training reads finished runs only.
"""

from __future__ import annotations

import logging
import time

import orjson

from mlcycle.common.errors import NotFound, Unavailable
from mlcycle.common.kafka.consumer import ConsumedRecord, Failure
from mlcycle.common.kafka.service import run_consumer_service
from mlcycle.common.settings import Settings
from mlcycle.common.store import Store
from mlcycle.contracts.labels import is_live_run
from mlcycle.contracts.repositories.label_runs import LabelRuns
from mlcycle.featurizer.service import FeaturizerCore, core_for

log = logging.getLogger(__name__)

SERVICE = "featurizer-batch"


class FeatureSetBuilder:
    """The consumer-loop handler: a feature set per finished label run seen in events."""

    def __init__(
        self,
        core: FeaturizerCore,
        store: Store,
        *,
        wait_s: float = 120.0,
        poll_s: float = 1.0,
    ) -> None:
        self.core = core
        self.store = store
        self.runs = LabelRuns(store)
        self.wait_s = wait_s
        self.poll_s = poll_s

    def __call__(self, records: list[ConsumedRecord]) -> list[Failure]:
        failures: list[Failure] = []
        runs: dict[str, None] = {}
        for record in records:
            try:
                run = orjson.loads(record.value)["run"]
            except (orjson.JSONDecodeError, KeyError, TypeError):
                failures.append(Failure(record, "not a label event: no 'run' field"))
                continue
            if isinstance(run, str) and not is_live_run(run):
                runs[run] = None
        if runs and self.core.current_version() is None:
            log.warning("label events for runs %s, but no transform is fitted yet", list(runs))
            return failures
        for run_id in runs:
            self._build(run_id)
        return failures

    def _build(self, run_id: str) -> None:
        deadline = time.monotonic() + self.wait_s
        while True:
            run = self.runs.get(run_id)
            if run is None:
                log.warning("label events name run %s, which is not in the store", run_id)
                return
            if run.finished:
                break
            if time.monotonic() >= deadline:
                raise Unavailable(f"label run {run_id} is still {run.status}; retrying")
            time.sleep(self.poll_s)
        if not run.succeeded:
            log.info("label run %s failed; nothing to featurize", run_id)
            return
        try:
            manifest = self.core.build_feature_set(run_id)
        except NotFound as exc:
            log.warning("cannot featurize run %s: %s", run_id, exc.message)
            return
        log.info(
            "feature set ready",
            extra={"run": run_id, "transform": manifest.transform, "rows": manifest.rows},
        )


def run_batch(settings: Settings) -> None:
    """Build feature sets from label events until SIGINT/SIGTERM."""
    run_consumer_service(
        settings,
        service=SERVICE,
        topics=[settings.kafka.topics.labels],
        group_id=settings.featurizer.group_id,
        metrics_port=settings.featurizer.batch_metrics_port,
        handler=lambda store, producer: FeatureSetBuilder(core_for(settings, store), store),
    )
