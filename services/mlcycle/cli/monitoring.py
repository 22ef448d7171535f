"""``mlcycle monitor``: ask the running inference service what its monitor says, print the
tables, write the HTML report (with the trainer's latest rollouts).

Like ``mlcycle predict`` it reaches the service through its client, ``--url`` and
``--api-key`` defaulting to the settings'; the tables and the page come from
:mod:`mlcycle.local.monitor_report` (imported when the command runs, so ``--help`` stays
quick and matplotlib loads only for the page).
"""

from __future__ import annotations

from datetime import UTC, datetime
from html import escape
from pathlib import Path
from typing import Annotated

import orjson
import typer
from rich.console import Console

from mlcycle.cli.context import fail, service_client, settings_for
from mlcycle.cli.serving import ApiKey, AsJson, ServiceUrl
from mlcycle.common.errors import MlcycleError
from mlcycle.common.settings import Settings

# The latest rollouts the report shows.
ROLLOUTS_SHOWN = 5


def monitor(
    url: ServiceUrl = None,
    api_key: ApiKey = None,
    as_json: AsJson = False,
    report: Annotated[
        Path | None,
        typer.Option(
            "--report",
            help="Where to write the HTML report (default: reports/monitor-<time>.html under "
            "the data directory).",
        ),
    ] = None,
    no_report: Annotated[bool, typer.Option("--no-report", help="Print the tables only.")] = False,
    since: Annotated[
        datetime | None,
        typer.Option(help="The report's history starts here (default: as far as kept)."),
    ] = None,
    version: Annotated[
        int | None,
        typer.Option("--version", min=1, help="One model version (default: every loaded one)."),
    ] = None,
    windows: Annotated[
        int, typer.Option(min=1, help="Windows per signal in the report, the latest.")
    ] = 200,
) -> None:
    """Show the live model's drift signals and quality: a table per model version (each
    signal's statistic against its alarm threshold, and the quality estimated from the scores
    beside the quality moderators' decisions realized) and an HTML report of them over time."""
    from mlcycle.local.monitor_report import collect, print_state, write_report

    settings = settings_for("monitor", interactive=True)
    out = Console()
    now = datetime.now(UTC)
    path = report or settings.data_dir / "reports" / f"monitor-{now:%Y%m%dT%H%M%S}.html"
    try:
        with service_client(settings, "inference", url, api_key) as client:
            if as_json or no_report:
                state = client.monitoring(version)
                if as_json:
                    out.out(orjson.dumps(state.model_dump(mode="json")).decode(), highlight=False)
                else:
                    print_state(out, state)
                return
            view = collect(client, version=version, since=since, windows=windows)
        print_state(out, view.state)
        write_report(path, view, generated_at=now, more=rollouts_section(settings, api_key))
    except MlcycleError as exc:
        fail(exc)
    except OSError as exc:
        fail(MlcycleError(f"cannot write the report to {path}: {exc.strerror or exc}"))
    out.print(f"monitor report: {path}")


def rollouts_section(settings: Settings, api_key: str | None) -> list[str]:
    """The report's rollouts, from the trainer (which hosts the registry); when it cannot
    be asked, the section says so and the report goes on."""
    from mlcycle.rollouts.figures import rollouts_html

    try:
        with service_client(settings, "trainer", None, api_key) as trainer:
            views = trainer.rollouts(name=settings.trainer.model_name, limit=ROLLOUTS_SHOWN)
    except MlcycleError as exc:
        return [
            "<h2>Rollouts</h2>",
            f"<p>Not shown: the trainer did not answer ({escape(str(exc))}).</p>",
        ]
    return rollouts_html(views.rollouts)
