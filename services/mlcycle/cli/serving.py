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
from rich.text import Text

from mlcycle.cli.context import fail, service_client, settings_for
from mlcycle.common.errors import InvalidInput, MlcycleError

if TYPE_CHECKING:
    from mlcycle.clients import InferenceClient
    from mlcycle.contracts.explanations import Span

# Word shares at or above this (in score units) get the strongest colour.
FULL_COLOUR_SHARE = 0.2

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
    explain: Annotated[
        bool,
        typer.Option(
            "--explain",
            help="Colour each text's words by how much they drove its score: red towards "
            "the positive class, green away from it.",
        ),
    ] = False,
) -> None:
    """Score texts with the running inference service: score, label and model version each."""
    settings = settings_for("predict", interactive=True)
    try:
        with service_client(settings, "inference", url, api_key) as client:
            print_predictions(client, texts, as_json=as_json, explain=explain, console=Console())
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
    client: InferenceClient,
    texts: list[str],
    *,
    as_json: bool,
    console: Console,
    explain: bool = False,
) -> None:
    """Score ``texts`` and print each one's score, label and model version (or the JSON);
    with ``explain``, each text's words coloured by their share of the score."""
    if not texts:
        raise InvalidInput("give at least one text to score")
    if as_json:
        answer = client.predict_json(texts, explain=explain)
        console.out(orjson.dumps(answer).decode(), highlight=False)
        return
    table = Table()
    table.add_column("text", overflow="fold", max_width=60)
    table.add_column("score", justify="right")
    table.add_column("label")
    table.add_column("model version", justify="right")
    for text, prediction in zip(texts, client.predict(texts, explain=explain), strict=False):
        shown = coloured_words(text, prediction.spans) if prediction.spans is not None else text
        table.add_row(
            shown, f"{prediction.score:.4f}", prediction.label, str(prediction.model_version)
        )
    console.print(table)
    if explain:
        console.print(
            "[red]red[/red]: pushed the score up; [green]green[/green]: pulled it down; "
            "the stronger the colour, the larger the share.",
            highlight=False,
        )


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


def coloured_words(text: str, spans: list[Span]) -> Text:
    """``text`` with each word's span coloured: red when it pushed the score up, green when
    it pulled it down, bolder the larger its share (full at :data:`FULL_COLOUR_SHARE`)."""
    shown = Text(text)
    for span in spans:
        strength = min(abs(span.score) / FULL_COLOUR_SHARE, 1.0)
        if strength < 0.05:
            continue  # a word that hardly counts stays plain
        level = int(95 + 160 * strength)  # 95..255: dim to full
        colour = f"rgb({level},0,0)" if span.score > 0 else f"rgb(0,{level},0)"
        style = f"bold {colour}" if strength >= 0.5 else colour
        shown.stylize(style, span.begin, span.end)
    return shown
