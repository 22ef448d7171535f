"""The trainer's REST API: training jobs and the model registry."""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import quote

from pydantic import BaseModel, ConfigDict, Field

from mlcycle.clients.base import ServiceClient
from mlcycle.common.errors import Conflict, InvalidInput
from mlcycle.contracts.behaviour import BehaviourSummary
from mlcycle.contracts.retraining import RetrainingOverview, RetrainingRun
from mlcycle.contracts.rollouts import RolloutList, RolloutPolicy, RolloutView

JOBS_PATH = "/v1/jobs"
MODELS_PATH = "/v1/models"
ROLLOUTS_PATH = "/v1/rollouts"
RETRAINING_PATH = "/v1/retraining-runs"
FINISHED = ("succeeded", "failed")


class JobStarted(BaseModel):
    """A queued training job."""

    id: str
    status: str
    label_run: str


class JobProgress(BaseModel):
    """A job's stage and, during the search, its trials."""

    model_config = ConfigDict(extra="allow")

    stage: str | None = None
    detail: str | None = None
    trials_done: int = 0
    trials_total: int | None = None
    best_value: float | None = None


class ModelSummary(BaseModel):
    """The model version a job exported, and the blessing's verdict on it."""

    model_config = ConfigDict(extra="allow")

    name: str
    version: int
    state: str
    reason: str | None = None
    path: str | None = None


class SplitFigures(BaseModel):
    """A model's figures on one split (the headline ones; every other is kept as it comes)."""

    model_config = ConfigDict(extra="allow")

    accuracy: float | None = None
    roc_auc: float | None = None
    weighted_f1: float | None = None
    threshold: float | None = None  # the served threshold the thresholded figures use


class JobResult(BaseModel):
    """What a succeeded job found: the selected trial, its figures, model and report."""

    model_config = ConfigDict(extra="allow")

    metric: str
    best_trial: int | None = None
    transform: str | None = None
    dev: SplitFigures | None = None
    test: SplitFigures | None = None
    model: ModelSummary | None = None
    report: str | None = None
    behaviour: BehaviourSummary | None = None


class TrainingJob(BaseModel):
    """A training job as ``GET /v1/jobs/{id}`` shows it (listings carry the first fields)."""

    model_config = ConfigDict(extra="allow")

    id: str
    status: str
    label_run: str | None = None
    progress: JobProgress = JobProgress()
    result: JobResult | None = None
    error: str | None = None
    created_at: str | None = None

    @property
    def finished(self) -> bool:
        """Whether the job has ended, well or not."""
        return self.status in FINISHED


class JobList(BaseModel):
    """Training jobs, newest first, and the one running now."""

    model_config = ConfigDict(extra="allow")

    jobs: list[TrainingJob]
    active: str | None = None


class ModelVersion(BaseModel):
    """A registered model version (lineage, metrics, blessing and history kept as they come)."""

    model_config = ConfigDict(extra="allow")

    id: str
    name: str
    version: int
    state: str
    transform: str | None = None
    label_run: str | None = None


class Serving(BaseModel):
    """What one name serves: production (label ``stable``), a rollout's canary and shadow."""

    stable: int | None = None
    canary: int | None = None
    canary_share: float = 0.0
    shadow: int | None = None
    shadow_share: float = 0.0
    rollout: str | None = None
    previous: list[int] = Field(default_factory=list)

    def label_of(self, version: int) -> str | None:
        """The version label ``version`` holds (``stable``, ``canary``, ``shadow``), if any."""
        labels = {"stable": self.stable, "canary": self.canary, "shadow": self.shadow}
        return next((label for label, held in labels.items() if held == version), None)


class ModelList(BaseModel):
    """Model versions, newest first, the version each name serves and its stages."""

    models: list[ModelVersion]
    production: dict[str, int]
    serving: dict[str, Serving] = Field(default_factory=dict)


class RolledBack(BaseModel):
    """The version served again (restored) and the one taken off (rolled back)."""

    production: ModelVersion
    rolled_back: ModelVersion


class RetrainingRefused(Conflict):
    """The trainer's retraining policy refused a run; ``run`` is the recorded refusal."""

    def __init__(self, message: str, run: RetrainingRun) -> None:
        super().__init__(message, details={"run": run.id, "refusal": run.refusal})
        self.run = run


