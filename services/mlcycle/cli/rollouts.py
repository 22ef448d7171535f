"""``mlcycle rollout``: start a rollout, follow it, and steer it, through the trainer's API.

``status`` prints each rollout's phase, canary share and decisions, and for a running
one the comparison its next decision will see. ``start`` and the orders need an API
key with the ``admin`` scope when keys are configured.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import orjson
import typer
from rich.console import Console
from rich.table import Table

from mlcycle.cli.context import TrainerUrl, fail, service_client, settings_for
from mlcycle.cli.serving import ApiKey, AsJson
from mlcycle.common.errors import InvalidInput, MlcycleError
from mlcycle.contracts.rollouts import Comparison, RolloutPolicy, RolloutView
from mlcycle.rollouts.figures import (
    comparison_header,
    comparison_rows,
    comparison_summary,
    comparison_title,
)

rollout_app = typer.Typer(help="Shadow, canary and automatic promotion of a model version.")

Reason = Annotated[str, typer.Option("--reason", help="Why; kept with the decision.")]


def print_comparison(out: Console, comparison: Comparison) -> None:
    """Production against the candidate, one row per figure, then the pair's own figures."""
    table = Table(title=comparison_title(comparison))
    for i, column in enumerate(comparison_header(comparison)):
        table.add_column(column, justify="left" if i == 0 else "right")
    for row in comparison_rows(comparison):
        table.add_row(*row)
    out.print(table)
    out.print(comparison_summary(comparison))


def print_rollout(out: Console, view: RolloutView) -> None:
    """A rollout's state, its decisions, and its comparison when it runs."""
    r = view.rollout
    out.print(
        f"[bold]{r.id}[/bold]: model {r.name} v{r.candidate} against v{r.baseline} · "
        f"{r.phase} {r.canary_percent:g} % · {r.status} · trigger {r.trigger}"
    )
    table = Table()
    for column in ("time", "decision", "phase", "canary %", "by", "reason"):
        table.add_column(column, overflow="fold")
    for d in r.decisions[-12:]:
        table.add_row(d.time[:19], d.action, d.phase, f"{d.canary_percent:g}", d.actor, d.reason)
    out.print(table)
    if view.comparison is not None:
        print_comparison(out, view.comparison)


@rollout_app.command()
def status(
    rollout_id: Annotated[
        str | None, typer.Argument(help="One rollout (default: the latest).")
    ] = None,
    url: TrainerUrl = None,
    api_key: ApiKey = None,
    as_json: AsJson = False,
) -> None:
    """Show a rollout: its phase, canary share, decisions and live comparison."""
    settings = settings_for("rollout", interactive=True)
    out = Console()
    try:
        with service_client(settings, "trainer", url, api_key) as client:
            if rollout_id is None:
                found = client.rollouts(limit=1).rollouts
                if not found:
                    out.print("no rollouts yet: start one with `mlcycle rollout start VERSION`")
                    return
                view = found[0]
            else:
                view = client.rollout(rollout_id)
    except MlcycleError as exc:
        fail(exc)
    if as_json:
        out.out(orjson.dumps(view.model_dump(mode="json")).decode(), highlight=False)
    else:
        print_rollout(out, view)


@rollout_app.command()
def start(
    version: Annotated[int, typer.Argument(min=1, help="The candidate version.")],
    reason: Reason,
    name: Annotated[str | None, typer.Option(help="The model name (default: the task's).")] = None,
    policy: Annotated[
        Path | None, typer.Option(help="A JSON rollout policy (default: the service's).")
    ] = None,
    force: Annotated[bool, typer.Option(help="Start even if the version is not blessed.")] = False,
    url: TrainerUrl = None,
    api_key: ApiKey = None,
) -> None:
    """Try VERSION in shadow, then as a canary, then in production, deciding by itself."""
    settings = settings_for("rollout", interactive=True)
    out = Console()
    try:
        chosen = _read_policy(policy) if policy is not None else None
        with service_client(settings, "trainer", url, api_key) as client:
            view = client.start_rollout(version, reason, name=name, policy=chosen, force=force)
    except MlcycleError as exc:
        fail(exc)
    print_rollout(out, view)


def _read_policy(path: Path) -> RolloutPolicy:
    try:
        return RolloutPolicy.model_validate_json(path.read_bytes())
    except OSError as exc:
        raise InvalidInput(f"cannot read the policy file {path}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise InvalidInput(f"{path} is not a valid rollout policy: {exc}") from None


def _order(order: str, rollout_id: str, reason: str, url: str | None, key: str | None) -> None:
    settings = settings_for("rollout", interactive=True)
    try:
        with service_client(settings, "trainer", url, key) as client:
            view = client.order_rollout(rollout_id, order, reason)
    except MlcycleError as exc:
        fail(exc)
    print_rollout(Console(), view)


RolloutId = Annotated[str, typer.Argument(help="The rollout's id (see `mlcycle rollout status`).")]


@rollout_app.command()
def pause(rollout_id: RolloutId, reason: Reason, url: TrainerUrl = None, api_key: ApiKey = None):
    """Stop deciding; traffic stays routed as it is."""
    _order("pause", rollout_id, reason, url, api_key)


@rollout_app.command()
def resume(rollout_id: RolloutId, reason: Reason, url: TrainerUrl = None, api_key: ApiKey = None):
    """Decide again; the current step counts its samples afresh."""
    _order("resume", rollout_id, reason, url, api_key)


@rollout_app.command()
def force(rollout_id: RolloutId, reason: Reason, url: TrainerUrl = None, api_key: ApiKey = None):
    """Move one step on, whatever the evidence says."""
    _order("force", rollout_id, reason, url, api_key)


@rollout_app.command()
def abort(rollout_id: RolloutId, reason: Reason, url: TrainerUrl = None, api_key: ApiKey = None):
    """Take the candidate off now."""
    _order("abort", rollout_id, reason, url, api_key)
