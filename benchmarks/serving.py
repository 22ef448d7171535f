"""Serving latency ladder: the same model and texts from an in-process call up to the REST API.

Setup: Davidson et al.'s tweets (../shared/data, read with the project's
importer), binary task, the labeler's 80/10/10 hash split. A transform is
fitted on the train split (the default ``words+chars`` variant) and a model
with the default hyper-parameters trained for two epochs and blended with its
linear companion as a job does, then exported the way the trainer exports
(SavedModel, warm-up requests, metadata.json) as
version 1 and pinned in ``models.config``. The model server
(``mlcycle modelserver`` with TF Serving's flags) and the inference service
(``mlcycle inference api``) run as their own processes on the embedded Redis,
started like ``mlcycle up`` starts them; the load comes from this process.

Rungs, each on single-comment requests drawn from the test split's texts:
1. ``in_process``: featurize with the transform and call the SavedModel's
   ``serving_default`` in this process: the physical limit here;
2. ``grpc_direct``: featurize here, then TF Serving's gRPC ``Predict``;
3. ``rest_direct``: featurize here, then TF Serving's REST ``:predict`` (row format);
4. ``predict_miss``: ``POST /v1/predict`` with a text never seen before
   (a counter is appended), so the cache misses and the service featurizes and calls gRPC;
5. ``predict_hit``: ``POST /v1/predict`` with texts already scored, so Redis answers;
6. ``healthz``: ``GET /healthz`` of the inference service, the floor of its HTTP stack.

For each rung, clients send requests back to back for a fixed time at 1, 8 and 64
concurrent clients (asyncio tasks over aiohttp and grpc.aio on uvloop, as the
services run; threads for the in-process rung). The load generator's heap is
frozen after setup, so its own garbage collections stay out of the figures.
Latencies p50/p95/p99 are those of the 8-client run (what the targets are about);
throughput is completed requests per second at each concurrency. Batched: ``POST
/v1/predict`` with 64 unseen comments per request at 8 clients, in comments per
second. Each figure is the median of ``--repeats`` runs. Ratios are each rung's
p50 over the in-process p50. The load generator shares the 2 cores with both
servers, so every HTTP and gRPC figure pays for it too.

The cost of API keys: a second model server and inference service run beside the
first with keys on (a named ``predict`` key for the load, the stack's own service
key on every ``Predict``), serving the same model. ``predict_miss`` is driven
against both in turn, at each concurrency and repeat, the order alternating so
drift hits both alike; the ratio is keys-on over keys-off throughput at the best
concurrency of each.

Targets: ``predict_miss`` p50 ≤ 5 ms and p99 ≤ 20 ms at 8 clients, ≥ 500
requests/s single-comment, ≥ 5,000 comments/s batched, ``predict_hit`` p50 ≤ 2 ms,
keys-on ``predict_miss`` throughput ≥ 0.97 of keys-off.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import logging
import secrets
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import numpy as np
import orjson
import uvloop
from _harness import serving_settings
from quality import SPLITS, binary_task, load_davidson
from rich.console import Console
from rich.table import Table

from mlcycle.clients import ServiceClients, clients_for
from mlcycle.clients.base import HEALTHZ
from mlcycle.clients.inference import PREDICT_PATH, predict_body
from mlcycle.common.heap import freeze_heap
from mlcycle.common.settings import Settings
from mlcycle.featurization.transform import Transform
from mlcycle.featurization.transform import fit as fit_transform
from mlcycle.local.loadtest import Run, drive
from mlcycle.local.pipeline import wait_until_served
from mlcycle.local.stack import LocalStack

DAVIDSON = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
DAVIDSON = DAVIDSON / "davidson_hate_offensive" / "labeled_data.csv.gz"
CONCURRENCY = (1, 8, 64)
LATENCY_AT = 8
BATCH = 64
RUNGS = ("in_process", "grpc_direct", "rest_direct", "predict_miss", "predict_hit", "healthz")
TARGETS = {
    "predict_miss_p50_ms": 5.0,
    "predict_miss_p99_ms": 20.0,
    "predict_miss_rps": 500.0,
    "batched_comments_per_s": 5000.0,
    "predict_hit_p50_ms": 2.0,
    "keys_on_over_off": 0.97,
}


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# -- the model ----------------------------------------------------------------------------------


def build_model(
    settings: Settings,
    texts: dict[str, list[str]],
    labels: dict[str, Any],
    *,
    version: int = 1,
    epochs: int = 2,
    pin: bool = True,
    policy: Any = None,
) -> Built:
    """Fit a transform, train, export ``version`` as the trainer does; ``pin`` it in models.config.

    The transform is fitted the same way each time, so every version shares it. With a
    ``policy`` (a job's ``ThresholdPolicy``) the scores are calibrated and moved to its
    traffic and the threshold chosen, as a job's ``threshold`` stage does; without one the
    model is served as fitted, at 0.5.
    """
    from mlcycle.contracts.serving import serving_config_path
    from mlcycle.contracts.training import TrialParams
    from mlcycle.trainer.config import variant_config
    from mlcycle.trainer.data import SplitData, TrainingData
    from mlcycle.trainer.export import (
        export_saved_model,
        serving_dir,
        write_metadata,
        write_warmup_requests,
    )
    from mlcycle.trainer.fit import fit
    from mlcycle.trainer.linear import blend_with_linear
    from mlcycle.trainer.serving_config import render_serving_config
    from mlcycle.trainer.thresholds import choose_threshold, served_threshold

    params = TrialParams(epochs=epochs)
    config = variant_config(params.features, None)
    transform = fit_transform(texts["train"], [{} for _ in texts["train"]], config)
    transform.save(settings.featurizer.artifacts_dir)

    def split(name: str) -> SplitData:
        batch = transform.apply(texts[name], [{} for _ in texts[name]])
        ids = np.array([f"{name}-{i}" for i in range(len(texts[name]))])
        return SplitData.from_batch(batch, labels[name], item_ids=ids, n_classes=2)

    data = TrainingData(
        train=split("train"),
        dev=split("dev"),
        test=split("test"),
        n_classes=2,
        transform=transform.version,
        label_run="bench",
        task="toxicity",
    )
    result = blend_with_linear(fit(params, data), data, metric="roc_auc")
    if policy is not None:
        result = choose_threshold(result, data, policy)
    threshold = served_threshold(result)
    folder = serving_dir(settings.trainer.models_dir, settings.trainer.model_name, version)
    export_saved_model(result.model, folder)
    sample = data.dev.flat_rows(np.arange(64)).padded()
    write_warmup_requests(folder, settings.trainer.model_name, *sample)
    write_metadata(
        folder,
        {
            "name": settings.trainer.model_name,
            "version": version,
            "task": "toxicity",
            "transform": transform.version,
            "classes": ["0", "1"],
            "threshold": threshold,
            "input_dim": transform.dim,
        },
    )
    if pin:
        config_text = render_serving_config(
            {settings.trainer.model_name: version}, str(settings.trainer.models_dir)
        )
        serving_config_path(settings.trainer.models_dir).write_text(config_text, encoding="utf-8")
    blend = "blended with its linear part" if (result.blend or {}).get("used") else "alone"
    log(
        f"model v{version}: dev ROC-AUC {result.dev_metric:.4f} after {result.epochs_run} "
        f"epochs, {blend}"
    )
    return Built(transform, data, folder, threshold, (result.threshold or {}).get("score_prior"))


@dataclass(frozen=True)
class Built:
    """What :func:`build_model` exported: the transform, the featurized splits, the version's
    folder, its served threshold and the prior its scores are under (None: as fitted)."""

    transform: Transform
    data: Any  # TrainingData (the trainer is imported lazily)
    folder: Path
    threshold: float
    score_prior: float | None


# -- request payloads -----------------------------------------------------------------------------


def padded(transform: Transform, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """The signature's inputs for ``texts``: (indices int64, values float32), zero-padded."""
    batch = transform.apply(texts)
    lengths = np.diff(batch.indptr)
    width = max(1, int(lengths.max(initial=0)))
    indices = np.zeros((len(texts), width), np.int64)
    values = np.zeros((len(texts), width), np.float32)
    for row, (start, end) in enumerate(itertools.pairwise(batch.indptr)):
        indices[row, : end - start] = batch.indices[start:end]
        values[row, : end - start] = batch.values[start:end]
    return indices, values


def predict_request(settings: Settings, indices: np.ndarray, values: np.ndarray) -> Any:
    """A TF Serving ``PredictRequest`` with the two inputs as raw tensor content."""
    from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2
    from tensorflow_serving.apis import predict_pb2

    request = predict_pb2.PredictRequest()
    request.model_spec.name = settings.trainer.model_name
    request.model_spec.signature_name = "serving_default"
    for name, array, dtype in (
        ("indices", indices, types_pb2.DT_INT64),
        ("values", values, types_pb2.DT_FLOAT),
    ):
        shape = tensor_shape_pb2.TensorShapeProto(
            dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=n) for n in array.shape]
        )
        request.inputs[name].CopyFrom(
            tensor_pb2.TensorProto(dtype=dtype, tensor_shape=shape, tensor_content=array.tobytes())
        )
    return request


