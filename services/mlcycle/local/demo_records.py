"""What ``mlcycle demo`` produced, stage by stage: the records its summary and report read.

The stages (:mod:`mlcycle.local.demo_stages`) fill them in; the report
(:mod:`mlcycle.local.demo_report`) only reads them, so neither imports the other.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path

from mlcycle.clients.inference import Prediction
from mlcycle.clients.trainer import JobResult
from mlcycle.contracts.label_runs import RunStats
from mlcycle.local.demo_monitoring import MonitoringRun
from mlcycle.local.demo_rollouts import RolloutsRun
from mlcycle.local.loadtest import Run
from mlcycle.local.pipeline import Featurized, ImportResult


@dataclass(frozen=True)
class LabelOutcome:
    """One finished label run of the demo: its id, figures and diagnostics page."""

    id: str
    stats: RunStats
    report: Path


@dataclass(frozen=True)
class Agreement:
    """How often two label runs gave the items both labeled the same class."""

    items: int
    agreement: float | None
    kappa: float | None
    # "<first's class>/<second's class>" -> items
    pairs: dict[str, int]
    only_first: int = 0
    only_second: int = 0


def label_agreement(first: dict[str, int], second: dict[str, int]) -> Agreement:
    """Share of the items both labeled that got the same class, and Cohen's kappa.

    Kappa is the agreement beyond what the two label distributions would give
    by chance: (observed - expected) / (1 - expected); None when undefined
    (both put every item in one class).
    """
    items = sorted(first.keys() & second.keys())
    pairs = [(first[i], second[i]) for i in items]
    n = len(pairs)
    if n == 0:
        return Agreement(items=0, agreement=None, kappa=None, pairs={})
    observed = sum(a == b for a, b in pairs) / n
    classes = sorted({c for pair in pairs for c in pair})
    expected = sum(
        (sum(a == c for a, _ in pairs) / n) * (sum(b == c for _, b in pairs) / n) for c in classes
    )
    kappa = None if expected >= 1.0 else (observed - expected) / (1.0 - expected)
    counts = {
        f"{a}/{b}": sum(pair == (a, b) for pair in pairs)
        for a, b in itertools.product(classes, classes)
    }
    return Agreement(
        items=n,
        agreement=observed,
        kappa=kappa,
        pairs=counts,
        only_first=len(first) - n,
        only_second=len(second) - n,
    )


@dataclass(frozen=True)
class Trained:
    """The demo's training job: its id, how many trials it ran, and what it found."""

    job_id: str
    trials_done: int
    result: JobResult


@dataclass(frozen=True)
class SamplePrediction:
    """One of the demo's sample texts and what the inference service answered for it."""

    text: str
    prediction: Prediction


@dataclass(frozen=True)
class Served:
    """The version deployed on the model server, and the sample texts scored through it."""

    version: int
    samples: list[SamplePrediction] = field(default_factory=list)


@dataclass(frozen=True)
class StreamFigures:
    """The streaming scorer: the imported comments it scored, and new ones there and back."""

    scored_imported: int
    sent: int
    scored_back: int
    post_s: float
    all_back_s: float | None
    first_back_s: float | None
    model_versions: list[str]
    positive: int


@dataclass(frozen=True)
class DemoRun:
    """What the stages produced, for the summary and the report."""

    imported: ImportResult
    counts: dict[str, int]  # stored documents per collection
    dead_lettered: dict[str, int]  # records per dead-letter topic
    search_hits: int
    labels: dict[str, LabelOutcome]  # strategy -> its run
    agreement: Agreement
    features: Featurized
    trained: Trained
    served: Served
    stream: StreamFigures
    load: Run
    load_seconds: float
    monitoring: MonitoringRun
    rollouts: RolloutsRun | None = None  # None: the stage did not run


@dataclass(frozen=True)
class SearchLimits:
    """How much the demo's training job may search: trials at most, and seconds at most
    (no trial starts after them), so the demo ends in minutes whatever the data."""

    trials: int
    budget_s: float
