"""The console's routes: sign in and out, the review queue, labels and undo, the read pages,
and an admin's actions on the models page.

Pages answer HTML; a page the caller may not see answers the login page (401) or a page
saying which scope is missing (403). The two POSTs the review page's script sends answer
JSON in mlcycle's error shape, like the API, so a ``read`` key that tries to label gets 403.
Labels go through :class:`~mlcycle.labeler.human_labels.HumanLabels`, as ``POST
/v1/labels`` does. The models page's forms (``admin`` scope) answer the page again with what
the trainer made of the action (:mod:`~mlcycle.labeler.console.admin`).
"""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import parse_qs

from fastapi import APIRouter, Body, Query, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from pydantic import BaseModel, ConfigDict, StrictInt

from mlcycle.common.errors import Forbidden, NotFound, Unauthenticated
from mlcycle.common.http import OrjsonResponse, bearer_token
from mlcycle.common.keys import Caller, KeyRing
from mlcycle.common.settings import Settings
from mlcycle.common.store import Store
from mlcycle.contracts.comments import HumanLabel
from mlcycle.contracts.ids import RecordId
from mlcycle.contracts.repositories.label_runs import LabelRuns
from mlcycle.contracts.repositories.model_versions import ModelVersions
from mlcycle.contracts.repositories.rollouts import Rollouts
from mlcycle.labeler.console.admin import ROLLOUT_ORDERS, AdminOutcome, TrainerAdmin
from mlcycle.labeler.console.desk import QueueFilters, ReviewDesk
from mlcycle.labeler.console.explain import Explainer
from mlcycle.labeler.console.render import Pages, report_response
from mlcycle.labeler.console.session import (
    KEY_COOKIE,
    ConsoleAccess,
    Session,
    check_csrf,
    forget_notice,
    leave_notice,
    notice_of,
    sign_in,
    sign_out,
)
from mlcycle.labeler.human_labels import HumanLabels
from mlcycle.labeler.report import render_html

REASONS = ("uncertain", "suspected_error", "disagrees_with_moderators")
SPLITS = ("train", "dev", "test")
# Items this browser handled since the page loaded, sent back so they are not shown again.
MAX_SKIP = 500


class ConsoleLabel(BaseModel):
    """One label from the review page; the reviewer is the signed-in key (or name)."""

    model_config = ConfigDict(extra="forbid")

    item_id: RecordId
    label: StrictInt
    task: RecordId


class ConsoleRetraction(BaseModel):
    """Undo: take back the signed-in reviewer's label of one item."""

    model_config = ConfigDict(extra="forbid")

    item_id: RecordId
    task: RecordId