# -- load ---------------------------------------------------------------------------------------


def drive_threads(call: Callable[[int], None], clients: int, seconds: float) -> Run:
    """The in-process rung: ``clients`` threads calling back to back for ``seconds``."""
    latencies: list[float] = []
    lock = threading.Lock()
    counter = itertools.count()
    deadline = time.perf_counter() + seconds

    def client() -> None:
        mine = []
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            call(next(counter))
            mine.append((time.perf_counter() - started) * 1000)
        with lock:
            latencies.extend(mine)

    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        for future in [pool.submit(client) for _ in range(clients)]:
            future.result()
    return Run(latencies, len(latencies) / (time.perf_counter() - started))


class Ladder:
    """The rungs' calls, sharing one HTTP session, one gRPC channel and the texts.

    The HTTP rungs run on aiohttp for speed; their URLs and key come from the clients.
    """

    def __init__(
        self, settings: Settings, clients: ServiceClients, transform: Transform, texts: list[str]
    ) -> None:
        self.settings = settings
        self.transform = transform
        self.texts = texts
        self.hot = texts[:200]
        self.predict_url = clients.inference.url(PREDICT_PATH)
        self.healthz_url = clients.inference.url(HEALTHZ)
        self.rest_url = clients.modelserver.predict_url
        self.headers = {"Content-Type": "application/json", **clients.inference.headers}
        self.session: aiohttp.ClientSession | None = None
        self.channel: grpc.aio.Channel | None = None
        self.predict: Any = None
        self.signature: Any = None
        self.miss_counter = itertools.count()

    async def open(self) -> None:
        from tensorflow_serving.apis import prediction_service_pb2_grpc

        connector = aiohttp.TCPConnector(limit=0, force_close=False)
        self.session = aiohttp.ClientSession(
            connector=connector,
            cookie_jar=aiohttp.DummyCookieJar(),
            timeout=aiohttp.ClientTimeout(total=None),
            auto_decompress=False,
            skip_auto_headers=("User-Agent", "Accept-Encoding"),
        )
        self.channel = grpc.aio.insecure_channel(self.settings.modelserver.target)
        self.predict = prediction_service_pb2_grpc.PredictionServiceStub(self.channel).Predict

    async def close(self) -> None:
        if self.session is not None:
            await self.session.close()
        if self.channel is not None:
            await self.channel.close()

    def load_in_process(self) -> None:
        import tensorflow as tf

        folder = self.settings.trainer.models_dir / self.settings.trainer.model_name / "1"
        self.signature = tf.saved_model.load(str(folder)).signatures["serving_default"]

    def text(self, i: int) -> str:
        return self.texts[i % len(self.texts)]

    def unseen(self, i: int) -> str:
        return f"{self.text(i)} #{next(self.miss_counter)}"

    # each call scores one comment and checks that an answer came back

    def in_process(self, i: int) -> None:
        import tensorflow as tf

        indices, values = padded(self.transform, [self.text(i)])
        out = self.signature(indices=tf.constant(indices), values=tf.constant(values))
        assert out["scores"].shape[0] == 1

    async def grpc_direct(self, i: int) -> None:
        request = predict_request(self.settings, *padded(self.transform, [self.text(i)]))
        response = await self.predict(request, timeout=10)
        assert "scores" in response.outputs

    async def rest_direct(self, i: int) -> None:
        indices, values = padded(self.transform, [self.text(i)])
        body = {"instances": [{"indices": indices[0].tolist(), "values": values[0].tolist()}]}
        await self._post(self.rest_url, body, "predictions")

    async def predict_miss(self, i: int) -> None:
        await self._post(self.predict_url, predict_body([self.unseen(i)]))

    async def predict_hit(self, i: int) -> None:
        await self._post(self.predict_url, predict_body([self.hot[i % len(self.hot)]]))

    async def healthz(self, i: int) -> None:
        assert self.session is not None
        async with self.session.get(self.healthz_url) as response:
            assert response.status == 200, await response.text()
            await response.read()

    async def predict_batch(self, i: int) -> None:
        texts = [self.unseen(i * BATCH + k) for k in range(BATCH)]
        await self._post(self.predict_url, predict_body(texts))

    async def _post(self, url: str, body: dict, key: str = "predictions") -> None:
        assert self.session is not None
        data = orjson.dumps(body)
        async with self.session.post(url, data=data, headers=self.headers) as response:
            payload = await response.read()
            assert response.status == 200, payload[:300]
            assert key.encode() in payload


