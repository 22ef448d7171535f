"""The inference service serving an encoder version: token tensors built with its own tokenizer.

A real SavedModel of the encoder variant (the shipped MiniLM and a head trained
here on made-up comments) is served by the real model server; the inference
service, over real HTTP and real Redis, must answer the scores the SavedModel
itself gives, on the REST path (the event loop's batcher) and the blocking one
(the stream's predictor) alike.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from mlcycle.common.errors import Unavailable
from mlcycle.common.infra.redis import EmbeddedRedis
from mlcycle.contracts.encoder import EncoderOptions
from mlcycle.inference.metadata import ServedModel, read_version_metadata
from mlcycle.inference.versions import build_version
from mlcycle.trainer import encoder_fit as fitting
from mlcycle.trainer.encoder_export import (
    TOKENIZER_ASSET,
    TokenServingModel,
    export_encoder_saved_model,
    input_metadata,
    write_token_warmup_requests,
)
from mlcycle.trainer.export import write_metadata
from tests.fixtures.encoder import KIND, RUDE, comments
from tests.fixtures.inference import NAME, TransformShelf, World, small_transform
from tests.integration.test_inference import AUTH, Service, unique

pytestmark = pytest.mark.integration

TEXTS = [RUDE[0], KIND[0], "go back to where you came from, you filthy animal", "you are nice"]


@pytest.fixture(scope="module")
def encoder_root(
    tmp_path_factory: pytest.TempPathFactory, minilm_backbone: object, minilm_tokens: object
) -> Path:
    """An artifact store with a transform, and ``versions/1``: an exported encoder version."""
    root = tmp_path_factory.mktemp("encoder-models")
    transform = small_transform()
    transform.save(root / "artifacts")
    texts, labels = comments(40, seed=11)
    soft = np.eye(2, dtype=np.float32)[labels]
    job = fitting.EncoderTraining(
        train=(texts, labels, soft), dev=(texts, labels, soft), n_classes=2
    )
    options = EncoderOptions(hidden_units=16, epochs=20, learning_rate=0.01, batch_size=16)
    result, _ = fitting.fit_encoder(minilm_backbone, minilm_tokens, job, options)
    target = root / "versions" / "1"
    export_encoder_saved_model(result.model, target, minilm_tokens.path)
    write_token_warmup_requests(target, NAME, minilm_tokens.encode(texts[:8]))
    write_metadata(
        target,
        {
            "name": NAME,
            "version": 1,
            "task": "toxicity",
            "transform": transform.version,
            "classes": ["0", "1"],
            "threshold": 0.5,
            "input": input_metadata(target, minilm_tokens.max_length),
        },
    )
    return root


@pytest.fixture(scope="module")
def served(encoder_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    world = World(encoder_root, tmp_path_factory.mktemp("encoder-world"))
    world.start_server()
    yield world
    world.stop_server()


@pytest.fixture(scope="module")
def service(served: World, redis_server: EmbeddedRedis) -> Iterator[Service]:
    service = Service(
        served.settings(redis_url=redis_server.url, api_keys=(AUTH["Authorization"][7:],))
    )
    yield service
    service.close()


def expected_scores(world: World, texts: list[str]) -> np.ndarray:
    return TokenServingModel(world.models / NAME / "1").probabilities(texts)[:, 1]


def test_predict_through_inference_returns_the_encoders_score(
    service: Service, served: World
) -> None:
    texts = [unique(text) for text in TEXTS]
    answer = service.predict(*texts)
    assert answer.status_code == 200, answer.text
    predictions = answer.json()["predictions"]
    scores = np.array([p["score"] for p in predictions])
    np.testing.assert_allclose(scores, expected_scores(served, texts), atol=1e-5)
    assert [p["model_version"] for p in predictions] == [1] * len(texts)
    # Labelled at the version's own threshold.
    assert [p["label"] for p in predictions] == ["1" if x >= 0.5 else "0" for x in scores]
    assert {p["threshold"] for p in predictions} == {0.5}
    again = service.predict(*texts).json()["predictions"]  # from the cache now
    assert [p["score"] for p in again] == [p["score"] for p in predictions]

    # The blocking path (the stream's) builds the same tokens and gets the same scores.
    one = [unique("you are a pathetic idiot and everyone knows it")]
    _, blocking = service.runtime.predictor.predict(one)
    np.testing.assert_allclose(blocking[0]["score"], expected_scores(served, one)[0], atol=1e-5)


def test_a_version_whose_tokenizer_is_not_its_own_is_refused(
    encoder_root: Path, tmp_path: Path
) -> None:
    models = tmp_path / "models"
    shutil.copytree(encoder_root / "versions" / "1", models / NAME / "1")
    model = ServedModel(NAME, models, encoder_root / "artifacts")
    shelf = TransformShelf(TransformShelf.from_store(encoder_root / "artifacts"))
    metadata = read_version_metadata(model, 1)
    assert build_version(model, 1, metadata, shelf).tokens is not None

    tokenizer = models / NAME / "1" / TOKENIZER_ASSET
    tokenizer.write_text(tokenizer.read_text(encoding="utf-8") + " ", encoding="utf-8")
    with pytest.raises(Unavailable, match="sha256"):
        build_version(model, 1, metadata, shelf)

    path = models / NAME / "1" / "metadata.json"
    lineage = json.loads(path.read_text(encoding="utf-8"))
    lineage["input"] = {**lineage["input"], "kind": "images"}
    path.write_text(json.dumps(lineage), encoding="utf-8")
    with pytest.raises(Unavailable, match="images"):
        build_version(model, 1, read_version_metadata(model, 1), shelf)
