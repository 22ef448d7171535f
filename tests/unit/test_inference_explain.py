"""The inference service's explainer over the fake model server: the version's explain call,
the split over the words of the text as sent, the cache per exact text, doNotStore, and the
versions that cannot explain. The real SavedModel signature and model server are exercised in
tests/unit/test_trainer_explain.py and tests/integration/test_inference.py."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from mlcycle.contracts.explanations import NotExplainable
from mlcycle.contracts.rollouts import RoutingState, RoutingTable
from mlcycle.contracts.serving import write_routing_table
from mlcycle.featurization.attribution import attribute_to_words
from mlcycle.inference.explain import Explainer, Explanation, explain_key, explain_predictions
from mlcycle.inference.explain_async import ExplainBatcher, predict_and_explain
from mlcycle.inference.schemas import PredictionRow
from mlcycle.inference.servable import ModelVersion
from mlcycle.inference.tensors import padded_rows
from tests.fixtures.fake_explanations import fake_explained
from tests.fixtures.inference import NAME, Rig, fake_probabilities, small_transform

TRANSFORM = small_transform()
TEXT = "You are an IDIOT &amp; a moron 😀 https://x.example/a @bob"


@pytest.fixture
def rig(tmp_path: Path) -> Rig:
    return Rig(tmp_path, TRANSFORM, versions=(1, 2))


def explainer(rig: Rig) -> Explainer:
    return Explainer(rig.client, rig.cache, batch_rows=2)


def expected_scores(rig: Rig, version: int, text: str) -> list[float]:
    """The fake's own explanation of ``text``, split over its words by the transform."""
    batch = TRANSFORM.apply([text])
    indices, values = padded_rows(batch, 0, 1)
    explained = fake_explained(fake_probabilities, version, indices, values, 2)
    columns, _ = batch.row(0)
    words = attribute_to_words(TRANSFORM, text, columns, explained.attributions[0, : len(columns)])
    return words.scores.tolist()


def test_a_text_is_explained_word_by_word_from_the_versions_explain_call(rig: Rig) -> None:
    model = rig.tracker.current()
    (explanation,) = explainer(rig).explain(model, [TEXT])
    assert [span.text for span in explanation.spans] == [
        "You", "are", "an", "IDIOT", "a", "moron", "😀", "https://x.example/a"
    ]  # fmt: skip
    assert all(TEXT[s.begin : s.end] == s.text for s in explanation.spans)
    np.testing.assert_allclose(
        [s.score for s in explanation.spans], expected_scores(rig, model.version, TEXT), rtol=1e-6
    )
    assert explanation.score == pytest.approx(float(rig.expected([TEXT], model.version)[0, 1]))
    assert [version for version, _ in rig.client.explain_calls] == [model.version]


def test_explanations_are_cached_per_exact_text_and_do_not_store_writes_nothing(rig: Rig) -> None:
    model, explain = rig.tracker.current(), explainer(rig)
    spaced = TEXT.replace(" ", "  ", 1)
    nothing = explain.explain(model, [spaced], store=False)
    assert rig.cache.data == {} and len(rig.client.explain_calls) == 1
    first = explain.explain(model, [TEXT, spaced, TEXT])
    assert len(rig.client.explain_calls) == 2  # one call of batch_rows: the three misses
    assert explain_key(model, TEXT, None) in rig.cache.data
    assert explain_key(model, spaced, None) in rig.cache.data  # offsets differ, so keys do
    assert first[1] == nothing[0] and first[1].spans[1].begin == first[0].spans[1].begin + 1
    again = explain.explain(model, [TEXT, spaced])
    assert again == first[:2] and len(rig.client.explain_calls) == 2  # both from the cache


def test_an_unreadable_cached_explanation_is_computed_again(rig: Rig) -> None:
    model, explain = rig.tracker.current(), explainer(rig)
    rig.cache.data[explain_key(model, TEXT, None)] = b"not json"
    (explanation,) = explain.explain(model, [TEXT])
    assert explanation.spans and len(rig.client.explain_calls) == 1
    assert Explanation.from_bytes(explanation.to_bytes(), TEXT) == explanation


def test_metadata_is_part_of_the_key(rig: Rig) -> None:
    model = rig.tracker.current()
    assert explain_key(model, TEXT, {"year": 2005}) != explain_key(model, TEXT, None)
    assert explain_key(model, TEXT, {"a": 1, "b": 2}) == explain_key(model, TEXT, {"b": 2, "a": 1})


def test_a_version_without_the_signature_is_a_409_naming_it(rig: Rig) -> None:
    model = rig.tracker.current()
    rig.client.unexplainable.add(model.version)
    with pytest.raises(NotExplainable) as caught:
        explainer(rig).explain(model, [TEXT])
    assert caught.value.http_status == 409
    assert f"version {model.version} " in caught.value.message


