"""The lineage of a prediction, assembled from a small self-made store, models folder and
artifact store, with the inference core over a fake model server."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from mlcycle.common.errors import NotFound, ValidationFailed
from mlcycle.common.store import COMMENTS, LABELS, RUNS, VOTES
from mlcycle.common.store.sqlite import SqliteStore
from mlcycle.contracts.label_runs import LabelRun
from mlcycle.contracts.repositories.label_runs import LabelRuns
from mlcycle.inference.explain import Explainer
from mlcycle.inference.lineage import Lineage, LineageReader, render_lineage
from mlcycle.inference.tensors import padded_rows
from mlcycle.trainer.registry import ModelRegistry
from tests.fixtures.inference import NAME, Rig, fake_probabilities, small_transform

TRANSFORM = small_transform()
RUN, OLD_RUN = "lr-20261124T100000-aaaaaa", "lr-20261120T100000-bbbbbb"
TEXT = "thanks for the edit you idiot"
METRICS = {"dev": {"roc_auc": 0.91, "macro_f1": 0.8}, "test": {"roc_auc": 0.89, "macro_f1": 0.78}}
HYPER = {"hidden_units": 8, "learning_rate": 0.05, "dropout": 0.1, "features": "current"}
BLESSING = {"blessed": True, "reason": "no production model to beat; dev roc_auc 0.9100"}


@pytest.fixture
def rig(tmp_path: Path) -> Rig:
    return Rig(tmp_path, TRANSFORM)


@pytest.fixture
def store(tmp_path: Path):
    store = SqliteStore(tmp_path / "store.db")
    yield store
    store.close()


def reader(rig: Rig, store: SqliteStore) -> LineageReader:
    return LineageReader(
        rig.model,
        rig.settings.labeler.task,
        rig.predictor,
        store=store,
        transforms=rig.shelf,
        explainer=Explainer(rig.client, rig.cache, batch_rows=8),
    )


def add_comment(store: SqliteStore, comment_id: str, **extra: Any) -> None:
    doc = {"id": comment_id, "text": TEXT, "source": "unit", "created_at": None}
    store.upsert(COMMENTS, [{**doc, "metadata": {"year": 2005, "logged_in": True}, **extra}])


def add_votes(store: SqliteStore, comment_id: str, labels: dict[str, int]) -> None:
    store.upsert(
        VOTES,
        [
            {"id": f"toxicity:{comment_id}:{who}", "item_id": comment_id, "annotator_id": who,
             "label": label, "task": "toxicity", "score": None, "synthetic_annotator": False,
             "source": "unit", "created_at": None}
            for who, label in labels.items()
        ],
    )  # fmt: skip


def add_run(store: SqliteStore, run_id: str, strategy: str, *, latest: bool) -> None:
    run = {
        "id": run_id,
        "kind": "label",
        "task": "toxicity",
        "status": "succeeded",
        "params": {"strategy": strategy, "task": "toxicity", "threshold": 0.5},
        "previous_run": None,
        "stats": {"items": 3, "labeled": 2, "converged": True, "votes": {"crowd": 9}},
        "report": {"big": "diagnostics the lineage leaves out"},
        "created_at": "2026-11-24T10:00:00+00:00",
        "finished_at": "2026-11-24T10:00:05+00:00",
    }
    store.upsert(RUNS, [run])
    if latest:
        LabelRuns(store).mark_latest(LabelRun.model_validate(run))


def add_label(store: SqliteStore, run_id: str, comment_id: str, label: int, split: str) -> None:
    p = 0.93 if label else 0.88
    store.upsert(
        LABELS,
        [
            {
                "id": f"{run_id}:{comment_id}",
                "run": run_id,
                "item_id": comment_id,
                "task": "toxicity",
                "label": label,
                "probability": p,
                "probabilities": [1 - p, p] if label else [p, 1 - p],
                "method": "dawid_skene",
                "n_votes": 3,
                "provenance": {
                    "crowd": ["w1", "w2"],
                    "labeling_functions": ["profanity"],
                    "humans": ["ana"],
                },
                "split": split,
                "created_at": "2026-11-24T10:00:04+00:00",
            }
        ],
    )


def add_model(rig: Rig, store: SqliteStore, version: int = 1, *, register: bool = True) -> None:
    """The version's metadata.json as the trainer writes it, and its registry document."""
    path = rig.settings.trainer.models_dir / NAME / str(version) / "metadata.json"
    metadata = json.loads(path.read_text())
    metadata.update(
        label_run=RUN,
        metrics=METRICS,
        hyperparameters=HYPER,
        git_revision="abc1234",
        blessing=BLESSING,
        selection_metric="roc_auc",
        job="job-1",
    )
    path.write_text(json.dumps(metadata))
    if register:
        registry = ModelRegistry(rig.settings.trainer, store)
        registry.register(
            NAME, version, job="job-1", transform=TRANSFORM.version, label_run=RUN,
            metrics=METRICS, params=HYPER, path=str(path.parent),
        )  # fmt: skip
        registry.bless(NAME, version, BLESSING["reason"])