async def measure_rungs(ladder: Ladder, seconds: float, repeats: int) -> dict[str, dict]:
    """Every rung at every concurrency, ``repeats`` times; medians per figure."""
    await ladder.open()
    try:
        # The hit rung's texts are scored once, so Redis has them.
        for i in range(len(ladder.hot)):
            await ladder.predict_hit(i)
        results: dict[str, dict] = {}
        for rung in RUNGS:
            runs: dict[int, list[Run]] = {c: [] for c in CONCURRENCY}
            for _ in range(repeats):
                for clients in CONCURRENCY:
                    if rung == "in_process":
                        run = await asyncio.to_thread(
                            drive_threads, ladder.in_process, clients, seconds
                        )
                    else:
                        run = await drive(getattr(ladder, rung), clients, seconds)
                    runs[clients].append(run)
            results[rung] = summarize(runs)
            log(f"  {rung}: {results[rung]}")
        batched = [await drive(ladder.predict_batch, LATENCY_AT, seconds) for _ in range(repeats)]
        results["batched"] = {
            "comments_per_s": statistics.median(r.rps * BATCH for r in batched),
            "p50_ms": statistics.median(r.percentile(0.5) for r in batched),
        }
        return results
    finally:
        await ladder.close()


async def measure_keys_cost(
    plain: Ladder, keyed: Ladder, seconds: float, repeats: int
) -> dict[str, Any]:
    """``predict_miss`` throughput without and with keys, alternating; medians and ratios."""
    await plain.open()
    await keyed.open()
    try:
        for ladder in (plain, keyed):  # the keyed stack has not been called yet
            await drive(ladder.predict_miss, LATENCY_AT, 1.0)
        rps: dict[str, dict[int, list[float]]] = {
            side: {c: [] for c in CONCURRENCY} for side in ("off", "on")
        }
        for repeat in range(repeats):
            for clients in CONCURRENCY:
                sides = [("off", plain), ("on", keyed)]
                for side, ladder in sides if repeat % 2 == 0 else sides[::-1]:
                    run = await drive(ladder.predict_miss, clients, seconds)
                    rps[side][clients].append(run.rps)
        medians = {
            side: {str(c): statistics.median(v) for c, v in runs.items()}
            for side, runs in rps.items()
        }
        log(f"  keys: {medians}")
        return {
            "keys_off_rps": medians["off"],
            "keys_on_rps": medians["on"],
            "ratio": {str(c): medians["on"][str(c)] / medians["off"][str(c)] for c in CONCURRENCY},
            "ratio_best": max(medians["on"].values()) / max(medians["off"].values()),
        }
    finally:
        await plain.close()
        await keyed.close()