class TrainerClient(ServiceClient):
    """Training jobs and the model registry on the trainer."""

    service = "trainer service"
    start_command = "mlcycle trainer api"

    def start_job(self, config: Mapping[str, object] | None = None) -> JobStarted:
        """Queue a training job; ``config`` is the job config (defaults for what it omits)."""
        return self.call_record(JobStarted, "POST", JOBS_PATH, json=dict(config or {}))

    def job(self, job_id: str) -> TrainingJob:
        """One job: its stage, search progress and, when done, its result."""
        return self.call_record(TrainingJob, "GET", f"{JOBS_PATH}/{quote(job_id, safe='')}")

    def jobs(self, *, limit: int | None = None) -> JobList:
        """The newest jobs."""
        params = {"limit": limit} if limit is not None else None
        return self.call_record(JobList, "GET", JOBS_PATH, params=params)

    def models(self, *, name: str | None = None, state: str | None = None) -> ModelList:
        """Registered versions and what each name serves."""
        params = {k: v for k, v in {"name": name, "state": state}.items() if v is not None}
        return self.call_record(ModelList, "GET", MODELS_PATH, params=params)

    def production_version(self, name: str) -> int | None:
        """The version the registry serves for ``name`` (None before any)."""
        return self.models().production.get(name)

    def model(self, version: int, *, name: str | None = None) -> ModelVersion:
        """One registered version."""
        params = {"name": name} if name is not None else None
        return self.call_record(ModelVersion, "GET", f"{MODELS_PATH}/{version}", params=params)

    def promote(
        self, version: int, reason: str, *, name: str | None = None, force: bool = False
    ) -> ModelVersion:
        """Serve ``version``; the version it replaces is archived (``force``: even unblessed)."""
        body: dict[str, object] = {"reason": reason, "force": force}
        if name is not None:
            body["name"] = name
        return self.call_record(ModelVersion, "POST", f"{MODELS_PATH}/{version}:promote", json=body)

    def rollback(self, reason: str, *, name: str | None = None) -> RolledBack:
        """Roll the serving version back and serve the previous one again."""
        body: dict[str, object] = {"reason": reason}
        if name is not None:
            body["name"] = name
        return self.call_record(RolledBack, "POST", f"{MODELS_PATH}:rollback", json=body)

    # -- rollouts --------------------------------------------------------------------------------

    def start_rollout(
        self,
        version: int,
        reason: str,
        *,
        name: str | None = None,
        policy: RolloutPolicy | None = None,
        force: bool = False,
    ) -> RolloutView:
        """Try ``version`` in shadow, then as a canary, then in production (``policy``: the
        service's default when None)."""
        body: dict[str, object] = {"version": version, "reason": reason, "force": force}
        if name is not None:
            body["name"] = name
        if policy is not None:
            body["policy"] = policy.model_dump(mode="json")
        return self.call_record(RolloutView, "POST", ROLLOUTS_PATH, json=body)

    def rollouts(
        self, *, name: str | None = None, active: bool = False, limit: int | None = None
    ) -> RolloutList:
        """Rollouts, newest first, each running one with its comparison."""
        params: dict[str, str | int | float | bool] = {"active": active}
        if name is not None:
            params["name"] = name
        if limit is not None:
            params["limit"] = limit
        return self.call_record(RolloutList, "GET", ROLLOUTS_PATH, params=params)

    def rollout(self, rollout_id: str) -> RolloutView:
        """One rollout with its decisions and live comparison."""
        return self.call_record(RolloutView, "GET", f"{ROLLOUTS_PATH}/{quote(rollout_id, safe='')}")

    def order_rollout(self, rollout_id: str, order: str, reason: str) -> RolloutView:
        """``pause``, ``resume``, ``force`` (one step) or ``abort`` a rollout."""
        path = f"{ROLLOUTS_PATH}/{quote(rollout_id, safe='')}:{order}"
        return self.call_record(RolloutView, "POST", path, json={"reason": reason})

    # -- retraining runs ---------------------------------------------------------------------

    def request_retraining(
        self,
        trigger: str,
        *,
        why: Mapping[str, object] | None = None,
        votes: int | None = None,
        name: str | None = None,
        force: bool = False,
    ) -> RetrainingRun:
        """Ask for a retraining run; :class:`RetrainingRefused` (with the ``skipped`` record)
        when the policy refuses it. ``force`` needs an admin key."""
        body: dict[str, object] = {"trigger": trigger, "why": dict(why or {}), "force": force}
        if votes is not None:
            body["votes"] = votes
        if name is not None:
            body["name"] = name
        try:
            return self.call_record(RetrainingRun, "POST", RETRAINING_PATH, json=body)
        except InvalidInput as exc:  # 409 reads as InvalidInput; a refusal carries its record
            details = exc.details if isinstance(exc.details, dict) else {}
            if "skipped" not in details:
                raise
            run = RetrainingRun.model_validate(details["skipped"])
            raise RetrainingRefused(str(exc), run) from None

    def retraining(
        self, *, limit: int | None = None, name: str | None = None
    ) -> RetrainingOverview:
        """The retraining policy, what it allows now, and the runs, newest first."""
        params: dict[str, str | int | float | bool] = {}
        if limit is not None:
            params["limit"] = limit
        if name is not None:
            params["name"] = name
        return self.call_record(RetrainingOverview, "GET", RETRAINING_PATH, params=params)

    def retraining_run(self, run_id: str) -> RetrainingRun:
        """One retraining run with its stages."""
        return self.call_record(
            RetrainingRun, "GET", f"{RETRAINING_PATH}/{quote(run_id, safe='')}"
        )

    def report_stage(
        self,
        run_id: str,
        stage: str,
        status: str,
        *,
        detail: Mapping[str, object] | None = None,
        error: str | None = None,
    ) -> RetrainingRun:
        """Report a stage of a run started, still running (with news), or ended; the run."""
        body: dict[str, object] = {"name": stage, "status": status, "detail": dict(detail or {})}
        if error is not None:
            body["error"] = error[:2000]
        path = f"{RETRAINING_PATH}/{quote(run_id, safe='')}/stages"
        return self.call_record(RetrainingRun, "POST", path, json=body)

    def stop_retraining(self, run_id: str, reason: str) -> RetrainingRun:
        """Stop a run at its next stage boundary (its running rollout is aborted at once)."""
        path = f"{RETRAINING_PATH}/{quote(run_id, safe='')}:stop"
        return self.call_record(RetrainingRun, "POST", path, json={"reason": reason})
