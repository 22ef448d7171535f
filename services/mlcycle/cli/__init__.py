"""The ``mlcycle`` command line: run the stack, import data, run the main job, serve.

The commands live by kind: :mod:`~mlcycle.cli.lifecycle` (the stack, data, label,
featurize, train, the demo), :mod:`~mlcycle.cli.serving` (ask the inference
service), :mod:`~mlcycle.cli.registry` (the model registry's stages: list, promote, roll
back), :mod:`~mlcycle.cli.checking` (the behavioural suite against the served
model), :mod:`~mlcycle.cli.monitoring` (what the live model's monitor says),
:mod:`~mlcycle.cli.services` (run one service in the foreground),
:mod:`~mlcycle.cli.embeddings` (distill the static embeddings),
:mod:`~mlcycle.cli.rollouts` (shadow, canary, automatic promotion),
:mod:`~mlcycle.cli.retraining` (continuous training). They
are registered here, in the order ``mlcycle --help`` lists them.
"""

from __future__ import annotations

import typer

from mlcycle.cli import checking, lifecycle, monitoring, registry, services, serving
from mlcycle.cli.embeddings import embeddings_app
from mlcycle.cli.retraining import retrain_app
from mlcycle.cli.rollouts import rollout_app

app = typer.Typer(
    name="mlcycle",
    help="The life cycle of a production ML project: collect, label, featurize, train, serve.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)

app.command()(lifecycle.up)
app.command()(lifecycle.label)
app.command()(lifecycle.featurize)
app.command(
    "modelserver",
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    add_help_option=False,
)(services.modelserver)
app.command()(lifecycle.train)
app.command()(registry.models)
app.command()(registry.promote)
app.command()(registry.rollback)
app.command()(serving.predict)
app.command()(serving.explain)
app.command()(checking.check)
app.command()(monitoring.monitor)
app.command("import")(lifecycle.import_)
app.command()(lifecycle.demo)

app.add_typer(services.collector_app, name="collector")
app.add_typer(services.labeler_app, name="labeler")
app.add_typer(services.featurizer_app, name="featurizer")
app.add_typer(services.trainer_app, name="trainer")
app.add_typer(services.inference_app, name="inference")
app.add_typer(lifecycle.download_app, name="download")
app.add_typer(embeddings_app, name="embeddings")
app.add_typer(rollout_app, name="rollout")
app.add_typer(retrain_app, name="retrain")

__all__ = ["app"]