def stream_prediction(version: int = 1) -> dict[str, Any]:
    return {
        "score": 0.8125,
        "label": "1",
        "threshold": 0.5,
        "model_version": version,
        "transform_version": TRANSFORM.version,
    }


# -- the whole chain ------------------------------------------------------------------------------


def test_the_chain_runs_from_the_stored_comment_to_the_streamed_score(
    rig: Rig, store: SqliteStore
) -> None:
    add_comment(store, "c1", prediction=stream_prediction())
    add_votes(store, "c1", {"w1": 1, "w2": 1, "w3": 0, "human:ana": 1})
    add_votes(store, "c2", {"w1": 0})  # another comment's vote is not in c1's chain
    add_run(store, OLD_RUN, "majority", latest=False)
    add_run(store, RUN, "dawid_skene", latest=True)
    add_label(store, OLD_RUN, "c1", 0, "dev")
    add_label(store, RUN, "c1", 1, "train")
    add_model(rig, store)

    chain = reader(rig, store).explain("c1").to_json()

    Lineage.model_validate(chain)  # the documented response shape
    assert chain["id"] == "c1"
    assert chain["missing"] == {}
    assert chain["comment"]["text"] == TEXT
    assert chain["comment"]["metadata"] == {"year": 2005, "logged_in": True}
    assert "prediction" not in chain["comment"]  # it is the chain's end, not the comment's
    votes = chain["votes"]
    assert (votes["total"], votes["listed"]) == (4, 4)
    assert votes["by_label"] == {"0": 1, "1": 3}
    assert votes["by_voter"] == {"crowd": 3, "human": 1}
    assert votes["mean_label"] == 0.75
    assert {v["annotator_id"] for v in votes["items"]} == {"w1", "w2", "w3", "human:ana"}

    label = chain["label"]
    assert (label["value"], label["run"], label["split"]) == (1, RUN, "train")
    assert label["chosen_from"] == "the label run the model was trained on"
    assert label["trained_on"] is True
    assert label["derivation"]["posterior"] == pytest.approx([0.07, 0.93])
    assert label["derivation"]["labeling_functions"] == ["profanity"]
    assert label["derivation"]["humans"] == ["ana"]
    assert label["derivation"]["threshold"] == 0.5
    assert label["label_run"]["params"]["strategy"] == "dawid_skene"
    assert label["label_run"]["stats"] == {"items": 3, "labeled": 2, "converged": True}

    transform = chain["transform"]
    assert transform["version"] == TRANSFORM.version
    assert transform["dim"] == TRANSFORM.dim
    assert "char 2-4-grams" in transform["summary"]
    assert "logged_in, year" in transform["summary"]

    model = chain["model"]
    assert (model["name"], model["version"], model["state"]) == (NAME, 1, "blessed")
    assert model["metrics"] == METRICS
    assert model["hyperparameters"] == HYPER
    assert model["label_run"] == RUN
    assert model["git_revision"] == "abc1234"
    assert model["blessing"]["reason"] == BLESSING["reason"]
    assert model["transform"] == TRANSFORM.version

    score = chain["score"]
    assert score["source"] == "stream"
    assert score["score"] == 0.8125
    assert score["serving_model_version"] == 1
    assert rig.client.calls == []  # a stored score is not scored again
    # Its words are explained by the version that gave it, on the stored text.
    assert [span["text"] for span in score["spans"]] == TEXT.split()
    assert [version for version, _ in rig.client.explain_calls] == [1]


