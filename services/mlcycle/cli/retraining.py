"""``mlcycle retrain``: continuous training, through the services' APIs.

``status`` shows the trainer's retraining policy, what it allows now and the latest
runs with their stages. ``run`` asks the trainer for a run (its policy may refuse, and
says why) and drives it to the end; ``watch`` checks the triggers (drift alarms, new
votes) in a loop and drives every run that starts; ``stop`` asks a run to stop (admin).

The runner dials each service at ``--urls`` (a template such as
``http://{service}:{port}``, as in Kubernetes and compose where each service has its
own name), or at the settings' host.
"""

from __future__ import annotations

import signal
from typing import TYPE_CHECKING, Annotated, Literal

import orjson
import typer
from rich.console import Console
from rich.table import Table

from mlcycle.cli.context import TrainerUrl, fail, service_client, settings_for
from mlcycle.cli.serving import ApiKey, AsJson
from mlcycle.common.errors import MlcycleError
from mlcycle.common.settings import Settings
from mlcycle.contracts.retraining import RetrainingOverview, RetrainingRun

if TYPE_CHECKING:
    from fastapi import FastAPI

    from mlcycle.clients import ServiceClients

retrain_app = typer.Typer(help="Continuous training: triggers, runs, and their stages.")

Urls = Annotated[
    str | None,
    typer.Option(
        "--urls",
        help="Where each service listens, e.g. 'http://{service}:{port}' "
        "(default: the settings' host and ports).",
    ),
]
# The services a runner calls, and the settings section with each one's port.
_SERVICES = ("collector", "labeler", "featurizer", "trainer", "inference")


def service_clients(settings: Settings, urls: str | None, api_key: str | None) -> ServiceClients:
    """Every service's client: at ``urls`` (``{service}`` and ``{port}`` filled in), else at
    the settings' host."""
    from mlcycle.clients import (
        CollectorClient,
        FeaturizerClient,
        InferenceClient,
        LabelerClient,
        ServiceClients,
        TrainerClient,
        clients_for,
        default_api_key,
    )
    from mlcycle.clients.modelserver import ModelServerClient

    if urls is None:
        return clients_for(settings, api_key=api_key)
    key = api_key if api_key is not None else default_api_key(settings.edge)

    def url(service: str, port: int) -> str:
        try:
            return urls.format(service=service, port=port)
        except (KeyError, IndexError, ValueError):
            raise typer.BadParameter(
                f"--urls {urls!r}: use {{service}} and {{port}}, e.g. http://{{service}}:{{port}}"
            ) from None

    ports = {s: getattr(settings, s).port for s in _SERVICES}
    return ServiceClients(
        collector=CollectorClient(url("collector", ports["collector"]), api_key=key),
        labeler=LabelerClient(url("labeler", ports["labeler"]), api_key=key),
        featurizer=FeaturizerClient(url("featurizer", ports["featurizer"]), api_key=key),
        trainer=TrainerClient(url("trainer", ports["trainer"]), api_key=key),
        inference=InferenceClient(url("inference", ports["inference"]), api_key=key),
        modelserver=ModelServerClient(
            url("modelserver", settings.modelserver.rest_port),
            model_name=settings.trainer.model_name,
            api_key=key,
        ),
    )


def watch_health_app(clients: ServiceClients) -> FastAPI:
    """``/healthz``, ``/readyz`` (the trainer answers) and ``/metrics`` of the watcher."""
    from fastapi import FastAPI

    from mlcycle.common.http import add_health_routes, install_edge

    app = FastAPI(title="mlcycle retrainer", docs_url=None, redoc_url=None)
    install_edge(app, service="retrainer", max_body_bytes=0)  # its routes take no body
    add_health_routes(app, lambda: {"trainer": clients.trainer.alive(timeout_s=2.0)})
    return app


def _stop_on_sigterm() -> None:
    """SIGTERM (a pod stopping) ends the command like Ctrl-C: the runner reports the stage
    it was in before it exits."""
    signal.signal(signal.SIGTERM, signal.default_int_handler)


def _when(timestamp: str | None) -> str:
    return timestamp[:19].replace("T", " ") if timestamp else "-"


def print_run(out: Console, run: RetrainingRun) -> None:
    """One run: trigger, status, reason, and a row per stage."""
    out.print(
        f"[bold]{run.id}[/bold] · {run.trigger} · [bold]{run.status}[/bold]"
        + (f" ({run.reason})" if run.reason else "")
        + (f" · refused {run.repeats + 1}×" if run.status == "skipped" else "")
        + (f" · stop requested ({run.stop_reason})" if run.stop_requested and run.active else "")
    )
    if run.why:
        out.print(f"  why: {orjson.dumps(run.why).decode()}", highlight=False)
    if not run.stages:
        return
    table = Table(box=None, padding=(0, 2))
    for column in ("stage", "status", "started", "finished", "detail"):
        table.add_column(column, overflow="fold")
    for stage in run.stages:
        detail = ", ".join(f"{k}={v}" for k, v in stage.detail.items() if k != "seen_at")
        if stage.error:
            detail = f"{detail}; {stage.error}" if detail else stage.error
        table.add_row(
            stage.name, stage.status, _when(stage.started_at), _when(stage.finished_at), detail
        )
    out.print(table)


