"""``mlcycle models``, ``mlcycle promote`` and ``mlcycle rollback``: the model registry's stages.

They ask the trainer service (which hosts the registry) through its client:
``--url`` and ``--api-key`` override where it listens and the key it is sent,
which default to the settings' host, port and first key. Promotion and rollback
are an admin's actions: they need a key with the ``admin`` scope when keys are
configured, and a reason, kept in the model's history with the key's name.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import orjson
import typer
from rich.console import Console
from rich.table import Table

from mlcycle.cli.context import TrainerUrl, fail, service_client, settings_for
from mlcycle.cli.serving import ApiKey, AsJson
from mlcycle.common.errors import MlcycleError

if TYPE_CHECKING:
    from mlcycle.clients.trainer import ModelList, ModelVersion

ModelName = Annotated[
    str | None, typer.Option("--name", help="The model name (default: the served one).")
]
Reason = Annotated[
    str, typer.Option("--reason", help="Why; kept in the model's history with your key's name.")
]


def models(
    name: ModelName = None,
    state: Annotated[
        str | None,
        typer.Option(
            "--state",
            help="Only versions in this stage: candidate, unblessed, blessed, shadow, canary, "
            "production, archived, rolled_back.",
        ),
    ] = None,
    url: TrainerUrl = None,
    api_key: ApiKey = None,
    as_json: AsJson = False,
) -> None:
    """List the registered model versions: stage, creation time, dev metric, blessing reason,
    and the version label each one holds (stable, canary, shadow)."""
    settings = settings_for("models", interactive=True)
    out = Console()
    try:
        with service_client(settings, "trainer", url, api_key) as client:
            listing = client.models(name=name, state=state)
    except MlcycleError as exc:
        fail(exc)
    if as_json:
        out.out(orjson.dumps(listing.model_dump(mode="json")).decode(), highlight=False)
        return
    print_models(listing, out, metric=settings.trainer.bless_metric)


def promote(
    version: Annotated[int, typer.Argument(metavar="VERSION", min=1, help="The version to serve.")],
    reason: Reason,
    force: Annotated[
        bool, typer.Option("--force", help="Serve it even if it was not blessed.")
    ] = False,
    name: ModelName = None,
    url: TrainerUrl = None,
    api_key: ApiKey = None,
) -> None:
    """Serve VERSION now (an admin's action): the production version it replaces is archived
    and can be rolled back to."""
    settings = settings_for("promote", interactive=True)
    try:
        with service_client(settings, "trainer", url, api_key) as client:
            model = client.promote(version, reason, name=name, force=force)
    except MlcycleError as exc:
        fail(exc)
    step = model.model_extra.get("history", [{}])[-1] if model.model_extra else {}
    was = step.get("from_state") if step.get("action") == "promoted" else None
    origin = f" (was {was})" if was else ""
    Console().print(f"model {model.name} version {model.version} is {model.state}{origin}")


def rollback(
    reason: Reason,
    name: ModelName = None,
    url: TrainerUrl = None,
    api_key: ApiKey = None,
) -> None:
    """Roll the production version back (an admin's action): the previous production version
    serves again."""
    settings = settings_for("rollback", interactive=True)
    try:
        with service_client(settings, "trainer", url, api_key) as client:
            result = client.rollback(reason, name=name)
    except MlcycleError as exc:
        fail(exc)
    back, off = result.production, result.rolled_back
    Console().print(
        f"model {back.name} version {back.version} serves again; "
        f"version {off.version} is {off.state}"
    )


def print_models(listing: ModelList, console: Console, *, metric: str) -> None:
    """The versions as a table, newest first; a name column when there are several names."""
    if not listing.models:
        console.print("no model versions")
        return
    names = {m.name for m in listing.models}
    table = Table()
    if len(names) > 1:
        table.add_column("name")
    for column in ("version", "stage", "created", f"dev {metric}", "blessing", "label"):
        justify = "right" if column == "version" else "left"
        table.add_column(column, justify=justify, overflow="fold")
    for model in listing.models:
        serving = listing.serving.get(model.name)
        label = serving.label_of(model.version) if serving is not None else None
        if label == "canary" and serving is not None:
            label = f"canary {serving.canary_share:.0%}"
        elif label == "shadow" and serving is not None:
            label = f"shadow {serving.shadow_share:.0%}"
        row = [
            str(model.version),
            model.state,
            _created(model),
            _dev_metric(model, metric),
            _blessing(model),
            label or "",
        ]
        table.add_row(*([model.name] if len(names) > 1 else []), *row)
    console.print(table)


def _extra(model: ModelVersion, key: str) -> object:
    return (model.model_extra or {}).get(key)


def _created(model: ModelVersion) -> str:
    created = _extra(model, "created_at")
    return str(created)[:19].replace("T", " ") if created else ""


def _dev_metric(model: ModelVersion, metric: str) -> str:
    metrics = _extra(model, "metrics")
    dev = metrics.get("dev") if isinstance(metrics, dict) else None
    value = dev.get(metric) if isinstance(dev, dict) else None
    return f"{value:.4f}" if isinstance(value, int | float) else ""


def _blessing(model: ModelVersion) -> str:
    blessing = _extra(model, "blessing")
    return str(blessing.get("reason", "")) if isinstance(blessing, dict) else ""
