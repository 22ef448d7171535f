"""``mlcycle train``: one training job in this process, with progress, a table and its report."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from mlcycle.common.errors import InvalidInput, ValidationFailed
from mlcycle.common.kafka.producer import RecordProducer
from mlcycle.common.settings import Settings
from mlcycle.common.store import open_store
from mlcycle.contracts.messages import flat_errors
from mlcycle.contracts.repositories.trials import Trials
from mlcycle.contracts.training import JobConfig, JobResult, TrainingJob


def parse_config(
    *,
    config_path: Path | None,
    overrides: Mapping[str, object],
) -> JobConfig:
    """A job config from an optional JSON file plus command-line options; errors name the field."""
    raw: dict[str, Any] = {}
    if config_path is not None:
        try:
            raw = json.loads(config_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise InvalidInput(f"cannot read the job config {config_path}: {exc}") from None
        if not isinstance(raw, dict):
            raise InvalidInput(f"the job config {config_path} must be a JSON object")
    for key, value in overrides.items():
        if value is None:
            continue
        if key == "features":
            raw.setdefault("search", {})["features"] = value
        else:
            raw[key] = value
    try:
        return JobConfig(**raw)
    except ValidationError as exc:
        raise InvalidInput(f"bad job config: {flat_errors(exc)}") from None


def run_train_command(
    settings: Settings, console: Console, *, config: JobConfig | None, resume: str | None
) -> TrainingJob:
    """Create (or resume) a job, execute it with a progress bar, print its table and report path."""
    from mlcycle.trainer.api import kafka_emitter
    from mlcycle.trainer.jobs import JobRunner
    from mlcycle.trainer.registry import ModelRegistry
    from mlcycle.trainer.stages.context import JobEnvironment

    store = open_store(settings.store)
    try:
        with RecordProducer(settings.kafka, client_id="mlcycle-train") as producer:
            emit = kafka_emitter(settings.kafka.topics.models, producer)
            registry = ModelRegistry(settings.trainer, store, emit)
            progress = Progress(
                TextColumn("[bold]train[/] {task.description}"),
                BarColumn(),
                TextColumn("{task.completed}/{task.total} trials"),
                TimeElapsedColumn(),
                console=console,
            )
            with progress:
                bar = progress.add_task("queued", total=None)

                def show(job: TrainingJob) -> None:
                    state = job.progress
                    text = state.stage
                    if state.detail:
                        text += f": {state.detail}"
                    elif state.best_value is not None:
                        text += f" (best dev {state.best_value:.4f})"
                    progress.update(
                        bar,
                        description=text,
                        completed=state.trials_done,
                        total=state.trials_total,
                    )

                environment = JobEnvironment.of(settings)
                runner = JobRunner(settings.trainer, store, registry, environment, on_progress=show)
                job_id = resume or runner.create(config or JobConfig()).id
                job = runner.execute(job_id)
        if job.status != "succeeded" or job.result is None:
            raise ValidationFailed(f"training job {job.id} failed: {job.error}")
        _print_result(Trials(store), job.id, job.result, console)
        return job
    finally:
        store.close()


def _print_result(trials: Trials, job_id: str, result: JobResult, console: Console) -> None:
    from mlcycle.evaluation.classification import Evaluation
    from mlcycle.trainer.linear import describe_blend
    from mlcycle.trainer.report import summary_table
    from mlcycle.trainer.stages.report import describe_encoder

    found = [trial.to_document() for trial in trials.of_job(job_id)]
    dev = Evaluation.from_dict(result.dev)
    test = Evaluation.from_dict(result.test) if result.test else None
    console.print(summary_table(found, result.metric, dev, test))
    if result.blend:
        console.print(f"linear blend: {describe_blend(result.blend)}")
    if result.behaviour:
        b = result.behaviour
        console.print(
            f"behavioural suite: {b.pass_rate:.1%} of {b.cases} cases passed; "
            f"worst capability {b.worst_capability} ({b.worst_rate:.1%})",
            highlight=False,
        )
    if result.encoder:
        console.print(f"encoder: {describe_encoder(result.encoder)}")
    model = result.model
    if model:
        console.print(
            f"model {model.name} v{model.version}: [bold]{model.state}[/] — {model.reason}"
        )
    console.print(f"report: {result.report}")
