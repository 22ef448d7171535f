"""The inference service's Prometheus metrics, labeled by the model version that answered.

The labeled children of one version are resolved once (:func:`for_version`) and
reused, so the hot path only increments and observes.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from prometheus_client import Counter, Gauge, Histogram

# From a quarter of a millisecond: a cache hit takes about that, a gRPC round trip a few.
LATENCY_BUCKETS = (
    0.00025, 0.0005, 0.00075, 0.001, 0.0015, 0.002, 0.003, 0.004, 0.005, 0.0075,
    0.01, 0.015, 0.02, 0.03, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
)  # fmt: skip
SCORE_BUCKETS = tuple(round(0.05 * i, 2) for i in range(1, 21))

REQUESTS = Counter(
    "mlcycle_inference_requests_total",
    "Prediction requests answered (a stream micro-batch counts as one), per model version",
    ["model_version", "source"],
)
PREDICTIONS = Counter(
    "mlcycle_inference_predictions_total",
    "Texts scored, per model version and predicted label",
    ["model_version", "label"],
)
REQUEST_SECONDS = Histogram(
    "mlcycle_inference_request_seconds",
    "Time to answer a whole prediction request",
    ["model_version", "source"],
    buckets=LATENCY_BUCKETS,
)
FEATURIZE_SECONDS = Histogram(
    "mlcycle_inference_featurize_seconds",
    "Time to featurize a request's cache misses with the model's transform",
    ["model_version"],
    buckets=LATENCY_BUCKETS,
)
PREDICT_RPC_SECONDS = Histogram(
    "mlcycle_inference_predict_rpc_seconds",
    "Time of one gRPC Predict call to the model server (retries included)",
    ["model_version"],
    buckets=LATENCY_BUCKETS,
)
CACHE_HITS = Counter(
    "mlcycle_inference_cache_hits_total",
    "Texts answered from the score cache",
    ["model_version"],
)
CACHE_MISSES = Counter(
    "mlcycle_inference_cache_misses_total",
    "Texts not in the score cache (scored by the model server)",
    ["model_version"],
)
SCORES = Histogram(
    "mlcycle_inference_score",
    "Distribution of the scores answered (a cheap drift signal)",
    ["model_version"],
    buckets=SCORE_BUCKETS,
)
MODEL_SERVER_ERRORS = Counter(
    "mlcycle_inference_model_server_errors_total",
    "Failed gRPC calls to the model server, by status code",
    ["code"],
)
CACHE_ERRORS = Counter(
    "mlcycle_inference_cache_errors_total",
    "Redis operations that failed or timed out (predictions went on uncached)",
    ["operation"],
)
SERVING_VERSION = Gauge(
    "mlcycle_inference_serving_version",
    "The model version predictions are pinned to (0 when none is servable)",
    ["model"],
)
LIVE_POSITIVE_RATE = Gauge(
    "mlcycle_inference_live_positive_rate",
    "EM estimate of the positive rate of the recent served traffic (NaN: not known yet)",
    ["model_version"],
)

# Rollouts: which version answered each instance, and the scoring off the answer's path.
ROUTED = Counter(
    "mlcycle_inference_routed_instances_total",
    "Instances answered while a rollout was routed, per answering version and its role",
    ["model_version", "role"],
)
CANARY_FALLBACKS = Counter(
    "mlcycle_inference_canary_fallbacks_total",
    "Instances the canary failed to score, answered by the stable version instead",
    ["model_version"],
)
OFFPATH = Counter(
    "mlcycle_inference_offpath_instances_total",
    "Instances scored off the answer's path (by the shadow, or by production beside a "
    "canary), per role and outcome: scored, skipped (queue full) or failed",
    ["role", "outcome"],
)
OFFPATH_QUEUED = Gauge(
    "mlcycle_inference_offpath_queued_instances",
    "Instances waiting to be scored off the answer's path",
)
EVIDENCE_FLUSH_ERRORS = Counter(
    "mlcycle_inference_evidence_flush_errors_total",
    "Rollout evidence adds to the shared store that failed (kept for the next flush)",
)


@dataclass(frozen=True)
class VersionMetrics:
    """The metric children of one model version."""

    requests_api: Counter
    requests_stream: Counter
    request_api_seconds: Histogram
    request_stream_seconds: Histogram
    featurize_seconds: Histogram
    rpc_seconds: Histogram
    cache_hits: Counter
    cache_misses: Counter
    scores: Histogram
    version: str

    def predicted(self, label: str) -> Counter:
        """The prediction counter of ``label``."""
        return _predictions(self.version, label)


@lru_cache(maxsize=64)
def for_version(version: int) -> VersionMetrics:
    """The (cached) metric children labeled with ``version``."""
    v = str(version)
    return VersionMetrics(
        requests_api=REQUESTS.labels(v, "api"),
        requests_stream=REQUESTS.labels(v, "stream"),
        request_api_seconds=REQUEST_SECONDS.labels(v, "api"),
        request_stream_seconds=REQUEST_SECONDS.labels(v, "stream"),
        featurize_seconds=FEATURIZE_SECONDS.labels(v),
        rpc_seconds=PREDICT_RPC_SECONDS.labels(v),
        cache_hits=CACHE_HITS.labels(v),
        cache_misses=CACHE_MISSES.labels(v),
        scores=SCORES.labels(v),
        version=v,
    )


@lru_cache(maxsize=512)
def _predictions(version: str, label: str) -> Counter:
    return PREDICTIONS.labels(version, label)


# The live monitor's view of each model version's signals, shared by every replica (read
# from the aggregate), so max by (model_version, signal) is right whichever one was scraped.
MONITOR_STATISTIC = Gauge(
    "mlcycle_monitor_statistic",
    "The signal's statistic (effect size) in the last window judged (NaN: none)",
    ["model_version", "signal"],
)
MONITOR_THRESHOLD = Gauge(
    "mlcycle_monitor_threshold",
    "The statistic above which the signal enters alarm, for the last window's size",
    ["model_version", "signal"],
)
MONITOR_WINDOW_RECORDS = Gauge(
    "mlcycle_monitor_window_records",
    "Records in the last window judged, across every process",
    ["model_version", "signal"],
)
MONITOR_ALARM = Gauge(
    "mlcycle_monitor_alarm",
    "1 while the signal is in alarm, else 0",
    ["model_version", "signal"],
)
MONITOR_GAUGES = (MONITOR_STATISTIC, MONITOR_THRESHOLD, MONITOR_WINDOW_RECORDS, MONITOR_ALARM)
# Quality at the served threshold from moderators' decisions (realized) and from the scores
# alone (estimated), over the latest quality window that has decisions (else, estimated
# only, the window filling); figure is precision, recall, f1 or roc_auc.
QUALITY_REALIZED = Gauge(
    "mlcycle_quality_realized",
    "Quality realized on moderators' decisions in the latest judged quality window (NaN: none)",
    ["model_version", "figure"],
)
QUALITY_ESTIMATED = Gauge(
    "mlcycle_quality_estimated",
    "Quality estimated from the scores alone (CBPE) over the same window (NaN: none)",
    ["model_version", "figure"],
)
QUALITY_FIGURES = ("precision", "recall", "f1", "roc_auc")
MONITOR_SKIPPED = Counter(
    "mlcycle_monitor_skipped_records_total",
    "Served records the monitor skipped because its queue was full (answers never wait)",
    ["model_version"],
)
