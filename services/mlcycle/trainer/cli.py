"""``mlcycle train``: one training job in this process, with progress, a table and its report."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from mlcycle.common.errors import InvalidInput, ValidationFailed
from mlcycle.common.kafka.producer import RecordProducer
from mlcycle.common.settings import Settings
from mlcycle.common.store import RUNS, open_store
from mlcycle.contracts.messages import flat_errors
from mlcycle.contracts.training import JobConfig


def parse_config(
    *,
    config_path: Path | None,
    overrides: dict[str, Any],
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
) -> dict[str, Any]:
    """Create (or resume) a job, execute it with a progress bar, print its table and report path."""
    from mlcycle.trainer.api import kafka_emitter
    from mlcycle.trainer.jobs import JobRunner
    from mlcycle.trainer.registry import ModelRegistry

    store = open_store(settings)
    try:
        with RecordProducer(settings, client_id="mlcycle-train") as producer:
            registry = ModelRegistry(settings, store, kafka_emitter(settings, producer))
            progress = Progress(
                TextColumn("[bold]train[/] {task.description}"),
                BarColumn(),
                TextColumn("{task.completed}/{task.total} trials"),
                TimeElapsedColumn(),
                console=console,
            )
            with progress:
                bar = progress.add_task("queued", total=None)

                def show(job: dict[str, Any]) -> None:
                    state = job["progress"]
                    best = state.get("best_value")
                    text = state.get("stage", "")
                    if state.get("detail"):
                        text += f": {state['detail']}"
                    elif best is not None:
                        text += f" (best dev {best:.4f})"
                    progress.update(
                        bar,
                        description=text,
                        completed=state.get("trials_done", 0),
                        total=state.get("trials_total"),
                    )

                runner = JobRunner(settings, store, registry, on_progress=show)
                job_id = resume or runner.create(config or JobConfig())["id"]
                job = runner.execute(job_id)
        if job["status"] != "succeeded":
            raise ValidationFailed(f"training job {job['id']} failed: {job.get('error')}")
        _print_result(store, job, console)
        return job
    finally:
        store.close()


def _print_result(store: Any, job: dict[str, Any], console: Console) -> None:
    from mlcycle.trainer.evaluation import Evaluation
    from mlcycle.trainer.linear import describe_blend
    from mlcycle.trainer.report import summary_table

    result = job["result"]
    trials = sorted(
        store.scan(RUNS, filters={"kind": "trial", "job": job["id"]}),
        key=lambda t: t.get("number", 0),
    )
    dev = Evaluation.from_dict(result["dev"])
    test = Evaluation.from_dict(result["test"]) if result.get("test") else None
    console.print(summary_table(trials, result["metric"], dev, test))
    if result.get("blend"):
        console.print(f"linear blend: {describe_blend(result['blend'])}")
    model = result.get("model")
    if model:
        console.print(
            f"model {model['name']} v{model['version']}: [bold]{model['state']}[/] "
            f"— {model['reason']}"
        )
    console.print(f"report: {result['report']}")
