"""``mlcycle demo``: the main job on the embedded stack, stage by stage, with a summary.

The stages: get the dataset, start the stack, import it through Kafka, wait
until the indexer has stored it, query it back over REST, label it twice on
the labeler (the talk's mean-threshold rule over the crowd votes, then
Dawid-Skene over crowd votes and labeling functions, which training uses) and
measure how often the two agree, fit a transform on the train split and
featurize the labeled items into shards, search and train a model, deploy it
(the model server picks up the promoted version), predict through the
inference service, let its streaming scorer score every imported comment,
send a batch of new comments to ``comments.raw`` through the collector and
read their scores back from ``scored.comments``, load-test ``POST /v1/predict``,
and watch the live model: clean, drifted and clean traffic through the monitor
(its alarms raised and cleared), then moderators' decisions on a sample, for
realized quality beside the estimate; then retrain on the alarm and let the registry
roll the candidate out (shadow, canary steps, production) by itself, and force a
model trained on shuffled labels into a rollout that the registry rolls back. Every
stage shows a progress bar and its time; the end is a summary table and one HTML report.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console

from mlcycle.clients import ServiceClients, clients_for
from mlcycle.common.settings import Settings
from mlcycle.contracts.label_runs import DEFAULT_STRATEGY
from mlcycle.local import demo_stages
from mlcycle.local.demo_monitoring import watch_live_model
from mlcycle.local.demo_records import DemoRun, SearchLimits
from mlcycle.local.demo_report import print_summary, write_report
from mlcycle.local.demo_rollouts import roll_out_candidates, write_retraining_policy
from mlcycle.local.demo_stages import StageBar, Stages, step
from mlcycle.local.pipeline import featurize_via_api, import_dataset
from mlcycle.local.stack import LocalStack


def run_demo(
    settings: Settings,
    *,
    data: list[Path],
    fmt: str,
    trials: int,
    console: Console,
    load_seconds: float = 20.0,
    train_budget_s: float = 240.0,
    rollouts: bool = True,
) -> int:
    """Run every stage, print the summary table and write the HTML report; 0 on success."""
    started = time.perf_counter()
    stages = Stages(console)
    paths, fmt = stages.run("dataset", lambda bar: _dataset(settings, data, fmt, bar))
    if rollouts:
        policy = write_retraining_policy(settings.data_dir)
        settings = settings.replace(retraining_policy_file=str(policy))
    stack = LocalStack(settings, log_dir=settings.data_dir / "logs")
    try:
        resolved = stages.run("start stack", lambda bar: _start(stack, bar))
        with clients_for(resolved) as clients:
            search = SearchLimits(trials, train_budget_s)
            run = _stages(
                resolved, clients, stages, paths, fmt, search, load_seconds, rollouts=rollouts
            )
    finally:
        stack.stop()
    total_s = time.perf_counter() - started
    report = settings.data_dir / "reports" / f"demo-{datetime.now(UTC):%Y%m%dT%H%M%S}.html"
    print_summary(console, settings, run, stages.timings, total_s)
    write_report(report, settings, run, stages.timings, total_s)
    console.print(f"demo report: {report}")
    return 0


def _stages(
    settings: Settings,
    clients: ServiceClients,
    stages: Stages,
    paths: list[Path],
    fmt: str,
    search: SearchLimits,
    load_seconds: float,
    *,
    rollouts: bool,
) -> DemoRun:
    console = stages.console
    imported = stages.run_own(
        "import", lambda: import_dataset(settings, fmt, paths, console=console)
    )
    console.print(imported.describe())
    sent = imported.comments + imported.votes
    stages.run("index", lambda bar: demo_stages.index(settings, sent, bar))
    counts = clients.collector.stats(timeout_s=5.0).counts
    search_hits = demo_stages.sample_search(clients)
    labels, agreement = demo_stages.label_runs(settings, clients, stages)
    label_run = labels[DEFAULT_STRATEGY].id
    features = stages.run(
        "featurize",
        lambda bar: step(
            bar, "fit on train, build shards", featurize_via_api, clients.featurizer, label_run
        ),
    )
    demo_stages.ensure_embeddings(settings, stages)
    trained = stages.run_own(
        "train", lambda: demo_stages.train(clients, label_run, search, console)
    )
    served = demo_stages.serve(settings, clients, stages)
    stream = demo_stages.stream(settings, clients, stages, imported.comments)
    load = stages.run("load test", lambda bar: demo_stages.load_test(settings, load_seconds, bar))
    monitoring = stages.run(
        "watch the live model",
        lambda bar: watch_live_model(settings, clients, label_run, served.version, bar.update),
    )
    tried = None
    if rollouts:
        tried = stages.run(
            "retrain and roll out",
            lambda bar: roll_out_candidates(settings, clients, label_run, monitoring, bar.update),
        )
    return DemoRun(
        imported=imported,
        counts=counts,
        dead_lettered=demo_stages.dead_lettered(settings.kafka),
        search_hits=search_hits,
        labels=labels,
        agreement=agreement,
        features=features,
        trained=trained,
        served=served,
        stream=stream,
        load=load,
        load_seconds=load_seconds,
        monitoring=monitoring,
        rollouts=tried,
    )


def _dataset(
    settings: Settings, data: list[Path], fmt: str, bar: StageBar
) -> tuple[list[Path], str]:
    if data:
        bar.update(describe_data(data, fmt))
        return data, fmt
    from mlcycle.importers.download import download_wikidetox

    def progress(name: str, done: int, total: int | None) -> None:
        bar.update(f"downloading {name}: {done / 1e6:,.1f} MB", done, total)

    bar.update("Wikipedia Talk Labels (cached after the first download)")
    return download_wikidetox(settings.data_dir / "downloads", progress=progress), "wikidetox"


def describe_data(data: list[Path], fmt: str) -> str:
    """What the demo will import; a folder of corpora is searched now, so a wrong one fails
    before the stack starts."""
    from mlcycle.importers import get_importer
    from mlcycle.importers.corpora import CorporaImporter

    importer = get_importer(fmt)
    if isinstance(importer, CorporaImporter):
        return f"corpora: {', '.join(importer.select(data))}"
    return f"{len(data)} local file(s), format {fmt}"


def _start(stack: LocalStack, bar: StageBar) -> Settings:
    bar.update(f"broker, Redis and {len(stack.service_names)} services")
    return stack.start()
