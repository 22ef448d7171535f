"""The ``mlcycle`` command line: run the stack, import data, run the main job.

Settings come from ``MLCYCLE_*`` variables, read once here and passed down.
Imports of the heavier parts happen inside each command so ``--help`` is quick.
"""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from mlcycle.common.errors import MlcycleError
from mlcycle.common.logging import configure_logging
from mlcycle.common.settings import Settings, load_settings

app = typer.Typer(
    name="mlcycle",
    help="The life cycle of a production ML project: collect, label, featurize, train, serve.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
collector_app = typer.Typer(help="The collector service: REST ingest and the store indexer.")
labeler_app = typer.Typer(help="The labeler service: label runs, live labels, review queue.")
featurizer_app = typer.Typer(help="The featurizer service: transforms, vectors, feature shards.")
trainer_app = typer.Typer(help="The trainer service: training jobs and the model registry.")
inference_app = typer.Typer(help="The inference service: real-time predictions, REST and stream.")
download_app = typer.Typer(help="Fetch public datasets into the local cache.")
app.add_typer(collector_app, name="collector")
app.add_typer(labeler_app, name="labeler")
app.add_typer(featurizer_app, name="featurizer")
app.add_typer(trainer_app, name="trainer")
app.add_typer(inference_app, name="inference")
app.add_typer(download_app, name="download")

console = Console(stderr=True)


def _settings(service: str, *, interactive: bool = False) -> Settings:
    """Settings from the environment, and logging configured for ``service``.

    Commands a person runs in a terminal log plain text unless
    MLCYCLE_LOG_FORMAT says otherwise; services log JSON lines.
    """
    settings = load_settings()
    fmt = settings.log_format
    if interactive and "log_format" not in settings.model_fields_set:
        fmt = "text"
    configure_logging(settings.log_level, fmt, service=service)
    return settings


def _fail(exc: MlcycleError) -> None:
    console.print(f"[bold red]error:[/] {exc.message}")
    raise typer.Exit(code=2)


@app.command()
def up(
    redis: Annotated[bool, typer.Option(help="Also start the embedded Redis.")] = True,
) -> None:
    """Start the local stack in the foreground: embedded broker, Redis and every service.

    Ctrl-C (or SIGTERM) stops everything cleanly.
    """
    from mlcycle.local.stack import LocalStack

    settings = _settings("stack", interactive=True)
    stack = LocalStack(settings, with_redis=redis)
    stopping = False

    def _stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    try:
        resolved = stack.start()
        console.print(f"broker     {resolved.bootstrap_servers}")
        if resolved.redis_url:
            console.print(f"redis      {resolved.redis_url}")
        console.print(f"store      {resolved.es_url or resolved.store_path}")
        collector_url = f"http://{resolved.host}:{resolved.collector_port}"
        console.print(f"collector  {collector_url}  (docs at /docs)")
        console.print("[green]stack is up[/]; Ctrl-C to stop")
        while not stopping:
            failed = stack.failed_services()
            if failed:
                console.print(f"[red]service exited:[/] {failed}")
                break
            time.sleep(0.5)
    except MlcycleError as exc:
        _fail(exc)
    finally:
        console.print("stopping…")
        stack.stop()


@collector_app.command("api")
def collector_api() -> None:
    """Run the collector's REST API in the foreground."""
    from mlcycle.collector.api import serve

    serve(_settings("collector"))


@collector_app.command("indexer")
def collector_indexer() -> None:
    """Run the indexer (comments.raw and votes.raw into the store) in the foreground."""
    from mlcycle.collector.indexer import run_indexer

    run_indexer(_settings("collector-indexer"))


@labeler_app.command("api")
def labeler_api() -> None:
    """Run the labeler's REST API (and its run worker) in the foreground."""
    from mlcycle.labeler.api import serve

    serve(_settings("labeler"))


@labeler_app.command("stream")
def labeler_stream() -> None:
    """Run the live-label stream (votes.raw and comments.raw) in the foreground."""
    from mlcycle.labeler.stream import run_stream

    run_stream(_settings("labeler-stream"))


@app.command()
def label(
    strategy: Annotated[
        str, typer.Option(help="mean_threshold | majority | dawid_skene")
    ] = "dawid_skene",
    task: Annotated[str | None, typer.Option(help="Task to label (default from settings).")] = None,
    threshold: Annotated[
        float | None, typer.Option(help="mean_threshold's cut (default 0.5).")
    ] = None,
    lfs: Annotated[
        str | None,
        typer.Option(help="Comma-separated labeling functions; 'none' for the crowd alone."),
    ] = None,
    resume: Annotated[
        str | None, typer.Option(help="Resume an unfinished run by id instead of a new one.")
    ] = None,
    html: Annotated[Path | None, typer.Option(help="Where to write the HTML report.")] = None,
) -> None:
    """Run a label run on the stored votes and comments; print diagnostics, write an HTML page.

    Needs the store and a broker (``mlcycle up``, or MLCYCLE_KAFKA_BOOTSTRAP):
    new and changed labels are published on the ``labels`` topic.
    """
    from mlcycle.labeler.cli import run_label_command

    settings = _settings("label", interactive=True)
    try:
        run_label_command(
            settings,
            console,
            strategy=strategy,
            task=task,
            threshold=threshold,
            lfs=lfs,
            resume=resume,
            html=html,
        )
    except MlcycleError as exc:
        _fail(exc)


@featurizer_app.command("api")
def featurizer_api() -> None:
    """Run the featurizer's REST (8003) and gRPC (50053) APIs in the foreground."""
    from mlcycle.featurizer.api import serve

    serve(_settings("featurizer"))


@featurizer_app.command("batch")
def featurizer_batch() -> None:
    """Run the feature-set builder (consumes the labels topic) in the foreground."""
    from mlcycle.featurizer.batch import run_batch

    run_batch(_settings("featurizer-batch"))


@app.command()
def featurize(
    fit: Annotated[
        bool, typer.Option("--fit", help="Fit a new transform on the run's train split first.")
    ] = False,
    run: Annotated[
        str | None, typer.Option(help="Label run to featurize (default: the latest).")
    ] = None,
    transform: Annotated[
        str | None, typer.Option(help="Transform version (default: the current one).")
    ] = None,
    config: Annotated[
        Path | None, typer.Option(help="FeatureConfig as a JSON file, for --fit.")
    ] = None,
) -> None:
    """Featurize a label run into compressed feature shards with a manifest (idempotent).

    Without a fitted transform, one is fitted on the run's train split first.
    """
    from mlcycle.featurizer.cli import run_featurize_command

    settings = _settings("featurize", interactive=True)
    try:
        run_featurize_command(
            settings, console, refit=fit, label_run=run, transform=transform, config_path=config
        )
    except MlcycleError as exc:
        _fail(exc)


@trainer_app.command("api")
def trainer_api() -> None:
    """Run the trainer's REST API (8004) and its job worker in the foreground."""
    from mlcycle.trainer.api import serve

    serve(_settings("trainer"))


@app.command(
    "modelserver",
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    add_help_option=False,
)
def modelserver(ctx: typer.Context) -> None:
    """Run the TF-Serving-compatible model server (tensorflow_model_server's flags; --help)."""
    from mlcycle.modelserver.cli import run

    sys.exit(run(ctx.args, _settings("modelserver")))


@app.command()
def train(
    trials: Annotated[int | None, typer.Option(help="Trials of the search (default 8).")] = None,
    time_budget: Annotated[
        float | None, typer.Option("--time-budget", help="Seconds the search may take.")
    ] = None,
    preset: Annotated[
        str | None, typer.Option(help="search (default) | seed: the original talk's network.")
    ] = None,
    features: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated n-gram variants to search: current, talk, words, "
            "words+chars, bigrams+chars."
        ),
    ] = None,
    run: Annotated[str | None, typer.Option(help="Label run (default: the latest).")] = None,
    name: Annotated[str | None, typer.Option(help="Model name (default from settings).")] = None,
    config: Annotated[
        Path | None, typer.Option(help="Job config as a JSON file (options override it).")
    ] = None,
    resume: Annotated[
        str | None, typer.Option(help="Resume an unfinished job by id instead of a new one.")
    ] = None,
) -> None:
    """Search hyper-parameters, evaluate, bless and export a model; print the trials and report.

    Needs the store and a broker (``mlcycle up``, or MLCYCLE_KAFKA_BOOTSTRAP):
    registry events go to the ``models`` topic.
    """
    from mlcycle.trainer.cli import parse_config, run_train_command

    settings = _settings("train", interactive=True)
    try:
        job_config = None
        if resume is None:
            job_config = parse_config(
                config_path=config,
                overrides={
                    "trials": trials,
                    "time_budget_s": time_budget,
                    "preset": preset,
                    "label_run": run,
                    "name": name,
                    "features": [f.strip() for f in features.split(",")] if features else None,
                },
            )
        run_train_command(settings, console, config=job_config, resume=resume)
    except MlcycleError as exc:
        _fail(exc)