def test_each_prediction_is_explained_by_the_version_that_scored_it(
    rig: Rig, tmp_path: Path
) -> None:
    models = rig.settings.trainer.models_dir
    state = RoutingState(name=NAME, rollout="r-1", stable=1, canary=2, canary_share=0.5)
    write_routing_table(models, RoutingTable(models={NAME: state}))
    rig.follow_routing()
    texts = [f"{TEXT} number {i}" for i in range(12)]
    ids = [f"c{i}" for i in range(12)]
    _, predictions = rig.predictor.predict(texts, ids=ids)
    assert {p["model_version"] for p in predictions} == {1, 2}
    explain_predictions(explainer(rig), rig.tracker, texts, None, predictions)

    async def alongside() -> list[PredictionRow]:
        cache, client = rig.cache.aio(), rig.client.aio()
        batcher = ExplainBatcher(explainer(rig), lambda: (cache, client))
        predicting = Predicting(rig)
        _, rows = await predict_and_explain(batcher, predicting, rig.tracker, texts, None, ids)
        assert predicting.observed == []  # routed: predicted (and counted) as any request
        return rows

    assert asyncio.run(alongside()) == predictions  # the canary's rows by the canary
    for text, prediction in zip(texts, predictions, strict=True):
        version = prediction["model_version"]
        np.testing.assert_allclose(
            [s["score"] for s in prediction["spans"]],
            expected_scores(rig, version, text),
            rtol=1e-6,
        )


class Predicting:
    """The request batcher's part in an explained request, over the rig's predictor."""

    def __init__(self, rig: Rig) -> None:
        self.rig = rig
        self.observed: list[tuple[int, list[str], list[PredictionRow], bool]] = []

    async def predict(
        self, texts: list[str], metadata: object, ids: list[str] | None = None, *, live: bool = True
    ) -> tuple[ModelVersion, list[PredictionRow]]:
        return self.rig.predictor.predict(texts, ids=ids)

    def observe(
        self,
        model: ModelVersion,
        texts: list[str],
        metadata: object,
        predictions: list[PredictionRow],
        ids: object,
        *,
        started: float,
        live: bool,
    ) -> None:
        self.observed.append((model.version, list(texts), predictions, live))


def test_outside_a_rollout_the_explanation_is_the_prediction(rig: Rig) -> None:
    """One explain call and no Predict: the explain signature's score is the served one."""
    texts = [TEXT, "thanks for the edit"]
    _, plain = rig.predictor.predict(texts)
    rig.client.calls.clear()

    async def explained() -> list[PredictionRow]:
        cache, client = rig.cache.aio(), rig.client.aio()
        batcher = ExplainBatcher(explainer(rig), lambda: (cache, client))
        predicting = Predicting(rig)
        _, rows = await predict_and_explain(
            batcher, predicting, rig.tracker, texts, None, None, live=False
        )
        assert [(v, t, live) for v, t, _, live in predicting.observed] == [(2, texts, False)]
        return rows

    rows = asyncio.run(explained())
    assert rig.client.calls == [] and len(rig.client.explain_calls) == 1
    for row, served in zip(rows, plain, strict=True):
        assert row["score"] == pytest.approx(served["score"], abs=1e-6)
        assert {k: v for k, v in row.items() if k not in ("score", "spans")} == {
            k: v for k, v in served.items() if k != "score"
        }
    assert [s["score"] for s in rows[0]["spans"]] == pytest.approx(
        expected_scores(rig, 2, TEXT), rel=1e-6
    )


def test_the_event_loop_batches_concurrent_requests_into_shared_explain_calls(rig: Rig) -> None:
    model, explain = rig.tracker.current(), explainer(rig)
    requests = [[TEXT, "thanks for the edit"], [TEXT, "you idiot"], ["you idiot"], ["a b c"]]

    async def on_the_loop() -> list[list[Explanation]]:
        cache, client = rig.cache.aio(), rig.client.aio()
        batcher = ExplainBatcher(explain, lambda: (cache, client))
        answers = await asyncio.gather(*(batcher.explain(model, texts, None) for texts in requests))
        await batcher.join()
        return answers

    answers = asyncio.run(on_the_loop())
    # The first request is taken at once; the three queued meanwhile go together, in
    # calls of batch_rows rows: far fewer calls than texts.
    assert len(rig.client.explain_calls) < sum(map(len, requests))
    assert explain_key(model, "a b c", None) in rig.cache.data
    rig.cache.data.clear()
    for texts, answer in zip(requests, answers, strict=True):
        assert explain.explain(model, texts) == answer  # the blocking path's explanations


def test_a_failing_batch_fails_each_of_its_requests(rig: Rig) -> None:
    model, explain = rig.tracker.current(), explainer(rig)
    rig.client.unexplainable.add(model.version)

    async def on_the_loop() -> list[object]:
        cache, client = rig.cache.aio(), rig.client.aio()
        batcher = ExplainBatcher(explain, lambda: (cache, client))
        texts = ([TEXT], ["you idiot"])
        calls = (batcher.explain(model, t, None) for t in texts)
        return await asyncio.gather(*calls, return_exceptions=True)

    assert all(isinstance(answer, NotExplainable) for answer in asyncio.run(on_the_loop()))
