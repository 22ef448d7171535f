"""The trainer's behaviour stage: production's rates from its metadata.json, by re-scoring it,
or a skipped comparison that says why; and the candidate held to them under the margin."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from mlcycle.contracts.models import Blessing, ModelVersion
from mlcycle.evaluation.behaviour import BehaviourSuite, SuiteResult, load_suite, run_suite
from mlcycle.featurization.store import TransformStore
from mlcycle.trainer import export as exporting
from mlcycle.trainer.stages import behaviour as stage
from tests.fixtures.inference import export_model_version, small_transform

NAME = "toxicity"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    """A suite, an artifact store with a transform, and production v1 as a real SavedModel."""
    root = tmp_path_factory.mktemp("gate")
    suite_dir = root / "suite"
    suite_dir.mkdir()
    cases = {
        "insults": [("you idiot", "toxic"), ("stupid moron", "toxic"), ("dumb loser", "toxic")],
        "kind": [("thanks for the edit", "not_toxic"), ("great article", "not_toxic")],
    }
    for name, pairs in cases.items():
        doc = {
            "capability": name,
            "description": f"{name} cases",
            "cases": [{"text": t, "expected": e} for t, e in pairs],
        }
        (suite_dir / f"{name}.json").write_text(json.dumps(doc), encoding="utf-8")
    transform = small_transform()
    transforms = TransformStore(root / "artifacts")
    transforms.add(transform)
    models = root / "models"
    export_model_version(transform, models / NAME / "1", seed=1, epochs=4, threshold=0.5)
    return SimpleNamespace(
        suite=load_suite(suite_dir),
        suite_dir=suite_dir,
        transforms=transforms,
        transform=transform,
        models=models,
    )


def context(world: SimpleNamespace, models: Path, margin: float = 0.05) -> Any:
    return SimpleNamespace(
        settings=SimpleNamespace(models_dir=models),
        transforms=world.transforms,
        environment=SimpleNamespace(behaviour_suite=world.suite_dir),
        config=SimpleNamespace(behaviour_margin=margin),
    )


def production(world: SimpleNamespace, models: Path) -> ModelVersion:
    return ModelVersion(
        id=f"{NAME}:1",
        name=NAME,
        version=1,
        state="production",
        created_at="2026-12-01T00:00:00+00:00",
        updated_at="2026-12-01T00:00:00+00:00",
        transform=world.transform.version,
        label_run="lr-1",
        metrics={},
        params={},
        blessing=Blessing(blessed=True, reason="first"),
        path=str(models / NAME / "1"),
        history=[],
    )


def candidate(suite: BehaviourSuite, toxic_words: list[str]) -> SuiteResult:
    return run_suite(suite, lambda texts: [any(w in t for w in toxic_words) for t in texts])


def copy_models(world: SimpleNamespace, tmp_path: Path) -> Path:
    models = tmp_path / "models"
    shutil.copytree(world.models, models)
    return models


def test_rates_recorded_on_the_same_suite_are_used_and_a_regression_is_found(
    world: SimpleNamespace, tmp_path: Path
) -> None:
    models = copy_models(world, tmp_path)
    folder = models / NAME / "1"
    recorded = candidate(world.suite, ["idiot", "moron", "loser"])  # production: all pass
    exporting.write_metadata(
        folder,
        {**exporting.read_metadata(folder), "behaviour": recorded.summary().model_dump()},
    )
    ctx = context(world, models)
    worse = candidate(world.suite, ["idiot", "moron"])  # insults 1.0 -> 0.67
    check = stage.check(ctx, worse, production(world, models))
    assert check is not None and "recorded in its metadata.json on this suite" in check.compared
    assert [(r.capability, r.production, round(r.candidate, 2)) for r in check.regressions] == [
        ("insults", 1.0, 0.67)
    ]
    assert check.production_pass_rate == 1.0
    # Within a margin that allows the drop, nothing regressed.
    lenient = stage.check(context(world, models, margin=0.34), worse, production(world, models))
    assert lenient is not None and lenient.regressions == ()


def test_without_recorded_rates_production_is_re_scored_with_its_own_model(
    world: SimpleNamespace, tmp_path: Path
) -> None:
    models = copy_models(world, tmp_path)
    ctx = context(world, models)
    rates, overall, how = stage.production_rates(ctx, production(world, models), "any digest")
    assert "re-scored with its own model, transform and threshold" in how
    assert "it recorded none" in how
    served = exporting.ServingModel(models / NAME / "1")
    texts = world.suite.texts()
    indices, values = padded(world, texts)
    toxic = served.probabilities(indices, values)[:, 1] >= 0.5
    expected = np.array([c.toxic for cap in world.suite.capabilities for c in cap.cases])
    passed = toxic == expected
    assert rates == {"insults": pytest.approx(passed[:3].mean()), "kind": passed[3:].mean()}
    assert overall == pytest.approx(passed.mean())


def padded(world: SimpleNamespace, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    from mlcycle.inference.tensors import padded_rows

    batch = world.transform.apply(texts, [{} for _ in texts], unknown_fields="ignore")
    return padded_rows(batch, 0, len(texts))


def test_a_comparison_that_cannot_be_made_is_skipped_with_its_reason(
    world: SimpleNamespace, tmp_path: Path
) -> None:
    models = copy_models(world, tmp_path)
    (models / NAME / "1" / "saved_model.pb").unlink()
    ctx = context(world, models)
    check = stage.check(ctx, candidate(world.suite, []), production(world, models))
    assert check is not None and check.regressions == ()
    assert check.compared.startswith("comparison with production v1 skipped: it recorded none")
    assert stage.check(ctx, candidate(world.suite, []), None).compared == (
        "no production model to compare with"
    )
    assert stage.check(ctx, None, production(world, models)) is None