def print_overview(out: Console, overview: RetrainingOverview) -> None:
    """The policy in force, what it allows now, and the runs."""
    policy = overview.policy
    signals = ", ".join(policy.drift_signals) if policy.drift_signals else "any signal"
    out.print(
        f"policy: drift on {signals} · {policy.new_votes or 'no'} new votes · cooldown "
        f"{policy.cooldown_s / 3600:g} h · {policy.max_runs_per_day} runs a day · "
        f"{policy.trials} trials in {policy.train_time_budget_s / 60:g} min"
    )
    allowed = _when(overview.next_allowed_at) if overview.next_allowed_at else "now"
    out.print(
        f"running: {overview.running or 'none'} · next run allowed: {allowed} · "
        f"{overview.runs_last_day} started in 24 h · votes counted from "
        f"{overview.votes_baseline if overview.votes_baseline is not None else 'zero'}"
    )
    if not overview.runs:
        out.print("no retraining runs yet: `mlcycle retrain run` asks for one")
    for run in overview.runs:
        print_run(out, run)


@retrain_app.command()
def status(
    limit: Annotated[int, typer.Option(min=1, max=200, help="How many runs.")] = 5,
    url: TrainerUrl = None,
    api_key: ApiKey = None,
    as_json: AsJson = False,
) -> None:
    """Show the retraining policy, what it allows now, and the latest runs with their stages."""
    settings = settings_for("retrain", interactive=True)
    out = Console()
    try:
        with service_client(settings, "trainer", url, api_key) as client:
            overview = client.retraining(limit=limit)
    except MlcycleError as exc:
        fail(exc)
    if as_json:
        out.out(orjson.dumps(overview.model_dump(mode="json")).decode(), highlight=False)
    else:
        print_overview(out, overview)


@retrain_app.command()
def run(
    trigger: Annotated[
        str, typer.Option(help="What asks for the run: schedule or manual.")
    ] = "manual",
    force: Annotated[
        bool, typer.Option(help="Pass over the cooldown and the budget (needs admin).")
    ] = False,
    urls: Urls = None,
    api_key: ApiKey = None,
) -> None:
    """Ask the trainer for a retraining run and drive it to the end.

    Exits 0 when the policy refuses (it says why, and records it), 0 when the new model
    reached production, 1 when the run failed or was stopped.
    """
    from mlcycle.local.retraining import RetrainingRunner

    chosen: Literal["schedule", "manual"]
    if trigger not in ("schedule", "manual"):
        raise typer.BadParameter("--trigger is schedule or manual (the watcher asks for the rest)")
    chosen = trigger  # type: ignore[assignment]
    settings = settings_for("retrain", interactive=True)
    out = Console()
    try:
        with service_clients(settings, urls, api_key) as clients:
            runner = RetrainingRunner(clients, settings, console=out)
            _stop_on_sigterm()
            started = runner.request(chosen, why={"asked_by": "mlcycle retrain run"}, force=force)
            if started is None:
                return
            ended = runner.run(started.id)
    except MlcycleError as exc:
        fail(exc)
    print_run(out, ended)
    if ended.status != "succeeded":
        raise typer.Exit(code=1)


@retrain_app.command()
def watch(
    every: Annotated[
        float | None,
        typer.Option(min=1.0, help="Seconds between checks (default MLCYCLE_RETRAINING_CHECK_S)."),
    ] = None,
    urls: Urls = None,
    api_key: ApiKey = None,
) -> None:
    """Check the triggers (drift alarms, new votes) in a loop and drive every run that starts.

    Serves /healthz, /readyz and /metrics on MLCYCLE_RETRAINING_METRICS_PORT (9407).
    """
    from mlcycle.common.http import BackgroundServer
    from mlcycle.local.retraining import RetrainingRunner, watch_health_app

    settings = settings_for("retrain")
    port = settings.rollouts.retraining_metrics_port
    with service_clients(settings, urls, api_key) as clients:
        runner = RetrainingRunner(clients, settings, console=Console(stderr=True))
        health = BackgroundServer(watch_health_app(clients), settings.host, port).start()
        _stop_on_sigterm()
        try:
            runner.watch(every)
        except KeyboardInterrupt:
            pass
        finally:
            health.stop()


@retrain_app.command()
def stop(
    run_id: Annotated[str, typer.Argument(help="The run's id (see `mlcycle retrain status`).")],
    reason: Annotated[str, typer.Option("--reason", help="Why; kept with the run.")],
    url: TrainerUrl = None,
    api_key: ApiKey = None,
) -> None:
    """Stop a run at its next stage boundary; its candidate's running rollout is aborted now."""
    settings = settings_for("retrain", interactive=True)
    try:
        with service_client(settings, "trainer", url, api_key) as client:
            stopped = client.stop_retraining(run_id, reason)
    except MlcycleError as exc:
        fail(exc)
    print_run(Console(), stopped)
