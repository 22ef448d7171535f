"""The commands that run one service process in the foreground (what the stack and images run).

Each imports its service only when it runs, so ``--help`` stays quick.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer

from mlcycle.cli.context import console, fail, settings_for
from mlcycle.common.keys import KeyConfigError
from mlcycle.common.settings import Settings

collector_app = typer.Typer(help="The collector service: REST ingest and the store indexer.")
labeler_app = typer.Typer(help="The labeler service: label runs, live labels, review queue.")
featurizer_app = typer.Typer(help="The featurizer service: transforms, vectors, feature shards.")
trainer_app = typer.Typer(help="The trainer service: training jobs and the model registry.")
inference_app = typer.Typer(help="The inference service: real-time predictions, REST and stream.")


def _serve(run: Callable[[Settings], None], service: str) -> None:
    """Run ``service``; a malformed API key, or no key on a public address, ends it (code 2)."""
    try:
        run(settings_for(service))
    except KeyConfigError as exc:
        console.print(f"[bold red]error:[/] {exc}")
        raise typer.Exit(code=2) from None


@collector_app.command("api")
def collector_api() -> None:
    """Run the collector's REST API in the foreground."""
    from mlcycle.collector.api import serve

    _serve(serve, "collector")


@collector_app.command("indexer")
def collector_indexer() -> None:
    """Run the indexer (the raw and reviewed topics into the store) in the foreground."""
    from mlcycle.collector.indexer import run_indexer

    run_indexer(settings_for("collector-indexer"))


@labeler_app.command("api")
def labeler_api() -> None:
    """Run the labeler's REST API (and its run worker) in the foreground."""
    from mlcycle.labeler.api import serve

    _serve(serve, "labeler")


@labeler_app.command("stream")
def labeler_stream() -> None:
    """Run the live-label stream (votes.raw, votes.reviewed and comments.raw) in the foreground."""
    from mlcycle.labeler.stream import run_stream

    run_stream(settings_for("labeler-stream"))


@featurizer_app.command("api")
def featurizer_api() -> None:
    """Run the featurizer's REST (8003) and gRPC (50053) APIs in the foreground."""
    from mlcycle.featurizer.api import serve

    _serve(serve, "featurizer")


@featurizer_app.command("batch")
def featurizer_batch() -> None:
    """Run the feature-set builder (consumes the labels topic) in the foreground."""
    from mlcycle.featurizer.batch import run_batch

    run_batch(settings_for("featurizer-batch"))


@trainer_app.command("api")
def trainer_api() -> None:
    """Run the trainer's REST API (8004) and its job worker in the foreground."""
    from mlcycle.trainer.api import serve

    _serve(serve, "trainer")


@trainer_app.command("submit")
def trainer_submit(
    url: Annotated[
        str | None, typer.Option(help="The trainer API (default: this host's trainer port).")
    ] = None,
    config: Annotated[
        Path | None, typer.Option(help="Job config as a JSON file (options override it).")
    ] = None,
    time_budget: Annotated[
        float | None, typer.Option("--time-budget", help="Seconds the search may take.")
    ] = None,
    promote: Annotated[
        bool,
        typer.Option(
            help="--no-promote keeps a blessed winner for a person to promote "
            "(else the trainer's MLCYCLE_AUTO_PROMOTE decides)."
        ),
    ] = True,
) -> None:
    """Queue a training job on a running trainer service and print its id.

    The job runs in the service, the one writer of its studies and registry.
    The key is MLCYCLE_SERVICE_KEY (sent as ``Authorization: Bearer``); a full
    queue (429) or a refusal ends the command with code 2.
    """
    from mlcycle.clients import TrainerClient, clients_for
    from mlcycle.common.errors import MlcycleError
    from mlcycle.trainer.cli import parse_config

    settings = settings_for("trainer-submit", interactive=True)
    key = settings.edge.service_key or None
    try:
        overrides = {"time_budget_s": time_budget, "auto_promote": None if promote else False}
        job_config = parse_config(config_path=config, overrides=overrides)
        if url is None:
            trainer = clients_for(settings, api_key=key).trainer
        else:
            trainer = TrainerClient(url, api_key=key)
        with trainer:
            started = trainer.start_job(job_config.model_dump(mode="json", exclude_unset=True))
    except MlcycleError as exc:
        fail(exc)
    typer.echo(started.id)


def modelserver(ctx: typer.Context) -> None:
    """Run the TF-Serving-compatible model server (tensorflow_model_server's flags; --help)."""
    from mlcycle.modelserver.cli import run

    sys.exit(run(ctx.args, settings_for("modelserver")))


@inference_app.command("api")
def inference_api() -> None:
    """Run the inference REST API (8000) in the foreground."""
    from mlcycle.inference.api import serve

    _serve(serve, "inference")


@inference_app.command("stream")
def inference_stream() -> None:
    """Run the streaming scorer (comments.raw into scored.comments) in the foreground."""
    from mlcycle.inference.stream import run_stream

    run_stream(settings_for("inference-stream"))


@inference_app.command("feedback")
def inference_feedback() -> None:
    """Join moderators' decisions from the feedback topic to the scores given, in the foreground."""
    from mlcycle.inference.feedback_stream import run_feedback

    run_feedback(settings_for("inference-feedback"))