def console_router(
    settings: Settings,
    store: Store,
    human_labels: HumanLabels,
    ring: KeyRing,
    explainer: Explainer,
    trainer: TrainerAdmin,
) -> APIRouter:
    """The ``/console`` routes (left out of the OpenAPI document: they are pages, not API)."""
    router = APIRouter(prefix="/console", include_in_schema=False)
    access = ConsoleAccess(ring)
    pages = Pages()
    desk = ReviewDesk(settings.labeler, store, explainer)
    default_task = settings.labeler.task

    def page(
        request: Request, template: str, context: Callable[[Session], dict[str, object]]
    ) -> HTMLResponse:
        """The page if the caller may see it; else the login page (401) or a 403 page."""
        try:
            caller = access.caller(request)
        except Unauthenticated as exc:
            session = access.session(request, None)
            return pages.render("login.html", session, status_code=401, error=exc.message)
        except Forbidden as exc:
            session = access.session(request, None)
            return pages.render("forbidden.html", session, status_code=403, error=exc.message)
        session = access.session(request, caller)
        return pages.render(template, session, **context(session))

    def labeling_caller(request: Request) -> tuple[Caller, Session]:
        caller = access.caller(request)  # 401 / 403 in mlcycle's JSON shape
        check_csrf(request, None)
        return caller, access.session(request, caller)

    @router.get("")
    def home() -> RedirectResponse:
        return RedirectResponse("/console/queue", status_code=303)

    @router.get("/login")
    def login_page(request: Request) -> HTMLResponse:
        return pages.render("login.html", access.session(request, None))

    @router.post("/login")
    async def login(request: Request) -> Response:
        form = parse_qs((await request.body()).decode("utf-8", "replace"))
        check_csrf(request, _field(form, "csrf"))
        secret, reviewer = _field(form, "key"), _field(form, "reviewer")
        session = access.session(request, None)
        if access.keys_required and access.identify(secret or "") is None:
            error = "That is not a valid API key." if secret else "Enter your API key."
            return pages.render("login.html", session, status_code=401, error=error)
        if reviewer is not None and not _reviewer_name(reviewer):
            error = "A name is letters, digits, '.', '@', '_' or '-' (up to 128)."
            return pages.render("login.html", session, status_code=400, error=error)
        response = RedirectResponse("/console/queue", status_code=303)
        sign_in(response, secret=secret if access.keys_required else None, reviewer=reviewer)
        return response

    @router.post("/logout")
    async def logout(request: Request) -> Response:
        form = parse_qs((await request.body()).decode("utf-8", "replace"))
        check_csrf(request, _field(form, "csrf"))
        response = RedirectResponse("/console/login", status_code=303)
        sign_out(response)
        return response

    @router.get("/static/{name}")
    def static(name: str) -> Response:
        asset = pages.asset(name)
        if asset is None:
            raise NotFound(f"no console asset {name!r}")
        return asset

    def filters_of(
        task: str | None, split: str | None, source: str | None, reason: str | None
    ) -> QueueFilters:
        return QueueFilters(task or default_task, split or None, source or None, reason or None)

    @router.get("/queue")
    def queue(
        request: Request,
        task: str | None = Query(None, max_length=128),
        split: str | None = Query(None, max_length=16),
        source: str | None = Query(None, max_length=256),
        reason: str | None = Query(None, max_length=64),
    ) -> HTMLResponse:
        filters = filters_of(task, split, source, reason)

        def context(session: Session) -> dict[str, object]:
            return {
                "view": desk.view(filters),
                "filters": filters,
                "tasks": sorted(settings.labeler.classes),
                "splits": SPLITS,
                "reasons": REASONS,
            }

        return page(request, "queue.html", context)

    @router.get("/queue/card")
    def card(
        request: Request,
        task: str | None = Query(None, max_length=128),
        split: str | None = Query(None, max_length=16),
        source: str | None = Query(None, max_length=256),
        reason: str | None = Query(None, max_length=64),
        skip: list[str] = Query([], max_length=MAX_SKIP),
        item: str | None = Query(None, max_length=512),
    ) -> HTMLResponse:
        """One item's card (the next one, or ``item``): what the script shows next."""
        filters = filters_of(task, split, source, reason)
        return page(
            request,
            "card.html",
            lambda session: {"view": desk.view(filters, skip, item_id=item), "filters": filters},
        )

    @router.post("/labels", status_code=202)
    def label(request: Request, body: ConsoleLabel = Body(...)) -> OrjsonResponse:
        caller, session = labeling_caller(request)
        reviewer = None if session.keys_required else session.who
        vote = HumanLabel(item_id=body.item_id, label=body.label, task=body.task, reviewer=reviewer)
        accepted = human_labels.submit([vote], caller)
        return OrjsonResponse(accepted.model_dump(mode="json"), status_code=202)

    @router.post("/retractions", status_code=202)
    def retract(request: Request, body: ConsoleRetraction = Body(...)) -> OrjsonResponse:
        caller, session = labeling_caller(request)
        reviewer = None if session.keys_required else session.who
        retraction = human_labels.retract(body.item_id, body.task, caller, reviewer)
        return OrjsonResponse({"retracted": retraction.retracts}, status_code=202)

    @router.get("/runs")
    def runs(request: Request, task: str | None = Query(None, max_length=128)) -> HTMLResponse:
        newest = LabelRuns(store).newest(task or None, 50)
        return page(request, "runs.html", lambda session: {"runs": newest, "task": task})

    @router.get("/runs/{run_id}/report")
    def run_report(request: Request, run_id: str) -> Response:
        try:
            access.caller(request)
        except (Unauthenticated, Forbidden):
            return page(request, "runs.html", lambda session: {})
        run = LabelRuns(store).require(run_id)
        if run.report is None:
            raise NotFound(f"label run {run_id!r} has no diagnostics yet", details={"run": run_id})
        return report_response(render_html(run.report, title=f"Label run {run.id}"))

    def models_context(session: Session) -> dict[str, object]:
        models = ModelVersions(store).listing()
        return {
            "models": models,
            "rollouts": Rollouts(store).listing(),
            "names": sorted({model.name for model in models}),
            "orders": ROLLOUT_ORDERS,
        }

    @router.get("/models")
    def models(request: Request) -> HTMLResponse:
        notice = notice_of(request)
        outcome = AdminOutcome(True, notice) if notice else None
        response = page(request, "models.html", lambda s: {**models_context(s), "outcome": outcome})
        if notice:
            forget_notice(response)  # shown once
        return response

    async def admin_action(
        request: Request, act: Callable[[str | None, dict[str, list[str]], str], AdminOutcome]
    ) -> Response:
        """Check the caller (``admin``) and the CSRF token and hand the form to ``act``. Done,
        redirect to the models page, which says so (a reload does not do it again); else
        answer the page saying why not (with the trainer's 4xx, if it refused)."""
        try:
            caller = access.caller(request)
        except (Unauthenticated, Forbidden):
            return page(request, "models.html", models_context)  # the login or 403 page
        form = parse_qs((await request.body()).decode("utf-8", "replace"))
        check_csrf(request, _field(form, "csrf"))
        reason = _field(form, "reason")
        if reason is None:
            outcome = AdminOutcome(False, "Give a reason: it is kept with the change.", 400)
        else:
            # The caller's own key, so the trainer checks it and records its name.
            presented = bearer_token(request) or request.cookies.get(KEY_COOKIE)
            key = presented if access.keys_required else None
            outcome = act(key, form, reason)
        if outcome.done:
            response = RedirectResponse("/console/models", status_code=303)
            leave_notice(response, outcome.message)
            return response
        session = access.session(request, caller)
        status = outcome.status if 400 <= outcome.status < 500 else 200
        context = models_context(session)
        return pages.render("models.html", session, status_code=status, outcome=outcome, **context)

    @router.post("/models/rollback")
    async def rollback(request: Request) -> Response:
        def act(key: str | None, form: dict[str, list[str]], reason: str) -> AdminOutcome:
            return trainer.rollback(key, _field(form, "name"), reason)

        return await admin_action(request, act)

    @router.post("/models/promote")
    async def promote(request: Request) -> Response:
        def act(key: str | None, form: dict[str, list[str]], reason: str) -> AdminOutcome:
            name, _, version = (_field(form, "model") or "").rpartition("/")
            if not version.isdigit():
                return AdminOutcome(False, "Choose the version to promote.", 400)
            force = _field(form, "force") is not None
            return trainer.promote(key, name or None, int(version), reason, force=force)

        return await admin_action(request, act)

    @router.post("/rollouts/steer")
    async def steer(request: Request) -> Response:
        def act(key: str | None, form: dict[str, list[str]], reason: str) -> AdminOutcome:
            rollout_id, order = _field(form, "rollout"), _field(form, "order")
            if rollout_id is None or order not in ROLLOUT_ORDERS:
                orders = ", ".join(ROLLOUT_ORDERS)
                return AdminOutcome(False, f"Choose a rollout and an order ({orders}).", 400)
            return trainer.steer(key, rollout_id, order, reason)

        return await admin_action(request, act)

    @router.get("/monitoring")
    def monitoring(request: Request) -> HTMLResponse:
        def context(session: Session) -> dict[str, object]:
            state = explainer.monitoring()
            if isinstance(state, str):
                return {"state": None, "unavailable": state}
            return {"state": state, "unavailable": None}

        return page(request, "monitoring.html", context)

    return router


def _field(form: dict[str, list[str]], name: str) -> str | None:
    values = form.get(name)
    return values[0].strip() if values and values[0].strip() else None


def _reviewer_name(name: str) -> bool:
    return len(name) <= 128 and all(c.isalnum() or c in "._@-" for c in name)