def keys_table(keys: dict[str, Any]) -> Table:
    table = Table(title="predict_miss throughput, keys off and on (req/s, medians)")
    for column in ("keys", *(f"@{c}" for c in CONCURRENCY), "best"):
        table.add_column(column, justify="left" if column == "keys" else "right")
    for side in ("off", "on"):
        figures = keys[f"keys_{side}_rps"]
        table.add_row(
            side,
            *(f"{figures[str(c)]:,.0f}" for c in CONCURRENCY),
            f"{max(figures.values()):,.0f}",
        )
    table.add_row(
        "on / off",
        *(f"{keys['ratio'][str(c)]:.3f}" for c in CONCURRENCY),
        f"{keys['ratio_best']:.3f}",
    )
    return table


def summarize(runs: dict[int, list[Run]]) -> dict[str, Any]:
    at = runs[LATENCY_AT]
    return {
        "p50_ms": statistics.median(r.percentile(0.50) for r in at),
        "p95_ms": statistics.median(r.percentile(0.95) for r in at),
        "p99_ms": statistics.median(r.percentile(0.99) for r in at),
        "rps": {str(c): statistics.median(r.rps for r in rs) for c, rs in runs.items()},
    }


# -- report ---------------------------------------------------------------------------------------


def ladder_table(results: dict[str, dict]) -> Table:
    base = results["in_process"]["p50_ms"]
    table = Table(title=f"single-comment requests (latency at {LATENCY_AT} clients, medians)")
    for column in (
        "rung",
        "p50 ms",
        "p95 ms",
        "p99 ms",
        "req/s @1",
        "@8",
        "@64",
        "p50 / in_process",
    ):
        table.add_column(column, justify="left" if column == "rung" else "right")
    for rung in RUNGS:
        r = results[rung]
        table.add_row(
            rung,
            f"{r['p50_ms']:.2f}",
            f"{r['p95_ms']:.2f}",
            f"{r['p99_ms']:.2f}",
            *(f"{r['rps'][str(c)]:,.0f}" for c in CONCURRENCY),
            f"{r['p50_ms'] / base:.2f}x",
        )
    return table