def test_an_unscored_comment_is_scored_now_through_the_predictor_and_its_cache(
    rig: Rig, store: SqliteStore
) -> None:
    add_comment(store, "c1")
    add_model(rig, store)
    lineage = reader(rig, store)

    first = lineage.explain("c1").to_json()["score"]
    assert first["source"] == "scored_now"
    assert first["cached"] is False
    # The comment's own metadata is featurized with its text, as the stream does.
    batch = TRANSFORM.apply([TEXT], [{"year": 2005, "logged_in": True}])
    expected = fake_probabilities(1, *padded_rows(batch, 0, 1), 2)[0, 1]
    assert expected != pytest.approx(rig.expected([TEXT], 1)[0, 1])
    assert first["score"] == pytest.approx(float(expected), abs=1e-6)
    assert first["model_version"] == 1
    assert first["transform_version"] == TRANSFORM.version
    assert len(rig.client.calls) == 1

    again = lineage.explain("c1").to_json()["score"]
    assert again["cached"] is True
    assert again["score"] == first["score"]
    assert len(rig.client.calls) == 1


def test_the_model_is_the_one_that_made_the_stored_score_not_the_serving_one(
    rig: Rig, store: SqliteStore
) -> None:
    rig.add_version(2)
    rig.client.available = [1, 2]
    rig.tracker.refresh()
    add_model(rig, store, 1)
    add_model(rig, store, 2)
    add_comment(store, "c1", prediction=stream_prediction(version=1))

    chain = reader(rig, store).explain("c1").to_json()

    assert chain["model"]["version"] == 1
    assert chain["score"]["model_version"] == 1
    assert chain["score"]["serving_model_version"] == 2


def test_a_stored_prediction_without_a_usable_version_is_not_trusted(
    rig: Rig, store: SqliteStore
) -> None:
    add_comment(store, "c1", prediction={**stream_prediction(), "model_version": "../1"})

    chain = reader(rig, store).explain("c1").to_json()

    assert chain["score"]["source"] == "scored_now"
    assert chain["model"]["version"] == 1


# -- missing parts are null with a reason ----------------------------------------------------------


def test_missing_parts_are_null_and_say_why(rig: Rig, store: SqliteStore) -> None:
    add_comment(store, "lonely")
    rig.client.down = True
    rig.tracker.refresh()  # the model server is gone and nothing is registered

    chain = reader(rig, store).explain("lonely").to_json()

    Lineage.model_validate(chain)
    assert chain["votes"]["total"] == 0
    assert chain["votes"]["items"] == []
    assert chain["label"] is None
    assert "not labeled in live-toxicity" in chain["missing"]["label"]
    assert chain["score"] is None
    assert "cannot be scored now" in chain["missing"]["score"]
    assert "unavailable" in chain["missing"]["score"]
    # The tracker keeps its pinned version through an outage: the model is still known.
    assert chain["model"]["version"] == 1
    assert chain["model"]["state"] is None
    assert "no model 'toxicity' version 1" in chain["missing"]["model.registry"]
    assert chain["transform"]["version"] == TRANSFORM.version


def test_without_any_model_the_model_and_transform_are_missing(
    tmp_path: Path, store: SqliteStore
) -> None:
    rig = Rig(tmp_path, TRANSFORM, versions=())
    add_comment(store, "c1")

    chain = reader(rig, store).explain("c1").to_json()

    assert (chain["score"], chain["model"], chain["transform"]) == (None, None, None)
    assert "has no serving nor production version" in chain["missing"]["model"]
    assert chain["missing"]["transform"] == "no model version names a transform"
    assert "no available version" in chain["missing"]["score"]


def test_a_transform_gone_from_the_artifact_store_is_missing(rig: Rig, store: SqliteStore) -> None:
    other = small_transform(seed=3)
    add_comment(store, "c1", prediction={**stream_prediction(), "transform_version": "tf-x"})
    path = rig.settings.trainer.models_dir / NAME / "1" / "metadata.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "transform": other.version}))

    chain = reader(rig, store).explain("c1").to_json()

    assert chain["transform"] is None
    assert f"transform {other.version} cannot be read" in chain["missing"]["transform"]
    assert chain["model"]["transform"] == other.version


