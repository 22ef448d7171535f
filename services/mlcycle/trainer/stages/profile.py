"""The reference profile written at export: the dev split as the exported model saw it.

The monitor compares live traffic with it (:mod:`mlcycle.monitoring`), so it is
built from what serving will see and answer: the dev comments' texts and
metadata as stored, and the exported model's own dev scores (after the
threshold stage moved them to the deployment prior) with the served threshold.
``metadata.json`` records it by content hash, so the lineage says which
profile a version was judged against.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TypedDict

from mlcycle.contracts.monitoring import PROFILE_FILE
from mlcycle.featurization.transform import Transform
from mlcycle.monitoring.detector import available_signals
from mlcycle.monitoring.profile import build_profile, write_profile
from mlcycle.trainer.data import TrainingData
from mlcycle.trainer.fit import FitResult
from mlcycle.trainer.stages.evaluate import Evaluated
from mlcycle.trainer.thresholds import served_threshold


class ProfileRecord(TypedDict):
    """What ``metadata.json`` says of the profile: its file, content hash, rows and the
    signals it holds a reference for."""

    file: str
    sha256: str
    rows: int
    signals: list[str]


def write_reference_profile(
    staging: Path,
    name: str,
    version: int,
    best: FitResult,
    data: TrainingData,
    evaluated: Evaluated,
    transform: Transform | None,
) -> ProfileRecord:
    """Write ``profile.json`` into ``staging``; what ``metadata.json`` says of it.

    ``transform`` is the one the model reads its inputs through (None for a model
    that reads texts itself, the encoder: its profile has no vocabulary to be
    outside of, and no metadata fields).
    """
    comments = evaluated.dev_comments
    binary = data.n_classes == 2 and len(best.dev_probabilities) == len(comments)
    summary = best.threshold or {}
    profile = build_profile(
        model=name,
        version=version,
        transform=transform,
        texts=[c.text for c in comments],
        metadata=[dict(c.metadata) for c in comments],
        scores=best.dev_probabilities[:, 1] if binary else None,
        labels=data.dev.labels,
        threshold=served_threshold(best) if binary else None,
        score_prior=summary.get("score_prior") if binary else None,
    )
    path = write_profile(staging, profile)
    return {
        "file": PROFILE_FILE,
        "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
        "rows": profile.rows,
        "signals": available_signals(profile),
    }
