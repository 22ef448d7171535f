"""The commands of the life cycle: run the stack, import data, label, featurize, train, the demo.

Settings come from ``MLCYCLE_*`` variables, read once per command and passed
down. Each command imports what it runs only when it runs, so ``--help`` is quick.
"""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path
from typing import Annotated

import typer

from mlcycle.cli.context import console, fail, settings_for
from mlcycle.common.errors import MlcycleError

download_app = typer.Typer(help="Fetch public datasets into the local cache.")


def up(
    redis: Annotated[bool, typer.Option(help="Also start the embedded Redis.")] = True,
) -> None:
    """Start the local stack in the foreground: embedded broker, Redis and every service.

    Ctrl-C (or SIGTERM) stops everything cleanly.
    """
    from mlcycle.clients.base import service_url
    from mlcycle.local.stack import LocalStack

    settings = settings_for("stack", interactive=True)
    stack = LocalStack(settings, with_redis=redis)
    stopping = False

    def _stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    try:
        resolved = stack.start()
        console.print(f"broker     {resolved.kafka.bootstrap_servers}")
        if resolved.cache.redis_url:
            console.print(f"redis      {resolved.cache.redis_url}")
        console.print(f"store      {resolved.store.es_url or resolved.store.sqlite_path}")
        collector_url = service_url(resolved.host, resolved.collector.port)
        console.print(f"collector  {collector_url}  (docs at /docs)")
        console.print("[green]stack is up[/]; Ctrl-C to stop")
        while not stopping:
            failed = stack.failed_services()
            if failed:
                console.print(f"[red]service exited:[/] {failed}")
                break
            time.sleep(0.5)
    except MlcycleError as exc:
        fail(exc)
    finally:
        console.print("stopping…")
        stack.stop()


def label(
    strategy: Annotated[
        str | None,
        typer.Option(
            help="mean_threshold | majority | dawid_skene | anchored_dawid_skene "
            "(default: a label run's, anchored_dawid_skene)"
        ),
    ] = None,
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

    settings = settings_for("label", interactive=True)
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
        fail(exc)


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

    settings = settings_for("featurize", interactive=True)
    try:
        run_featurize_command(
            settings, console, refit=fit, label_run=run, transform=transform, config_path=config
        )
    except MlcycleError as exc:
        fail(exc)


def train(
    trials: Annotated[int | None, typer.Option(help="Trials of the search (default 8).")] = None,
    time_budget: Annotated[
        float | None, typer.Option("--time-budget", help="Seconds the search may take.")
    ] = None,
    preset: Annotated[
        str | None,
        typer.Option(
            help="search (default) | seed: the original talk's network | encoder: the "
            "shipped MiniLM with a trained head."
        ),
    ] = None,
    features: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated n-gram variants to search: current, talk, words, "
            "words+chars, bigrams+chars, words+chars+embeddings, embeddings."
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

    settings = settings_for("train", interactive=True)
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
        fail(exc)


FORMATS_HELP = "wikidetox|davidson|lewidi|hatexplain|jsonl|csv|corpora"
ONLY_HELP = "corpora: only these corpora (comma-separated: davidson,md-agreement,...)"
ENGLISH_HELP = "corpora: only the English ones (leaves out ArMIS)"


def import_(
    fmt: Annotated[str, typer.Argument(metavar="FORMAT", help=FORMATS_HELP)],
    paths: Annotated[list[Path], typer.Argument(help="Files (or a folder) to read; .gz is fine.")],
    only: Annotated[list[str] | None, typer.Option(help=ONLY_HELP)] = None,
    english: Annotated[bool, typer.Option("--english", help=ENGLISH_HELP)] = False,
) -> None:
    """Stream a dataset into comments.raw and votes.raw (the indexer stores it).

    ``corpora DIR`` reads every corpus it recognises in DIR, each with its own
    source. Needs a running broker (``mlcycle up``, or MLCYCLE_KAFKA_BOOTSTRAP).
    Re-running it is safe: records are keyed by id and the store upserts.
    """
    from mlcycle.importers.corpora import format_with_selection
    from mlcycle.local.pipeline import import_dataset

    settings = settings_for("import", interactive=True)
    try:
        fmt = format_with_selection(fmt, only, english)
        result = import_dataset(settings, fmt, paths, console=console)
    except MlcycleError as exc:
        fail(exc)
    console.print(result.describe())


@download_app.command("wikidetox")
def download_wikidetox() -> None:
    """Download the Wikipedia Talk Labels toxicity dataset (cached and checksummed)."""
    from mlcycle.importers.download import download_wikidetox as fetch

    settings = settings_for("download", interactive=True)
    try:
        files = fetch(settings.data_dir / "downloads")
    except MlcycleError as exc:
        fail(exc)
    for path in files:
        console.print(str(path))


def demo(
    data: Annotated[
        list[Path] | None, typer.Option(help="Local dataset files instead of downloading.")
    ] = None,
    fmt: Annotated[str, typer.Option("--format", help=FORMATS_HELP)] = "wikidetox",
    only: Annotated[list[str] | None, typer.Option(help=ONLY_HELP)] = None,
    english: Annotated[bool, typer.Option("--english", help=ENGLISH_HELP)] = False,
    trials: Annotated[int, typer.Option(help="Hyper-parameter trials (training stage).")] = 8,
    train_budget: Annotated[
        float,
        typer.Option(
            min=1.0,
            help="Seconds of search at most: no trial starts after them (training stage).",
        ),
    ] = 240.0,
    load_seconds: Annotated[
        float, typer.Option(min=1.0, help="Length of the load test of POST /v1/predict.")
    ] = 20.0,
    rollouts: Annotated[
        bool,
        typer.Option(
            "--rollouts/--no-rollouts",
            help="End with a retraining run on the drift alarm, its rollout, and a "
            "shuffled-label drill rolled back (a few minutes more).",
        ),
    ] = True,
) -> None:
    """Run the main job end to end on the embedded stack and print what it did."""
    from mlcycle.importers.corpora import format_with_selection
    from mlcycle.local.demo import run_demo

    settings = settings_for("demo", interactive=True)
    try:
        code = run_demo(
            settings,
            data=data or [],
            fmt=format_with_selection(fmt, only, english),
            trials=trials,
            console=console,
            load_seconds=load_seconds,
            train_budget_s=train_budget,
            rollouts=rollouts,
        )
    except MlcycleError as exc:
        fail(exc)
    sys.exit(code)