@inference_app.command("api")
def inference_api() -> None:
    """Run the inference REST API (8000) in the foreground."""
    from mlcycle.inference.api import serve

    serve(_settings("inference"))


@inference_app.command("stream")
def inference_stream() -> None:
    """Run the streaming scorer (comments.raw into scored.comments) in the foreground."""
    from mlcycle.inference.stream import run_stream

    run_stream(_settings("inference-stream"))


# Options of the commands that ask the running inference service.
ServiceUrl = Annotated[
    str | None, typer.Option("--url", help="The inference service (default from settings).")
]
ApiKey = Annotated[
    str | None, typer.Option("--api-key", help="API key (default: the first configured).")
]
AsJson = Annotated[bool, typer.Option("--json", help="Print the JSON answer.")]


@app.command()
def predict(
    texts: Annotated[list[str], typer.Argument(help="Texts to score.")],
    url: ServiceUrl = None,
    api_key: ApiKey = None,
    as_json: AsJson = False,
) -> None:
    """Score texts with the running inference service: score, label and model version each."""
    from mlcycle.inference.cli import run_predict_command

    settings = _settings("predict", interactive=True)
    try:
        run_predict_command(
            settings, texts, url=url, api_key=api_key, as_json=as_json, console=Console()
        )
    except MlcycleError as exc:
        _fail(exc)


