"""The inference core with an in-memory model server and cache: batching, caching, labels,
version pinning, NOT_FOUND refresh, and the 503s that explain themselves."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from mlcycle.common.errors import InvalidInput, Unavailable
from mlcycle.featurization.transform import Transform
from tests.fixtures.inference import NAME, Rig, corpus, small_transform


@pytest.fixture(scope="module")
def transform() -> Transform:
    return small_transform()


def test_requests_are_scored_in_batches_pinned_to_the_serving_version(
    tmp_path: Path, transform: Transform
) -> None:
    rig = Rig(tmp_path, transform)
    texts = corpus(n=20, seed=5)[0]
    model, predictions = rig.predictor.predict(texts)
    assert model.version == 1
    assert [rows for _, (rows, _) in rig.client.calls] == [8, 8, 4]
    assert {version for version, _ in rig.client.calls} == {1}
    expected = rig.expected(texts, 1)[:, 1]
    assert np.allclose([p["score"] for p in predictions], expected, atol=1e-6)
    assert all(p["model_version"] == 1 for p in predictions)
    assert all(p["transform_version"] == transform.version for p in predictions)


def test_cached_scores_are_reused_and_duplicates_scored_once(
    tmp_path: Path, transform: Transform
) -> None:
    rig = Rig(tmp_path, transform)
    texts = ["you are an idiot", "thanks for the edit", "you  are an idiot "]
    _, first = rig.predictor.predict(texts)
    assert sum(rows for _, (rows, _) in rig.client.calls) == 2  # the third is the first, normalized
    assert first[0] == first[2]
    _, again = rig.predictor.predict(["thanks for the edit\n", "you are an idiot"])
    assert sum(rows for _, (rows, _) in rig.client.calls) == 2  # both from the cache
    assert again == [first[1], first[0]]
    assert len(rig.cache.data) == 2


def test_binary_labels_follow_the_threshold(tmp_path: Path, transform: Transform) -> None:
    texts = corpus(n=40, seed=9)[0]
    rig = Rig(tmp_path, transform, threshold=0.3)
    _, predictions = rig.predictor.predict(texts)
    assert {p["threshold"] for p in predictions} == {0.3}
    assert all(p["label"] == ("1" if p["score"] >= 0.3 else "0") for p in predictions)
    assert {p["label"] for p in predictions} == {"0", "1"}
    assert all("probabilities" not in p for p in predictions)


def test_the_configured_threshold_overrides_the_models(
    tmp_path: Path, transform: Transform
) -> None:
    rig = Rig(tmp_path, transform, threshold=0.3, predict_threshold=0.9)
    _, predictions = rig.predictor.predict(corpus(n=10)[0])
    assert all(p["threshold"] == 0.9 for p in predictions)
    assert all(p["label"] == ("1" if p["score"] >= 0.9 else "0") for p in predictions)


def test_multiclass_models_answer_the_top_class_and_every_probability(
    tmp_path: Path, transform: Transform
) -> None:
    classes = ("hate", "offensive", "neither")
    rig = Rig(tmp_path, transform, classes=classes)
    texts = corpus(n=12)[0]
    _, predictions = rig.predictor.predict(texts)
    expected = rig.expected(texts, 1)
    for prediction, row in zip(predictions, expected, strict=True):
        assert prediction["threshold"] is None
        assert prediction["label"] == classes[int(row.argmax())]
        assert prediction["score"] == pytest.approx(float(row.max()))
        assert list(prediction["probabilities"]) == list(classes)
        assert sum(prediction["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)


def test_a_new_version_is_used_after_a_refresh_and_never_its_predecessors_scores(
    tmp_path: Path, transform: Transform
) -> None:
    rig = Rig(tmp_path, transform)
    texts = ["you are an idiot", "nice page"]
    _, old = rig.predictor.predict(texts)
    rig.add_version(2)
    rig.client.available.append(2)
    assert rig.predictor.predict(texts)[0].version == 1  # pinned until the refresh
    rig.tracker.refresh()
    model, new = rig.predictor.predict(texts)
    assert model.version == 2
    assert [p["model_version"] for p in new] == [2, 2]
    assert np.allclose([p["score"] for p in new], rig.expected(texts, 2)[:, 1], atol=1e-6)
    assert [p["score"] for p in new] != [p["score"] for p in old]
    assert rig.client.calls[-1][0] == 2


def test_a_vanished_version_refreshes_at_once_and_retries(
    tmp_path: Path, transform: Transform
) -> None:
    rig = Rig(tmp_path, transform)
    rig.add_version(2)
    rig.client.available = [2]  # version 1 unloaded; the tracker has not noticed yet
    model, predictions = rig.predictor.predict(["thanks"])
    assert model.version == 2 and predictions[0]["model_version"] == 2
    assert [version for version, _ in rig.client.calls] == [2]


def test_a_version_gone_without_a_successor_is_a_clear_503(
    tmp_path: Path, transform: Transform
) -> None:
    rig = Rig(tmp_path, transform)
    rig.client.gone.add(1)
    with pytest.raises(Unavailable, match="no longer serves model toxicity version 1"):
        rig.predictor.predict(["thanks"])


def test_a_version_whose_transform_is_missing_is_refused_with_the_reason(
    tmp_path: Path, transform: Transform
) -> None:
    rig = Rig(tmp_path, transform)
    rig.add_version(2, transform="tf-00000000000000aa")
    rig.client.available.append(2)
    rig.tracker.refresh()
    with pytest.raises(Unavailable, match="needs transform tf-00000000000000aa") as caught:
        rig.predictor.predict(["thanks"])
    assert "artifact store" in caught.value.message


def test_a_version_without_metadata_is_refused_with_the_reason(
    tmp_path: Path, transform: Transform
) -> None:
    rig = Rig(tmp_path, transform)
    rig.client.available.append(2)
    (rig.settings.trainer.models_dir / NAME / "2").mkdir()
    rig.tracker.refresh()
    with pytest.raises(Unavailable, match="version 2 has no metadata.json"):
        rig.predictor.predict(["thanks"])


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "does not hold a JSON object"),
        ('{"transform": "tf-x", "threshold": "high"}', "threshold"),
    ],
)
def test_a_version_with_unreadable_metadata_is_refused_with_the_reason(
    tmp_path: Path, transform: Transform, content: str, reason: str
) -> None:
    rig = Rig(tmp_path, transform)
    rig.client.available.append(2)
    (rig.add_version(2) / "metadata.json").write_text(content)
    rig.tracker.refresh()
    with pytest.raises(Unavailable, match=f"cannot read .*metadata.json: .*{reason}"):
        rig.predictor.predict(["thanks"])


def test_no_servable_version_or_no_server_names_the_model_server(
    tmp_path: Path, transform: Transform
) -> None:
    rig = Rig(tmp_path, transform, versions=())
    with pytest.raises(Unavailable, match="has no available version of model toxicity"):
        rig.predictor.predict(["thanks"])
    down = Rig(tmp_path / "down", transform)
    down.client.down = True
    with pytest.raises(Unavailable, match="fake-model-server:8500 is unavailable"):
        down.predictor.predict(["thanks"])
    down.client.down = False  # back: the pinned version answers again
    assert down.predictor.predict(["thanks"])[0].version == 1


def test_a_server_down_at_start_is_found_once_it_is_up(
    tmp_path: Path, transform: Transform
) -> None:
    rig = Rig(tmp_path, transform, versions=())
    rig.add_version(1)
    rig.client.available = [1]
    rig.client.down = True
    rig.tracker.refresh()
    with pytest.raises(Unavailable, match="model server"):
        rig.predictor.predict(["thanks"])
    assert rig.tracker.server_up is False
    rig.client.down = False
    rig.tracker.refresh()
    assert rig.predictor.predict(["thanks"])[0].version == 1


def test_unknown_metadata_fields_are_named_even_on_a_cache_hit(
    tmp_path: Path, transform: Transform
) -> None:
    rig = Rig(tmp_path, transform)
    rig.predictor.predict(["thanks"], [{"year": 2010}])
    with pytest.raises(InvalidInput, match="colour, shape"):
        rig.predictor.predict(["thanks"], [{"year": 2010, "shape": 1, "colour": "red"}])
    _, predictions = rig.predictor.predict(
        ["thanks"], [{"year": 2010, "shape": 1}], unknown_fields="ignore"
    )
    assert predictions[0]["model_version"] == 1


def test_metadata_changes_the_score_and_the_cache_entry(
    tmp_path: Path, transform: Transform
) -> None:
    rig = Rig(tmp_path, transform)
    rig.predictor.predict(["thanks"], [{"year": 2003, "logged_in": True}])
    rig.predictor.predict(["thanks"], [{"year": 2014, "logged_in": False}])
    rig.predictor.predict(["thanks"], [{"logged_in": True, "year": 2003}])
    assert len(rig.cache.data) == 2
    assert len(rig.client.calls) == 2


def test_misaligned_metadata_is_refused(tmp_path: Path, transform: Transform) -> None:
    rig = Rig(tmp_path, transform)
    with pytest.raises(InvalidInput, match="2 texts but 1 metadata"):
        rig.predictor.predict(["a", "b"], [{"year": 2010}])


def test_an_unloaded_folder_does_not_break_the_pinned_version(
    tmp_path: Path, transform: Transform
) -> None:
    rig = Rig(tmp_path, transform)
    rig.predictor.predict(["thanks"])
    shutil.rmtree(rig.settings.trainer.models_dir / NAME / "1")  # loaded metadata is kept
    rig.tracker.refresh()
    assert rig.predictor.predict(["something new"])[0].version == 1