def target_lines(results: dict[str, dict], keys: dict[str, Any]) -> list[str]:
    miss, hit = results["predict_miss"], results["predict_hit"]
    best_rps = max(miss["rps"].values())
    checks = [
        ("predict_miss p50 at 8 clients", miss["p50_ms"], "<=", TARGETS["predict_miss_p50_ms"]),
        ("predict_miss p99 at 8 clients", miss["p99_ms"], "<=", TARGETS["predict_miss_p99_ms"]),
        ("single-comment requests/s (best)", best_rps, ">=", TARGETS["predict_miss_rps"]),
        (
            "batched comments/s",
            results["batched"]["comments_per_s"],
            ">=",
            TARGETS["batched_comments_per_s"],
        ),
        ("predict_hit p50 at 8 clients", hit["p50_ms"], "<=", TARGETS["predict_hit_p50_ms"]),
        (
            "keys on / off predict_miss req/s (best)",
            keys["ratio_best"],
            ">=",
            TARGETS["keys_on_over_off"],
        ),
    ]
    lines = []
    for name, value, op, target in checks:
        met = value <= target if op == "<=" else value >= target
        shown = f"{target:,.2f}" if target < 10 else f"{target:,.0f}"
        lines.append(f"{name}: {value:,.2f} (target {op} {shown}) {'met' if met else 'MISSED'}")
    return lines


