"""``mlcycle check``: the behavioural suite against whatever model the inference service serves.

The cases go through ``POST /v1/predict`` in batches, as any client's texts
would, so the labels are the served ones (the served threshold included). The
command prints a pass rate per capability, the overall rate and the worst
capability, or one JSON object with ``--json``; with ``--min-pass-rate`` or
``--min-capability-rate`` it exits 1 when the model misses them, so a pipeline
can gate on it. A suite that cannot be read ends the command with exit code 2
and a message naming the file and what is wrong.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import orjson
import typer
from rich.console import Console
from rich.table import Table

from mlcycle.cli.context import fail, service_client, settings_for
from mlcycle.cli.serving import ApiKey, AsJson, ServiceUrl
from mlcycle.common.errors import MlcycleError

if TYPE_CHECKING:
    from mlcycle.clients import InferenceClient
    from mlcycle.evaluation.behaviour import Scorer, SuiteResult

DEFAULT_SUITE = Path("tests/behaviour")


def check(
    suite: Annotated[
        Path, typer.Option("--suite", help="The behavioural suite's folder.")
    ] = DEFAULT_SUITE,
    url: ServiceUrl = None,
    api_key: ApiKey = None,
    as_json: AsJson = False,
    min_pass_rate: Annotated[
        float | None,
        typer.Option(min=0.0, max=1.0, help="Exit 1 when the overall pass rate is below this."),
    ] = None,
    min_capability_rate: Annotated[
        float | None,
        typer.Option(min=0.0, max=1.0, help="Exit 1 when any capability's rate is below this."),
    ] = None,
    batch: Annotated[
        int, typer.Option(min=1, max=1000, help="Texts per POST /v1/predict request.")
    ] = 50,
) -> None:
    """Run the behavioural suite against the served model: pass rates per capability."""
    from mlcycle.evaluation.behaviour import load_suite, run_suite

    settings = settings_for("check", interactive=True)
    console = Console()
    try:
        cases = load_suite(suite)
        with service_client(settings, "inference", url, api_key) as client:
            versions: set[int] = set()
            result = run_suite(cases, served_labels(client, versions), batch=batch)
    except MlcycleError as exc:
        fail(exc)
    missed = shortfalls(result, min_pass_rate, min_capability_rate)
    if as_json:
        document = {**check_document(result, sorted(versions)), "missed": missed}
        console.out(orjson.dumps(document).decode(), highlight=False)
    else:
        console.print(check_table(result, sorted(versions)))
        console.print(overall_line(result), highlight=False)
        for line in missed:
            console.print(f"[bold red]missed:[/] {line}", highlight=False)
    if missed:
        raise typer.Exit(code=1)


def served_labels(client: InferenceClient, versions: set[int]) -> Scorer:
    """A scorer asking the inference service; the model versions that answered go in
    ``versions``. A binary model's text is toxic when its score reaches the served threshold
    (the served label); a multi-class model's when its label is not class 0."""

    def decide(texts: Sequence[str]) -> list[bool]:
        predictions = client.predict(texts)
        versions.update(p.model_version for p in predictions)
        return [
            p.score >= p.threshold if p.threshold is not None else p.label != "0"
            for p in predictions
        ]

    return decide


def shortfalls(
    result: SuiteResult, min_pass_rate: float | None, min_capability_rate: float | None
) -> list[str]:
    """What the model missed of the asked minimums, one line each."""
    missed = []
    if min_pass_rate is not None and result.pass_rate < min_pass_rate:
        missed.append(f"overall pass rate {result.pass_rate:.3f} < {min_pass_rate:g}")
    if min_capability_rate is not None:
        missed += [
            f"{c.name} {c.rate:.3f} < {min_capability_rate:g}"
            for c in result.capabilities
            if c.rate < min_capability_rate
        ]
    return missed


def check_document(result: SuiteResult, versions: list[int]) -> dict[str, object]:
    """The JSON ``--json`` prints: the summary, the model versions, and each failed case."""
    return {
        **result.summary().model_dump(),
        "model_versions": versions,
        "failures": {
            c.name: [f.text for f in c.failures()] for c in result.capabilities if c.failures()
        },
    }


def check_table(result: SuiteResult, versions: list[int]) -> Table:
    """One row per capability: its cases, how many passed, its pass rate."""
    served = ", ".join(f"v{v}" for v in versions) or "none"
    table = Table(title=f"Behavioural suite (model {served})", title_justify="left")
    table.add_column("capability")
    table.add_column("cases", justify="right")
    table.add_column("passed", justify="right")
    table.add_column("pass rate", justify="right")
    for c in result.capabilities:
        table.add_row(c.name, str(len(c.cases)), str(c.passed), f"{c.rate:.1%}")
    return table


def overall_line(result: SuiteResult) -> str:
    """The overall rate and the worst capability, printed under the table."""
    worst = result.worst
    return (
        f"overall: {result.passed}/{result.cases} passed ({result.pass_rate:.1%}); "
        f"worst capability: {worst.name} ({worst.rate:.1%})"
    )
