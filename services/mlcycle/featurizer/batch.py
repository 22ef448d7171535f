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

Events that arrive before any transform is fitted cannot be acted on yet. The
handler neither drops them nor holds the partition until someone fits: it
remembers each such run durably (a marker file per run under
``<artifacts>/feature-sets/pending/``, beside what it will build), then lets the
loop commit. Pending runs are built as soon as a transform is current: before
the next batch, and by a watcher thread that looks every few seconds, so a fit
with no label event after it still gets them built. Markers are removed only
after the build, so a crash in between builds again (a no-op).
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import orjson

from mlcycle.common.errors import InvalidInput, NotFound, Unavailable
from mlcycle.common.files import confined, write_atomically
from mlcycle.common.kafka.consumer import ConsumedRecord, Failure
from mlcycle.common.kafka.producer import RecordProducer
from mlcycle.common.kafka.service import run_consumer_service
from mlcycle.common.settings import Settings
from mlcycle.common.store import Store
from mlcycle.contracts.labels import is_live_run
from mlcycle.contracts.repositories.label_runs import LabelRuns
from mlcycle.featurizer.service import FeaturizerCore, core_for

log = logging.getLogger(__name__)

SERVICE = "featurizer-batch"
# How often the watcher looks for a current transform while runs are pending.
PENDING_POLL_S = 5.0
PENDING_DIR = Path("feature-sets") / "pending"


class PendingRuns:
    """Label runs waiting for a transform: one empty marker file per run id, durable."""

    def __init__(self, root: Path) -> None:
        self.folder = Path(root) / PENDING_DIR

    def add(self, run_id: str) -> None:
        """Remember ``run_id`` (400 for an id that is not a plain file name)."""
        write_atomically(self._marker(run_id), b"")

    def check(self, run_id: str) -> None:
        """InvalidInput when ``run_id`` could not be remembered (it leads out of the folder)."""
        self._marker(run_id)

    def all(self) -> list[str]:
        """Every pending run id, oldest name first."""
        if not self.folder.is_dir():
            return []
        return sorted(p.name for p in self.folder.iterdir() if not p.name.startswith("."))

    def done(self, run_id: str) -> None:
        """Forget ``run_id``: its feature set is built (or never will be)."""
        self._marker(run_id).unlink(missing_ok=True)

    def _marker(self, run_id: str) -> Path:
        marker = confined(self.folder, run_id, what="label run")
        if marker.parent != self.folder.resolve():
            raise InvalidInput(f"label run {run_id!r} is not a plain id", details={"run": run_id})
        return marker


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
        self.pending = PendingRuns(core.root)
        self.wait_s = wait_s
        self.poll_s = poll_s
        # The consumer loop and the pending-runs watcher build one set at a time.
        self._building = threading.Lock()

    def __call__(self, records: list[ConsumedRecord]) -> list[Failure]:
        failures: list[Failure] = []
        runs: dict[str, None] = {}
        for record in records:
            try:
                run = orjson.loads(record.value)["run"]
            except (orjson.JSONDecodeError, KeyError, TypeError):
                failures.append(Failure(record, "not a label event: no 'run' field"))
                continue
            if not isinstance(run, str) or is_live_run(run):
                continue
            try:
                self.pending.check(run)
            except InvalidInput as exc:
                failures.append(Failure(record, exc.message))
                continue
            runs[run] = None
        if self.core.current_version() is None:
            if runs:
                for run_id in runs:
                    self.pending.add(run_id)
                log.warning("no transform is fitted yet: runs %s wait for one", list(runs))
            return failures
        self.build_pending()
        with self._building:
            for run_id in runs:
                self._build(run_id)
        return failures

    def build_pending(self) -> int:
        """Build every pending run's feature set if a transform is current; how many were."""
        if self.core.current_version() is None:
            return 0
        built = 0
        with self._building:
            for run_id in self.pending.all():
                self._build(run_id)
                self.pending.done(run_id)
                built += 1
        return built

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


class PendingWatcher:
    """Builds pending runs once a transform is current, even if no label event follows."""

    def __init__(self, builder: FeatureSetBuilder, poll_s: float = PENDING_POLL_S) -> None:
        self.builder = builder
        self.poll_s = poll_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="pending-runs", daemon=True)

    def start(self) -> PendingWatcher:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(self.poll_s + 1)

    def _watch(self) -> None:
        while not self._stop.wait(self.poll_s):
            try:
                self.builder.build_pending()
            except Exception:  # the next look tries again; the markers stay
                log.exception("building pending feature sets failed; trying again")


def run_batch(settings: Settings) -> None:
    """Build feature sets from label events until SIGINT/SIGTERM."""
    watchers: list[PendingWatcher] = []

    def handler(store: Store, producer: RecordProducer) -> FeatureSetBuilder:
        builder = FeatureSetBuilder(core_for(settings, store), store)
        watchers.append(PendingWatcher(builder).start())
        return builder

    try:
        run_consumer_service(
            settings,
            service=SERVICE,
            topics=[settings.kafka.topics.labels],
            group_id=settings.featurizer.group_id,
            metrics_port=settings.featurizer.batch_metrics_port,
            handler=handler,
        )
    finally:
        for watcher in watchers:
            watcher.stop()
