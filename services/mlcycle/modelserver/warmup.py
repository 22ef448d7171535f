"""Model warm-up: replay the requests a SavedModel ships before its version is served.

TF Serving's convention: ``<version>/assets.extra/tf_serving_warmup_requests``,
a TFRecord file of ``PredictionLog`` records (a Predict, Classify or Regress
request each, at most 1000). Each is run against the freshly loaded version
before it is marked AVAILABLE, so the first real request does not pay for
lazy initialisation. A failing record fails the load, as in TF Serving: a
model that cannot answer its own warm-up requests is not served.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from tensorflow_serving.apis import prediction_log_pb2

from mlcycle.common.errors import InvalidInput, MlcycleError
from mlcycle.modelserver import prediction
from mlcycle.modelserver.servable import Servable

log = logging.getLogger(__name__)

WARMUP_FILE = Path("assets.extra") / "tf_serving_warmup_requests"
MAX_WARMUP_RECORDS = 1000


def warmup_path(version_dir: Path) -> Path:
    """Where a version's warm-up requests are, if it has any."""
    return version_dir / WARMUP_FILE


def read_warmup_requests(path: Path) -> list[prediction_log_pb2.PredictionLog]:
    """The PredictionLog records of a warm-up file (TFRecord)."""
    import tensorflow as tf

    records: list[prediction_log_pb2.PredictionLog] = []
    try:
        for raw in tf.data.TFRecordDataset(str(path)).as_numpy_iterator():
            if len(records) == MAX_WARMUP_RECORDS:
                raise InvalidInput(
                    f"{path}: more than {MAX_WARMUP_RECORDS} warm-up records; TF Serving's limit"
                )
            records.append(prediction_log_pb2.PredictionLog.FromString(raw))
    except tf.errors.OpError as exc:
        raise InvalidInput(f"{path}: not a TFRecord file of PredictionLog: {exc.message}") from None
    except ValueError as exc:  # a record that is not a PredictionLog
        raise InvalidInput(f"{path}: a record is not a PredictionLog: {exc}") from None
    return records


def warm_up(servable: Servable, run: prediction.Runner = prediction.direct) -> int:
    """Replay the version's warm-up requests; returns how many ran (0 without a file)."""
    path = warmup_path(servable.path)
    if not path.is_file():
        return 0
    started = time.perf_counter()
    records = read_warmup_requests(path)
    for position, record in enumerate(records):
        try:
            _replay(servable, record, run)
        except MlcycleError as exc:
            raise InvalidInput(f"{path}: warm-up record {position} failed: {exc.message}") from None
    log.info(
        "warmed up %s version %d with %d requests in %.2f s",
        servable.name,
        servable.version,
        len(records),
        time.perf_counter() - started,
    )
    return len(records)


def _replay(
    servable: Servable, record: prediction_log_pb2.PredictionLog, run: prediction.Runner
) -> None:
    kind = record.WhichOneof("log_type")
    if kind == "predict_log":
        prediction.predict(servable, record.predict_log.request, run)
    elif kind == "classify_log":
        prediction.classify(servable, record.classify_log.request, run)
    elif kind == "regress_log":
        prediction.regress(servable, record.regress_log.request, run)
    else:
        raise InvalidInput(f"warm-up records of type {kind or 'none'} are not supported")