# -- main ---------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DAVIDSON)
    parser.add_argument("--seconds", type=float, default=4.0, help="per rung and concurrency")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if not args.data.is_file():
        log(f"no Davidson data at {args.data}: see ../shared/data/*/SOURCE.md")
        return 2

    corpus = load_davidson(args.data)
    task = binary_task(corpus)
    rows = {s: corpus.rows(s) for s in SPLITS}
    texts = {s: corpus.texts_of(rows[s]) for s in SPLITS}
    labels = {s: task.labels[rows[s]] for s in SPLITS}
    with tempfile.TemporaryDirectory(prefix="mlcycle-bench-serving-") as tmp:
        settings = serving_settings(Path(tmp))
        started = time.perf_counter()
        build_model(settings, texts, labels)
        log(f"model built in {time.perf_counter() - started:.0f} s")
        secret = secrets.token_urlsafe(24)
        keyed_settings = serving_settings(
            Path(tmp) / "keyed",
            models_dir=settings.trainer.models_dir,
            artifacts_dir=settings.featurizer.artifacts_dir,
            api_keys=(f"bench:predict:{secret}",),
        )
        services = ("modelserver", "inference-api")
        stack = LocalStack(settings, services=services, log_dir=Path(tmp) / "logs")
        keyed_stack = LocalStack(keyed_settings, services=services, log_dir=Path(tmp) / "keyed")
        try:
            resolved = stack.start()
            keyed_resolved = keyed_stack.start()
            with clients_for(resolved) as clients:
                wait_until_served(clients, 1)
            with clients_for(keyed_resolved, api_key=secret) as keyed_clients:
                wait_until_served(keyed_clients, 1)
            transform = Transform.load(
                settings.featurizer.artifacts_dir, model_transform_version(settings)
            )
            ladder = Ladder(resolved, clients, transform, texts["test"])
            keyed_ladder = Ladder(keyed_resolved, keyed_clients, transform, texts["test"])
            ladder.load_in_process()
            # This process holds TensorFlow, the corpus and a trained model; freezing
            # them keeps its collections, and their pauses, out of the figures.
            freeze_heap()
            results = uvloop.run(measure_rungs(ladder, args.seconds, args.repeats))
            keys = uvloop.run(measure_keys_cost(ladder, keyed_ladder, args.seconds, args.repeats))
        finally:
            keyed_stack.stop()
            stack.stop()

    console = Console()
    console.print(ladder_table(results))
    console.print(
        f"batched: {BATCH} comments per POST /v1/predict at {LATENCY_AT} clients: "
        f"{results['batched']['comments_per_s']:,.0f} comments/s "
        f"(p50 {results['batched']['p50_ms']:.1f} ms per request)"
    )
    console.print(keys_table(keys))
    for line in target_lines(results, keys):
        console.print(line)
    rungs = {rung: results[rung] for rung in RUNGS}
    print(
        orjson.dumps(
            {
                "benchmark": "serving",
                "rungs": rungs,
                "batched_comments_per_s": results["batched"]["comments_per_s"],
                "keys": keys,
            }
        ).decode()
    )
    return 0


def model_transform_version(settings: Settings) -> str:
    """The transform version the exported model names in its metadata.json."""
    folder = settings.trainer.models_dir / settings.trainer.model_name / "1"
    return str(orjson.loads((folder / "metadata.json").read_bytes())["transform"])


if __name__ == "__main__":
    sys.exit(main())