@app.command()
def explain(
    comment_id: Annotated[str, typer.Argument(metavar="COMMENT_ID", help="A stored comment's id.")],
    url: ServiceUrl = None,
    api_key: ApiKey = None,
    as_json: AsJson = False,
) -> None:
    """Show a prediction's lineage: comment, votes, label, transform, model version, score."""
    from mlcycle.inference.cli import run_explain_command

    settings = _settings("explain", interactive=True)
    try:
        run_explain_command(
            settings, comment_id, url=url, api_key=api_key, as_json=as_json, console=Console()
        )
    except MlcycleError as exc:
        _fail(exc)


@app.command("import")
def import_(
    fmt: Annotated[
        str, typer.Argument(metavar="FORMAT", help="wikidetox|davidson|lewidi|jsonl|csv")
    ],
    paths: Annotated[list[Path], typer.Argument(help="Files (or a folder) to read; .gz is fine.")],
) -> None:
    """Stream a dataset into comments.raw and votes.raw (the indexer stores it).

    Needs a running broker (``mlcycle up``, or MLCYCLE_KAFKA_BOOTSTRAP).
    Re-running it is safe: records are keyed by id and the store upserts.
    """
    from mlcycle.local.pipeline import import_dataset

    settings = _settings("import", interactive=True)
    try:
        result = import_dataset(settings, fmt, paths, console=console)
    except MlcycleError as exc:
        _fail(exc)
    console.print(result.describe())


@download_app.command("wikidetox")
def download_wikidetox() -> None:
    """Download the Wikipedia Talk Labels toxicity dataset (cached and checksummed)."""
    from mlcycle.importers.download import download_wikidetox as fetch

    settings = _settings("download", interactive=True)
    try:
        files = fetch(settings.data_dir / "downloads")
    except MlcycleError as exc:
        _fail(exc)
    for path in files:
        console.print(str(path))


@app.command()
def demo(
    data: Annotated[
        list[Path] | None, typer.Option(help="Local dataset files instead of downloading.")
    ] = None,
    fmt: Annotated[
        str, typer.Option("--format", help="wikidetox|davidson|lewidi|jsonl|csv")
    ] = "wikidetox",
    trials: Annotated[int, typer.Option(help="Hyper-parameter trials (training stage).")] = 8,
    load_seconds: Annotated[
        float, typer.Option(min=1.0, help="Length of the load test of POST /v1/predict.")
    ] = 20.0,
) -> None:
    """Run the main job end to end on the embedded stack and print what it did."""
    from mlcycle.local.demo import run_demo

    settings = _settings("demo", interactive=True)
    try:
        code = run_demo(
            settings,
            data=data or [],
            fmt=fmt,
            trials=trials,
            console=console,
            load_seconds=load_seconds,
        )
    except MlcycleError as exc:
        _fail(exc)
    sys.exit(code)
