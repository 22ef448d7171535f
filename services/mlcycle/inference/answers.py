"""One prediction per scored row, and the metrics of an answered request.

Shared by the predictor (the stream's path), the API's batcher and the routing of a
rollout, which answers each group of instances with its own version.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from mlcycle.inference.metrics import for_version
from mlcycle.inference.schemas import PredictionRow
from mlcycle.inference.versions import ModelVersion

Source = Literal["api", "stream"]


def format_predictions(model: ModelVersion, probabilities: np.ndarray) -> list[PredictionRow]:
    """One prediction object per row: score, label, threshold, versions (+ per-class for K > 2)."""
    version, transform = model.version, model.transform_version
    classes = model.classes
    if model.binary:
        scores = probabilities[:, 1]
        threshold = model.threshold
        positive = (scores >= threshold).tolist()
        return [
            {
                "score": score,
                "label": classes[1] if is_positive else classes[0],
                "threshold": threshold,
                "model_version": version,
                "transform_version": transform,
            }
            for score, is_positive in zip(scores.tolist(), positive, strict=True)
        ]
    top = probabilities.argmax(axis=1)
    scores = probabilities[np.arange(len(top)), top]
    return [
        {
            "score": score,
            "label": classes[k],
            "threshold": None,
            "model_version": version,
            "transform_version": transform,
            "probabilities": dict(zip(classes, row, strict=True)),
        }
        for score, k, row in zip(scores.tolist(), top.tolist(), probabilities.tolist(), strict=True)
    ]


def observe_request(
    model: ModelVersion, predictions: list[PredictionRow], source: Source, seconds: float
) -> None:
    """Count one answered request of ``source`` and its predictions under the model version."""
    metrics = for_version(model.version)
    if source == "api":
        metrics.requests_api.inc()
        metrics.request_api_seconds.observe(seconds)
    else:
        metrics.requests_stream.inc()
        metrics.request_stream_seconds.observe(seconds)
    labels: dict[str, int] = {}
    if model.live is not None:  # binary: the score is the positive class's probability
        model.live.scores.extend([prediction["score"] for prediction in predictions])
    for prediction in predictions:
        metrics.scores.observe(prediction["score"])
        labels[prediction["label"]] = labels.get(prediction["label"], 0) + 1
    for label, count in labels.items():
        metrics.predicted(label).inc(count)
