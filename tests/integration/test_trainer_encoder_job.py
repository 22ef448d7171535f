"""A training job with the encoder variant: trained, exported, served by the real model server.

The job runs every stage for real on a few dozen made-up comments: the texts
are read from the store, the shipped MiniLM encodes them, a head is trained,
the SavedModel (encoder, head, tokenizer) is staged, infra-validated in a fresh
``mlcycle modelserver`` process over gRPC, blessed and registered.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from mlcycle.common.kafka.producer import RecordProducer
from mlcycle.common.settings import Settings
from mlcycle.common.store import COMMENTS, VOTES, Store, open_store
from mlcycle.contracts.comments import Comment, Vote
from mlcycle.contracts.label_runs import RunParams
from mlcycle.contracts.training import JobConfig
from mlcycle.featurization.minilm import sha256_of
from mlcycle.labeler.runs import LabelRunner
from mlcycle.monitoring.profile import read_profile
from mlcycle.trainer.encoder_export import TOKENIZER_ASSET, TokenServingModel
from mlcycle.trainer.export import WARMUP_FILE, read_metadata
from mlcycle.trainer.jobs import JobRunner
from mlcycle.trainer.registry import ModelRegistry
from mlcycle.trainer.stages.context import JobEnvironment
from tests.fixtures.encoder import KIND, RUDE, comments

pytestmark = pytest.mark.integration

FAST_ENCODER = {"max_length": 32, "hidden_units": 16, "learning_rate": 0.01, "batch_size": 16}
SMALL_SEARCH = {
    "features": ["current"],
    "hidden_units": [8],
    "hidden_layers": 1,
    "dropout": 0.0,
    "learning_rate": 0.03,
    "batch_size": 32,
    "epochs": 3,
}


def seed(store: Store, n: int = 90) -> None:
    texts, labels = comments(n, seed=7)
    docs, votes = [], []
    for i, (text, label) in enumerate(zip(texts, labels, strict=True)):
        item = f"e{i:04d}"
        docs.append(Comment(id=item, text=text).to_document())
        votes += [Vote(item_id=item, annotator_id=f"w{k}", label=int(label)) for k in range(3)]
    store.upsert(COMMENTS, docs)
    store.upsert(VOTES, [v.to_document() for v in votes])


@pytest.fixture
def settings(kafka_settings: Settings) -> Settings:
    return kafka_settings


@pytest.fixture
def store(settings: Settings) -> Iterator[Store]:
    store = open_store(settings.store)
    yield store
    store.close()


@pytest.fixture
def runner(settings: Settings, store: Store) -> JobRunner:
    seed(store)
    with RecordProducer(settings.kafka) as producer:
        labels = LabelRunner(settings.labeler, store, producer, topic=settings.kafka.topics.labels)
        labels.execute(labels.create(RunParams(strategy="majority", task="toxicity")).id)
    registry = ModelRegistry(settings.trainer, store)
    return JobRunner(settings.trainer, store, registry, JobEnvironment.of(settings))


def test_an_encoder_job_trains_exports_serves_and_blesses(
    runner: JobRunner, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="mlcycle.trainer.stages.encoder")
    config = JobConfig(preset="encoder", encoder=FAST_ENCODER, patience=5)
    job = runner.execute(runner.create(config).id)
    assert job.status == "succeeded", job.error
    result = job.result
    assert result is not None and result.params.preset == "encoder"
    assert result.dev["roc_auc"] > 0.9 and result.test is not None and result.test["n"] > 0
    encoder = result.encoder
    assert encoder is not None and encoder["chosen"] and encoder["train_texts"] > 30
    assert encoder["train_s_per_10k"] > 0 and encoder["predict_p50_ms"] > 0
    assert "s of training per 10k comments" in caplog.text

    # Served by a fresh model server during infra-validation, blessed and promoted.
    model = result.model
    assert model is not None and (model.version, model.state) == (1, "production")
    folder = settings.trainer.models_dir / settings.trainer.model_name / "1"
    lineage = read_metadata(folder)
    assert lineage["blessing"]["blessed"]
    assert "gRPC Predict" in lineage["blessing"]["infra_validation"]
    block = lineage["input"]
    assert block["kind"] == "tokens" and block["max_length"] == 32
    assert block["tokenizer_sha256"] == sha256_of(folder / TOKENIZER_ASSET)
    assert set(lineage["signature"]["inputs"]) == {"token_ids", "padding_mask"}
    assert lineage["encoder"]["train_s_per_10k"] == encoder["train_s_per_10k"]
    assert (folder / WARMUP_FILE).is_file()
    # Its monitoring profile: the served scores, but no transform's vocabulary or fields.
    profile = read_profile(folder)
    assert profile is not None and lineage["profile"]["rows"] == profile.rows > 0
    assert profile.transform is None and profile.oov is None and profile.metadata == {}
    assert sum(profile.score.counts) == profile.rows and profile.calibration is not None

    # The version stands alone: its own tokenizer and SavedModel score new texts.
    served = TokenServingModel(folder)
    probs = served.probabilities([RUDE[0], KIND[0]])
    assert probs.shape == (2, 2) and np.allclose(probs.sum(axis=1), 1, atol=1e-5)
    assert probs[0, 1] > probs[1, 1]
    # Its scores are calibrated and moved to the traffic's prior inside the export; the
    # model server answered infra-validation with the run's own corrected probabilities.
    policy = lineage["threshold_policy"]
    assert policy["applied"] and set(policy["logit_map"]) == {"scale", "shift"}
    assert lineage["threshold"] == policy["threshold"]
    # The behavioural suite scored the encoder on the texts themselves.
    assert result.behaviour is not None and result.behaviour.cases >= 300
    assert lineage["behaviour"]["pass_rate"] == pytest.approx(result.behaviour.pass_rate)
    report = Path(result.report).read_text(encoding="utf-8")
    assert "per 10k comments" in report

    # A search that considers the encoder picks it only within the latency budget;
    # blessing re-scores the encoder in production on the same dev items.
    config = JobConfig(
        trials=1,
        search=SMALL_SEARCH,
        consider_encoder=True,
        latency_budget_ms=0.001,
        encoder=FAST_ENCODER,
        patience=5,
    )
    second = runner.execute(runner.create(config).id)
    assert second.status == "succeeded", second.error
    assert second.result is not None and second.result.encoder is not None
    assert not second.result.encoder["chosen"]
    assert second.result.params.preset == "default"
    reason = second.result.encoder["reason"]
    assert "exceeds the 0.001 ms budget" in reason or "does not beat" in reason
    assert second.result.model is not None and "production v1" in (second.result.model.reason or "")
