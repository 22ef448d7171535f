"""``mlcycle predict`` and ``mlcycle explain``: ask the running inference service, print the answer.

Both go through the inference service's client (imported when they run, so
``--help`` stays quick): ``--url`` and ``--api-key`` override where it listens
and the key it is sent, which default to the settings' host, port and first key.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import orjson
import typer
from rich.console import Console
from rich.table import Table

from mlcycle.cli.context import fail, service_client, settings_for
from mlcycle.common.errors import InvalidInput, MlcycleError

if TYPE_CHECKING:
    from mlcycle.clients import InferenceClient

# Options of the commands that ask the running inference service.
ServiceUrl = Annotated[
    str | None, typer.Option("--url", help="The inference service (default from settings).")
]
ApiKey = Annotated[
    str | None, typer.Option("--api-key", help="API key (default: the first configured).")
]
AsJson = Annotated[bool, typer.Option("--json", help="Print the JSON answer.")]


def predict(
    texts: Annotated[list[str], typer.Argument(help="Texts to score.")],
    url: ServiceUrl = None,
    api_key: ApiKey = None,
    as_json: AsJson = False,
) -> None:
    """Score texts with the running inference service: score, label and model version each."""
    settings = settings_for("predict", interactive=True)
    try:
        with service_client(settings, "inference", url, api_key) as client:
            print_predictions(client, texts, as_json=as_json, console=Console())
    except MlcycleError as exc:
        fail(exc)


def explain(
    comment_id: Annotated[str, typer.Argument(metavar="COMMENT_ID", help="A stored comment's id.")],
    url: ServiceUrl = None,
    api_key: ApiKey = None,
    as_json: AsJson = False,
) -> None:
    """Show a prediction's lineage: comment, votes, label, transform, model version, score."""
    settings = settings_for("explain", interactive=True)
    try:
        with service_client(settings, "inference", url, api_key) as client:
            print_lineage(client, comment_id, as_json=as_json, console=Console())
    except MlcycleError as exc:
        fail(exc)


def print_predictions(
    client: InferenceClient, texts: list[str], *, as_json: bool, console: Console
) -> None:
    """Score ``texts`` and print each one's score, label and model version (or the JSON)."""
    if not texts:
        raise InvalidInput("give at least one text to score")
    if as_json:
        console.out(orjson.dumps(client.predict_json(texts)).decode(), highlight=False)
        return
    table = Table()
    table.add_column("text", overflow="fold", max_width=60)
    table.add_column("score", justify="right")
    table.add_column("label")
    table.add_column("model version", justify="right")
    for text, prediction in zip(texts, client.predict(texts), strict=False):
        table.add_row(
            text, f"{prediction.score:.4f}", prediction.label, str(prediction.model_version)
        )
    console.print(table)


def print_lineage(
    client: InferenceClient, comment_id: str, *, as_json: bool, console: Console
) -> None:
    """Print one comment's prediction lineage as a tree (or the JSON)."""
    from mlcycle.inference.lineage import render_lineage

    chain = client.lineage(comment_id)
    if as_json:
        console.out(orjson.dumps(chain).decode(), highlight=False)
    else:
        console.print(render_lineage(chain))