def test_the_label_falls_back_to_the_latest_run_then_to_the_live_label(
    rig: Rig, store: SqliteStore
) -> None:
    add_model(rig, store)  # trained on RUN, which did not label these comments
    add_run(store, RUN, "dawid_skene", latest=False)
    add_run(store, OLD_RUN, "mean_threshold", latest=True)
    add_comment(store, "late")
    add_label(store, OLD_RUN, "late", 1, "test")
    add_comment(store, "live")
    add_label(store, "live-toxicity", "live", 0, "train")
    lineage = reader(rig, store)

    late = lineage.explain("late").to_json()["label"]
    assert (late["run"], late["chosen_from"]) == (OLD_RUN, "the latest finished label run")
    assert late["trained_on"] is False
    assert late["label_run"]["params"]["strategy"] == "mean_threshold"

    live = lineage.explain("live").to_json()["label"]
    assert live["run"] == "live-toxicity"
    assert live["chosen_from"].startswith("the live label")
    assert live["label_run"] is None


def test_metadata_alone_describes_an_unregistered_version_and_the_registry_alone_too(
    rig: Rig, store: SqliteStore
) -> None:
    add_model(rig, store, register=False)
    add_comment(store, "c1", prediction=stream_prediction())
    lineage = reader(rig, store)

    chain = lineage.explain("c1").to_json()
    assert chain["model"]["metrics"] == METRICS
    assert "model.registry" in chain["missing"]

    ModelRegistry(rig.settings.trainer, store).register(
        NAME, 1, job="j", transform=TRANSFORM.version, label_run=RUN, metrics=METRICS,
        params=HYPER, path="gone",
    )  # fmt: skip
    (rig.settings.trainer.models_dir / NAME / "1" / "metadata.json").unlink()
    chain = lineage.explain("c1").to_json()
    assert chain["model"]["state"] == "candidate"
    assert chain["model"]["hyperparameters"] == HYPER
    assert "has no metadata.json" in chain["missing"]["model.metadata"]


# -- bad ids ---------------------------------------------------------------------------------------


def test_an_unknown_id_is_not_found_naming_it(rig: Rig, store: SqliteStore) -> None:
    with pytest.raises(NotFound, match="no comment with id 'nope/42'"):
        reader(rig, store).explain("nope/42")


@pytest.mark.parametrize("bad", ["", "a\x00b", "line\nbreak", "x" * 513])
def test_a_malformed_id_is_a_validation_error(rig: Rig, store: SqliteStore, bad: str) -> None:
    with pytest.raises(ValidationFailed, match="malformed comment id") as caught:
        reader(rig, store).explain(bad)
    assert caught.value.http_status == 422


# -- the CLI's view --------------------------------------------------------------------------------


def rendered(chain: Lineage | dict[str, Any]) -> str:
    console = Console(record=True, width=200, color_system=None)
    console.print(render_lineage(chain))
    return console.export_text()


def test_the_tree_shows_every_part_of_the_chain(rig: Rig, store: SqliteStore) -> None:
    add_comment(store, "c1", prediction=stream_prediction())
    add_votes(store, "c1", {"w1": 1, "w2": 0})
    add_run(store, RUN, "dawid_skene", latest=True)
    add_label(store, RUN, "c1", 1, "train")
    add_model(rig, store)

    chain = reader(rig, store).explain("c1")
    text = rendered(chain)
    assert rendered(chain.to_json()) == text  # as the CLI gets it over HTTP

    assert "comment c1" in text
    assert TEXT in text
    assert "votes (toxicity): 2 — by label 0=1, 1=1, mean 0.500" in text
    assert f"label 1 (p=0.93) by dawid_skene, run {RUN}, split train" in text
    assert "labeling functions: profanity" in text
    assert f"transform {TRANSFORM.version}" in text
    assert "model toxicity v1 (blessed), label run " + RUN in text
    assert "dev: roc_auc=0.9100, macro_f1=0.8000" in text
    assert "hidden_units=8" in text
    assert "blessed: no production model to beat" in text
    assert "score 0.8125 → label 1 (threshold 0.5), model v1, stored by the stream" in text


def test_the_tree_says_why_a_part_is_missing(rig: Rig, store: SqliteStore) -> None:
    add_comment(store, "c1", metadata={})
    rig.client.down = True

    text = rendered(reader(rig, store).explain("c1"))

    assert "label: none — not labeled in live-toxicity" in text
    assert "score: none — not scored by the stream, and it cannot be scored now" in text


def test_the_cli_side_starts_without_tensorflow() -> None:
    # `mlcycle explain` only fetches and renders: the serving parts stay unloaded.
    code = "import sys, mlcycle.inference.lineage; sys.exit('tensorflow' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], timeout=120).returncode == 0
