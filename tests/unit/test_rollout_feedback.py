"""Realized quality per version during a rollout: the path from a routed request to the
comparison the rollout controller decides on.

A request is routed by the real predictor (fake model client); the answers' scores go to
the feedback store as the API hands them over, the off-path scores (the shadow's, or
production's beside a canary answer) through the off-path scorer's own hook; moderators'
decisions join each version's score into its own window, and the controller's reading
(:func:`correct_since`) feeds :func:`compare`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from mlcycle.contracts.monitoring import Decision
from mlcycle.contracts.rollouts import Comparison, RolloutPolicy, RoutingState, RoutingTable
from mlcycle.contracts.rollouts import Rollout as RolloutRecord
from mlcycle.contracts.serving import write_routing_table
from mlcycle.featurization.transform import Transform
from mlcycle.inference.evidence import EvidenceBook
from mlcycle.inference.feedback import ScoreRecorder
from mlcycle.inference.offpath import OffPathScorer
from mlcycle.monitoring.feedback_store import MemoryFeedbackStore
from mlcycle.rollouts.compare import compare
from mlcycle.rollouts.evidence import MemoryEvidenceStore, RolloutEvidence
from mlcycle.trainer.rollout_signals import correct_since
from tests.fixtures.inference import NAME, Rig, corpus, small_transform

ROLLOUT = "ro-feedback"
SINCE = datetime(2020, 1, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def transform() -> Transform:
    return small_transform()


class Served:
    """The rig's predictor routed by ``state``, its scores recorded for the join."""

    def __init__(self, tmp_path: Path, transform: Transform, **state: object) -> None:
        self.rig = rig = Rig(tmp_path, transform, versions=(1, 2))
        self.state = RoutingState(name=NAME, rollout=ROLLOUT, **state)  # type: ignore[arg-type]
        models = rig.settings.trainer.models_dir
        write_routing_table(models, RoutingTable(models={NAME: self.state}))
        rig.follow_routing()
        self.book = EvidenceBook(MemoryEvidenceStore(), 1.0)
        self.offpath = OffPathScorer(
            rig.predictor.offpath_scores, self.book, capacity=10_000, batch_rows=8
        )
        rig.predictor.evidence, rig.predictor.offpath = self.book, self.offpath
        self.store = MemoryFeedbackStore(retention_s=600, window_decisions=1000)
        self.recorder = ScoreRecorder(self.store, flush_s=60)
        self.offpath.record_scores = self.recorder.offer  # as the service wires it

    def predict(self, n: int) -> tuple[list[str], list[str], list[int]]:
        """``n`` instances with ids, answered and scored off the path: texts, ids, versions."""
        texts, _, _ = corpus(n=n, seed=5)
        ids = [f"c{i}" for i in range(n)]
        model, predictions = self.rig.predictor.predict(texts, ids=ids)
        self.recorder.offer(model.name, ids, predictions)  # the answers, as the API does
        assert self.offpath.run_once() > 0
        self.recorder.flush()
        return texts, ids, [p["model_version"] for p in predictions]

    def comparison(self, phase: str) -> Comparison:
        rollout = RolloutRecord(
            id=ROLLOUT, name=NAME, candidate=2, baseline=1, policy=RolloutPolicy(),
            phase=phase, started_at=SINCE.isoformat(), updated_at=SINCE.isoformat(),
        )  # fmt: skip
        quality = {v: correct_since(self.store.quality_windows(NAME, v), SINCE) for v in (1, 2)}
        return compare(
            rollout,
            RolloutEvidence(),  # the pairs' evidence is not what this is about
            production_version=1,
            drift={},
            quality=quality,
            model_server_up=True,
            now=0.0,
        )

    def close(self) -> None:
        self.recorder.close()


def accuracy(served: Served, texts: list[str], labels: np.ndarray, version: int) -> float:
    """What ``version``'s own scores of ``texts`` get right at its threshold (0.5)."""
    flagged = served.rig.expected(texts, version)[:, 1] >= 0.5
    return float(np.mean(flagged == (labels != 0)))


def decide(served: Served, ids: list[str], labels: np.ndarray) -> None:
    decisions = [Decision(comment_id=c, label=int(y)) for c, y in zip(ids, labels, strict=True)]
    assert served.store.add_decisions(decisions, "ann") == ["joined"] * len(ids)


def test_the_shadow_phase_compares_realized_quality_on_both_sides(
    tmp_path: Path, transform: Transform
) -> None:
    served = Served(tmp_path, transform, stable=1, shadow=2, shadow_share=1.0)
    try:
        texts, ids, versions = served.predict(80)
        assert set(versions) == {1}  # the shadow never answers
        labels = np.random.default_rng(7).integers(0, 2, len(ids))
        decide(served, ids, labels)
        seen = served.comparison("shadow")
    finally:
        served.close()
    assert seen.pair == "production-shadow"
    assert seen.production.decisions == seen.candidate.decisions == 80
    # Each side is judged on its own scores: production's are not replaced by the shadow's.
    assert seen.production.accuracy == pytest.approx(accuracy(served, texts, labels, 1))
    assert seen.candidate.accuracy == pytest.approx(accuracy(served, texts, labels, 2))
    assert seen.production.accuracy != seen.candidate.accuracy
    assert seen.quality.difference == pytest.approx(
        seen.candidate.accuracy - seen.production.accuracy  # type: ignore[operator]
    )


def test_the_canary_phase_judges_production_on_every_comment_and_the_canary_on_its_own(
    tmp_path: Path, transform: Transform
) -> None:
    served = Served(tmp_path, transform, stable=1, canary=2, canary_share=0.3)
    try:
        texts, ids, versions = served.predict(120)
        canary = [i for i, v in enumerate(versions) if v == 2]
        assert 0 < len(canary) < 120
        labels = np.random.default_rng(8).integers(0, 2, len(ids))
        decide(served, ids, labels)
        seen = served.comparison("canary")
    finally:
        served.close()
    assert seen.pair == "production-canary"
    # Production answered the rest and scored the canary's answers off the path: all of them.
    assert seen.production.decisions == 120
    assert seen.production.accuracy == pytest.approx(accuracy(served, texts, labels, 1))
    assert seen.candidate.decisions == len(canary)
    picked = [texts[i] for i in canary]
    assert seen.candidate.accuracy == pytest.approx(accuracy(served, picked, labels[canary], 2))
