"""The commands users run, end to end, as subprocesses: `mlcycle demo`, `mlcycle up` + `import`.

Each test gets its own data directory and free ports, so it can run next to
anything else on the machine (including a stack on the default ports).
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import orjson
import psutil
import pytest

from mlcycle.clients import DeadlinePassed, ServiceClients, clients_for, poll_until
from mlcycle.common.errors import Unavailable
from mlcycle.common.infra.process import free_port
from mlcycle.common.settings import load_settings
from mlcycle.common.store.sqlite import SqliteStore
from mlcycle.contracts.repositories.label_runs import LabelRuns
from mlcycle.contracts.repositories.training_jobs import TrainingJobs
from mlcycle.importers.synthetic import write_wikidetox_files
from tests.fixtures.broker import read_all
from tests.fixtures.embeddings import copy_embeddings

pytestmark = pytest.mark.e2e

N_COMMENTS = 300
VOTES_PER_COMMENT = 5
DEMO_SECRET = "demo-admin-secret-8f1c"


def _isolated_env(data_dir: Path) -> dict[str, str]:
    return {
        **os.environ,
        "MLCYCLE_DATA_DIR": str(data_dir),
        "MLCYCLE_EMBEDDED_KAFKA_PORT": str(free_port()),
        "MLCYCLE_COLLECTOR_PORT": str(free_port()),
        "MLCYCLE_INDEXER_METRICS_PORT": str(free_port()),
        "MLCYCLE_LABELER_PORT": str(free_port()),
        "MLCYCLE_LABELER_STREAM_METRICS_PORT": str(free_port()),
        "MLCYCLE_FEATURIZER_PORT": str(free_port()),
        "MLCYCLE_FEATURIZER_GRPC_PORT": str(free_port()),
        "MLCYCLE_FEATURIZER_BATCH_METRICS_PORT": str(free_port()),
        "MLCYCLE_TRAINER_PORT": str(free_port()),
        "MLCYCLE_MODEL_SERVER_PORT": str(free_port()),
        "MLCYCLE_MODEL_SERVER_REST_PORT": str(free_port()),
        "MLCYCLE_INFERENCE_PORT": str(free_port()),
        "MLCYCLE_INFERENCE_STREAM_METRICS_PORT": str(free_port()),
        "MLCYCLE_FEEDBACK_METRICS_PORT": str(free_port()),
        "COLUMNS": "120",  # rich wraps the summary table at the terminal width
    }


def _mlcycle(*args: str) -> list[str]:
    return [sys.executable, "-m", "mlcycle", *args]


def _clients(env: dict[str, str], api_key: str | None = None) -> ServiceClients:
    """Clients of the stack a command started with ``env`` (its ports), sending ``api_key``."""
    ports = {
        name.removeprefix("MLCYCLE_").lower(): int(value)
        for name, value in env.items()
        if name.startswith("MLCYCLE_") and name.endswith("_PORT")
    }
    return clients_for(load_settings(**ports), api_key=api_key)


def _figure(output: str, row: str) -> int:
    """The number in the summary-table row that starts with ``row``."""
    match = re.search(rf"{re.escape(row)}\s*│\s*([\d,]+)", output)
    assert match, f"no row {row!r} in:\n{output}"
    return int(match.group(1).replace(",", ""))


@pytest.fixture
def dataset(tmp_path: Path) -> list[Path]:
    return write_wikidetox_files(
        tmp_path / "wikidetox", N_COMMENTS, votes_per_comment=VOTES_PER_COMMENT, compress=True
    )


def _number(output: str, row: str) -> float:
    """The first decimal number in the summary-table row that starts with ``row``."""
    match = re.search(rf"{re.escape(row)}\s*│\s*([\d,]+(?:\.\d+)?)", output)
    assert match, f"no row {row!r} in:\n{output}"
    return float(match.group(1).replace(",", ""))


def _pair(output: str, row: str) -> tuple[float, float]:
    """The two numbers of an ``a / b`` summary-table row that starts with ``row``."""
    match = re.search(rf"{re.escape(row)}\s*│\s*([\d.]+) / ([\d.]+)", output)
    assert match, f"no row {row!r} in:\n{output}"
    return float(match.group(1)), float(match.group(2))


# The default search space has a variant with static embeddings: the demo makes them in a
# fresh data directory (half a minute and more); these tests distill them once and share them.
# The demo runs with an admin key configured, as a deployment would: every call carries it,
# each stage still runs, and the audit records name the key, never its secret. (Without
# keys, the same stack is what the integration tests drive.)
@pytest.mark.timeout(900)
def test_demo_runs_every_stage_and_the_model_survives_a_restart(
    tmp_path: Path, dataset: list[Path], distilled_embeddings: Path
) -> None:
    copy_embeddings(distilled_embeddings, tmp_path / "data" / "artifacts")
    env = {**_isolated_env(tmp_path / "data"), "MLCYCLE_API_KEYS": f"ops:admin:{DEMO_SECRET}"}
    data_args = [arg for path in dataset for arg in ("--data", str(path))]
    args = ("--format", "wikidetox", "--trials", "2", "--load-seconds", "3")
    done = subprocess.run(
        _mlcycle("demo", *data_args, *args),
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert DEMO_SECRET not in output
    assert _figure(output, "comments sent to Kafka") == N_COMMENTS
    assert _figure(output, "comments stored") == N_COMMENTS
    assert _figure(output, "votes stored") == N_COMMENTS * VOTES_PER_COMMENT
    assert _figure(output, "dead-lettered") == 0
    # Both label strategies labeled every comment (each has five crowd votes); Dawid-Skene
    # ran last, so its events are the labels that changed since the talk's rule.
    assert _figure(output, "items labeled (mean_threshold, crowd only)") == N_COMMENTS
    assert _figure(output, "items labeled (anchored_dawid_skene + LFs)") == N_COMMENTS
    assert 0 < _figure(output, "label events published") <= N_COMMENTS
    agreement = re.search(
        r"label agreement \(mean_threshold vs anchored_dawid_skene\)"
        r"\s*│\s*([\d.]+) on ([\d,]+) items",
        output,
    )
    assert agreement, output
    # Five votes per comment from a generated crowd: the two mostly agree, not always.
    assert 0.6 <= float(agreement.group(1)) <= 1.0
    assert int(agreement.group(2).replace(",", "")) == N_COMMENTS
    assert -1.0 <= _number(output, "label agreement, Cohen's kappa") <= 1.0
    rows = re.search(
        r"feature rows \(train / dev / test\)\s*│\s*([\d,]+) / ([\d,]+) / ([\d,]+)", output
    )
    assert rows, output
    assert sum(int(n.replace(",", "")) for n in rows.groups()) == N_COMMENTS
    data_dir = tmp_path / "data"
    # The demo's feature set, plus one per n-gram variant the search tried: all complete.
    # (The retraining run's label run has feature sets of its own, made later.)
    manifests = sorted(
        (data_dir / "artifacts" / "features").glob("tf-*/lr-*/manifest.json"),
        key=lambda m: m.stat().st_mtime,
    )
    label_run = orjson.loads(manifests[0].read_bytes())["label_run"]
    manifests = [m for m in manifests if m.parent.name == label_run]
    assert manifests and all(orjson.loads(m.read_bytes())["rows"] == N_COMMENTS for m in manifests)
    # The two label runs of the labeling stage (the retraining run's may follow).
    reports = sorted((data_dir / "reports").glob("lr-*.html"), key=lambda r: r.stat().st_mtime)
    reports = reports[:2]
    assert len(reports) == 2 and all("conflict" in r.read_text(encoding="utf-8") for r in reports)
    # The search ran its trials and its winner is served: it is the first production model.
    assert re.search(r"trials searched.*│\s*2, best trial \d", output), output
    accuracy = re.search(r"test accuracy \(the talk: 0\.708\)\s*│\s*([\d.]+)", output)
    assert accuracy and 0.5 < float(accuracy.group(1)) <= 1.0, output
    assert re.search(r"model version\s*│\s*toxicity v1 \(production\)", output), output
    lineage = orjson.loads((data_dir / "models" / "toxicity" / "1" / "metadata.json").read_bytes())
    assert lineage["label_run"] == label_run and lineage["blessing"]["blessed"]
    versions = {m.parent.parent.name for m in manifests}
    assert lineage["transform"] in versions
    # The demo's job, the retraining run's and the drill's, in that order.
    jobs = sorted((data_dir / "reports").glob("tj-*.html"), key=lambda r: r.stat().st_mtime)
    assert len(jobs) == 3
    training_report = jobs[0]
    # Deployed and predicting: the model server serves v1, both samples get a score and a
    # label (300 generated comments teach too little to rank them), and the streaming
    # scorer scored every imported comment.
    assert re.search(r"served by the model server\s*│\s*toxicity v1", output), output
    scored = re.findall(r"predict '.*?│\s*([\d.]+) → ([01])", output)
    assert len(scored) == 2 and all(0.0 <= float(score) <= 1.0 for score, _ in scored), output
    assert _figure(output, "comments scored by the stream") == N_COMMENTS
    # New comments through the collector and comments.raw, read back from scored.comments.
    sent = _figure(output, "new comments sent (POST /v1/comments)")
    assert sent == 200
    assert _figure(output, "new comments scored back (scored.comments)") == sent
    assert 0 < _number(output, "new comments: all scored back after") < 120
    # The load test: requests of both kinds, a throughput, ordered percentiles.
    load = re.search(
        r"single-comment POST /v1/predict\s*│\s*([\d,]+) requests \(([\d,]+) "
        r"repeats, ([\d,]+) new\)",
        output,
    )
    assert load, output
    total, hits, misses = (int(n.replace(",", "")) for n in load.groups())
    assert total == hits + misses and hits > 0 and misses > 0
    assert _number(output, "load test throughput (requests/s)") > 0
    for kind in ("all", "repeats: cache hits", "new texts: misses"):
        p50, p99 = _pair(output, f"load test latency p50 / p99 ({kind})")
        assert 0 < p50 <= p99, (kind, p50, p99)
    assert (data_dir / "store.sqlite3").is_file()
    # One HTML report: the summary, two plots, links to both label runs and the training job.
    match = re.search(r"demo report: (\S+\.html)", output)
    assert match, output
    page = Path(match.group(1)).read_text(encoding="utf-8")
    # The stages' and the load test's plots, then the monitor's (per signal and quality).
    assert page.count("data:image/png;base64,") > 2
    assert "label agreement (mean_threshold vs anchored_dawid_skene)" in page
    assert "Watching the live model" in page
    # The production loop: the drifted batch's new words put the OOV share in alarm, and
    # moderators' decisions on the scored comments were taken and joined to their scores.
    # (From the page's summary table, whose cells do not wrap as the terminal's do.)
    raised = re.search(r"<td>monitor: in alarm after the drifted batch</td><td>([^<]*)<", page)
    assert raised and "oov_share" in raised.group(1), output
    decisions = re.search(
        r"<td>moderators&#x27; decisions \(joined / pending / duplicate\)</td>"
        r"<td>([\d,]+) \(([\d,]+) /",
        page,
    )
    assert decisions, page
    accepted, joined = (int(n.replace(",", "")) for n in decisions.groups())
    assert accepted > 0 and joined == accepted
    linked = {
        (data_dir / "reports" / href).resolve() for href in re.findall(r"href='([^']+)'", page)
    }
    assert linked == {r.resolve() for r in (*reports, training_report)}
    # Retrained on the drift alarm, the candidate was rolled out by the registry alone (to
    # production, or back if live traffic showed it worse); the shuffled-label drill was
    # rolled back by the registry's guard; no prediction failed meanwhile.
    assert "Rolling out a retrained model" in page
    # 300 generated comments make weak models: the retrained one may be refused at its
    # blessing (the page then says so). Production and the drill label nearly every live
    # comment alike (agreement near 1.000 at the served thresholds, a low-prevalence
    # stream), so agreement alone cannot tell them apart; the drill's scores follow none of
    # production's (their logit correlation is near 0, under the policy's
    # min_score_correlation), and that rolls it back.
    outcome = r"version, outcome</td><td>([^<]*)<"
    retrained = re.search(r"<td>retrained candidate: " + outcome, page)
    assert retrained and re.search(r": (production|rolled_back|failed)", retrained.group(1)), page
    drill = re.search(r"<td>drill \(shuffled labels\): " + outcome, page)
    assert drill and re.search(r"^v\d+: rolled_back$", drill.group(1)), page
    assert re.search(r"<td>rollouts: failed prediction requests</td><td>0<", page), page

    _audit_names_the_key_never_its_secret(data_dir)
    _restart_serves_the_trained_model(env, data_dir)


def _audit_names_the_key_never_its_secret(data_dir: Path) -> None:
    store = SqliteStore(data_dir / "store.sqlite3")
    try:
        jobs = TrainingJobs(store).newest(10).items
        runs = LabelRuns(store).newest(limit=10)
    finally:
        store.close()
    assert jobs and {job.submitted_by for job in jobs} == {"ops"}
    assert runs and {run.started_by for run in runs} == {"ops"}
    assert DEMO_SECRET not in (data_dir / "store.sqlite3").read_bytes().decode("latin-1")


def _restart_serves_the_trained_model(env: dict[str, str], data_dir: Path) -> None:
    """`mlcycle up` on the demo's data directory serves its production model again (v1, or
    the retrained candidate when its rollout promoted it), with no training."""
    jobs_before = {p.name for p in (data_dir / "reports").glob("tj-*.html")}
    stack = subprocess.Popen(
        _mlcycle("up"), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT
    )
    clients = _clients(env, DEMO_SECRET)
    try:
        # Inference is ready only once the model server serves a version; the trainer starts
        # alongside it, and is asked below, so wait for both.
        _wait_until(lambda: clients.inference.ready() and clients.trainer.ready(), 120)
        (prediction,) = clients.inference.predict(["a comment the demo never sent"])
        production = clients.trainer.models().production
        assert set(production) == {"toxicity"}
        assert prediction.model_version == production["toxicity"]
        # The first model's job, the retraining run's and the drill's; none since.
        assert [job.status for job in clients.trainer.jobs().jobs] == ["succeeded"] * 3
    finally:
        clients.close()
        stack.send_signal(signal.SIGINT)
        stack.wait(60)
    assert {p.name for p in (data_dir / "reports").glob("tj-*.html")} == jobs_before
    served = data_dir / "models" / "toxicity" / str(production["toxicity"])
    assert (served / "saved_model.pb").is_file()


@pytest.fixture
def running_stack(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], dict[str, str]]]:
    env = _isolated_env(tmp_path / "data")
    proc = subprocess.Popen(
        _mlcycle("up", "--no-redis"),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    collector = _clients(env).collector

    def ready() -> bool:
        assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
        return collector.ready()

    try:
        poll_until(ready, timeout=90, interval=0.3, what="the stack did not become ready")
    except DeadlinePassed as exc:
        proc.kill()
        pytest.fail(exc.message)
    finally:
        collector.close()
    try:
        yield proc, env
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_up_then_import_then_ctrl_c_leaves_nothing_running(
    running_stack: tuple[subprocess.Popen[str], dict[str, str]], dataset: list[Path]
) -> None:
    proc, env = running_stack
    children = psutil.Process(proc.pid).children(recursive=True)
    assert len(children) >= 5  # broker, collector API and indexer, labeler API and stream

    imported = subprocess.run(
        _mlcycle("import", "wikidetox", *map(str, dataset)),
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert imported.returncode == 0, imported.stdout + imported.stderr
    assert f"imported {N_COMMENTS:,} comments" in imported.stderr

    clients = _clients(env)
    expected = {"comments": N_COMMENTS, "votes": N_COMMENTS * VOTES_PER_COMMENT}
    counts: dict[str, int] = {}

    def all_stored() -> bool:
        nonlocal counts
        counts = clients.collector.stats(timeout_s=5).counts
        return {k: counts[k] for k in expected} == expected

    with contextlib.suppress(DeadlinePassed):
        poll_until(all_stored, timeout=60, interval=0.3, what="the import was not all stored")
    assert {k: counts[k] for k in expected} == expected

    labeled = subprocess.run(
        _mlcycle("label", "--strategy", "mean_threshold", "--lfs", "none"),
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert labeled.returncode == 0, labeled.stdout + labeled.stderr
    output = labeled.stdout + labeled.stderr
    assert f"{N_COMMENTS:,} of {N_COMMENTS:,} items labeled" in output
    assert "workers" in output.lower()  # the diagnostics table
    (report,) = (Path(env["MLCYCLE_DATA_DIR"]) / "reports").glob("lr-*.html")
    assert "data:image/png;base64," in report.read_text(encoding="utf-8")
    page = clients.labeler.labels(limit=5)
    assert len(page.items) == 5 and page.items[0].method == "mean_threshold"
    clients.close()

    featurized = subprocess.run(
        _mlcycle("featurize"), env=env, capture_output=True, text=True, timeout=120
    )
    assert featurized.returncode == 0, featurized.stdout + featurized.stderr
    assert "fitted transform tf-" in featurized.stderr
    manifests = list(
        Path(env["MLCYCLE_DATA_DIR"]).glob("artifacts/features/tf-*/lr-*/manifest.json")
    )
    assert len(manifests) == 1
    assert orjson.loads(manifests[0].read_bytes())["rows"] == N_COMMENTS

    proc.send_signal(signal.SIGINT)
    assert proc.wait(60) == 0
    _, still_alive = psutil.wait_procs(children, timeout=15)
    assert not still_alive, f"left running after Ctrl-C: {still_alive}"


def test_import_without_a_broker_fails_clearly(tmp_path: Path, dataset: list[Path]) -> None:
    env = {
        **_isolated_env(tmp_path / "data"),
        "MLCYCLE_KAFKA_BOOTSTRAP": f"127.0.0.1:{free_port()}",
    }
    done = subprocess.run(
        _mlcycle("import", "wikidetox", *map(str, dataset)),
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "no Kafka broker" in done.stderr
    assert "Traceback" not in done.stderr


def test_import_of_an_unknown_format_names_the_known_ones(tmp_path: Path) -> None:
    done = subprocess.run(
        _mlcycle("import", "parquet", str(tmp_path)),
        env=_isolated_env(tmp_path / "data"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "wikidetox" in done.stderr
    assert "Traceback" not in done.stderr


def test_import_of_a_missing_file_says_so_before_needing_a_broker(tmp_path: Path) -> None:
    env = {
        **_isolated_env(tmp_path / "data"),
        "MLCYCLE_KAFKA_BOOTSTRAP": f"127.0.0.1:{free_port()}",
    }
    done = subprocess.run(
        _mlcycle("import", "davidson", str(tmp_path / "missing.csv")),
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "no such file or folder" in done.stderr


def test_a_sigkilled_label_run_resumes_without_duplicate_labels(tmp_path: Path) -> None:
    """`mlcycle label` is SIGKILLed mid-write; `--resume` finishes it with one label per item."""
    n_items, chunk = 3000, 50
    files = write_wikidetox_files(tmp_path / "big", n_items, votes_per_comment=3)
    env = {**_isolated_env(tmp_path / "data"), "MLCYCLE_LABEL_CHUNK_ITEMS": str(chunk)}
    stack = subprocess.Popen(
        _mlcycle("up", "--no-redis"), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT
    )
    clients = _clients(env)
    labeler = clients.labeler
    try:

        def labeler_answers() -> bool:
            labeler.runs()
            return True

        _wait_until(labeler_answers, 90)
        imported = subprocess.run(
            _mlcycle("import", "wikidetox", *map(str, files)), env=env, capture_output=True
        )
        assert imported.returncode == 0, imported.stderr
        _wait_until(lambda: clients.collector.stats().count("votes") == 3 * n_items, 60)

        label = subprocess.Popen(
            _mlcycle("label", "--strategy", "majority", "--lfs", "none"),
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

        def some_chunks_written() -> bool:
            runs = labeler.runs()
            return bool(runs) and (runs[0].progress.chunks_done or 0) >= 5

        _wait_until(some_chunks_written, 60, interval_s=0.02)
        label.send_signal(signal.SIGKILL)
        label.wait(10)
        run = labeler.runs()[0]
        assert run.status == "running"
        total = run.progress.chunks_total
        assert total is not None and run.progress.chunks_done is not None
        assert run.progress.chunks_done < total, "the run finished before the kill"

        resumed = subprocess.run(
            _mlcycle("label", "--resume", run.id), env=env, capture_output=True, text=True
        )
        assert resumed.returncode == 0, resumed.stdout + resumed.stderr
        finished = labeler.run(run.id)
        assert finished.status == "succeeded"
        assert finished.progress.chunks_done == total
        broker = load_settings(kafka_bootstrap=f"127.0.0.1:{env['MLCYCLE_EMBEDDED_KAFKA_PORT']}")
        events = [
            event
            for record in read_all(broker, "labels", n_items, timeout_s=30)
            if (event := orjson.loads(record.value))["run"] == run.id
        ]
    finally:
        clients.close()
        stack.send_signal(signal.SIGINT)
        stack.wait(60)

    with sqlite3.connect(tmp_path / "data" / "store.sqlite3") as db:
        rows, distinct = db.execute(
            "SELECT count(*), count(DISTINCT json_extract(doc, '$.item_id')) FROM labels "
            "WHERE json_extract(doc, '$.run') = ?",
            (run.id,),
        ).fetchone()
    assert rows == distinct == n_items
    # Events: every item at least once; repeats only from the one chunk caught halfway.
    assert len({e["item_id"] for e in events}) == n_items
    assert len(events) <= n_items + chunk


def _wait_until(condition, timeout_s: float, interval_s: float = 0.3) -> None:
    """Wait for ``condition``; a service still starting (Unavailable) counts as not yet."""
    try:
        poll_until(
            condition,
            timeout=timeout_s,
            interval=interval_s,
            what="condition not met",
            ignore=(Unavailable,),
        )
    except DeadlinePassed as exc:
        pytest.fail(exc.message)
