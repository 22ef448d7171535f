"""``mlcycle label``: one label run in this process, with progress, a table and an HTML page."""

from __future__ import annotations

from pathlib import Path

from pydantic import ValidationError
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from mlcycle.common.errors import InvalidInput
from mlcycle.common.kafka.producer import RecordProducer
from mlcycle.common.settings import Settings
from mlcycle.common.store import open_store
from mlcycle.contracts.label_diagnostics import DiagnosticsReport
from mlcycle.contracts.label_runs import LabelRun, RunParams, RunStats
from mlcycle.contracts.messages import flat_errors
from mlcycle.featurization.store import TransformStore
from mlcycle.labeler.report import render_table, write_html
from mlcycle.labeler.runs import LabelRunner


def parse_params(
    *,
    strategy: str | None,
    task: str | None,
    threshold: float | None,
    lfs: str | None,
    default_task: str,
) -> RunParams:
    """Command-line options as run parameters; bad values are InvalidInput naming them.

    ``default_task`` is the task when ``task`` is not given; without ``strategy`` the run
    takes :class:`RunParams`' default.
    """
    names: list[str] | None = None
    if lfs is not None:
        names = [] if lfs.strip().lower() == "none" else [n.strip() for n in lfs.split(",") if n]
    try:
        return RunParams(
            **({"strategy": strategy} if strategy else {}),
            task=task or default_task,
            threshold=threshold,
            labeling_functions=names,
        )
    except ValidationError as exc:
        raise InvalidInput(f"bad label options: {flat_errors(exc)}") from None


def run_label_command(
    settings: Settings,
    console: Console,
    *,
    strategy: str | None,
    task: str | None,
    threshold: float | None,
    lfs: str | None,
    resume: str | None,
    html: Path | None,
) -> LabelRun:
    """Create (or resume) a run, execute it with a progress bar, print and write its report."""
    store = open_store(settings.store)
    try:
        with RecordProducer(settings.kafka, client_id="mlcycle-label") as producer:
            progress = Progress(
                TextColumn("[bold]label[/] {task.description}"),
                BarColumn(),
                TextColumn("{task.completed}/{task.total} chunks"),
                TimeElapsedColumn(),
                console=console,
            )
            with progress:
                bar = progress.add_task("queued", total=None)

                def show(run: LabelRun) -> None:
                    state = run.progress
                    progress.update(
                        bar,
                        description=state.phase,
                        completed=state.chunks_done,
                        total=state.chunks_total,
                    )

                runner = LabelRunner(
                    settings.labeler,
                    store,
                    producer,
                    topic=settings.kafka.topics.labels,
                    on_progress=show,
                    transforms=TransformStore(settings.featurizer.artifacts_dir),
                )
                if resume is None:
                    params = parse_params(
                        strategy=strategy,
                        task=task,
                        threshold=threshold,
                        lfs=lfs,
                        default_task=settings.labeler.task,
                    )
                    resume = runner.create(params).id
                run = runner.execute(resume)
        report = run.report or DiagnosticsReport()
        render_table(report, console)
        _print_summary(run, console)
        path = html or settings.data_dir / "reports" / f"{run.id}.html"
        write_html(report, path, title=f"mlcycle label run {run.id}")
        console.print(f"report: {path}")
        return run
    finally:
        store.close()


def _print_summary(run: LabelRun, console: Console) -> None:
    stats = run.stats or RunStats()
    strategy = run.params.strategy if run.params else "?"

    def pct(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.3f}"

    console.print(
        f"run {run.id} ({strategy}): {stats.labeled:,} of "
        f"{stats.items:,} items labeled, {stats.events:,} label events; "
        f"accuracy on {stats.gold_items:,} gold items {pct(stats.accuracy_on_gold)} "
        f"(majority baseline {pct(stats.baseline.accuracy_on_gold)})"
    )
    for split, balance in stats.class_balance.items():
        console.print(f"  {split:<5} " + "  ".join(f"class {c}: {n:,}" for c, n in balance.items()))
    issues = run.label_issues
    if issues is not None:
        found = (
            f"none looked for: {issues.skipped}"
            if issues.skipped
            else f"{issues.suspects:,} of {issues.checked:,} labels ({issues.seconds} s)"
        )
        console.print(f"suspected label errors: {found}")
