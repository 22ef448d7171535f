"""The model registry on the SQLite store: states, history, events, rollback, serving config.

The rollout stages (shadow, canary, a candidate's roll-back) are in
``test_trainer_registry_stages.py``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from google.protobuf import text_format
from tensorflow_serving.config.model_server_config_pb2 import ModelServerConfig

from mlcycle.common.errors import InvalidInput, NotFound, ValidationFailed
from mlcycle.common.settings import Settings, load_settings
from mlcycle.common.store import MODELS
from mlcycle.common.store.sqlite import SqliteStore
from mlcycle.contracts.models import MODEL_STATES, ModelEvent, ModelVersion
from mlcycle.contracts.serving import serving_config_path
from mlcycle.trainer.registry import ModelRegistry
from mlcycle.trainer.serving_config import (
    ServedModel,
    parse_serving_config,
    render_serving_config,
)
from tests.fixtures.registry import NAME, export
from tests.fixtures.registry import register as registered


def register(registry: ModelRegistry, version: int, name: str = NAME, **kw: Any) -> ModelVersion:
    """Registered with a job, metrics and params; not exported (a test exports what it serves)."""
    fields: dict[str, Any] = {
        "job": f"job-{version}",
        "metrics": {"dev": {"roc_auc": 0.91}, "test": {"roc_auc": 0.9}},
        "params": {"units": 64},
    }
    return registered(registry, version, name=name, exported=False, **(fields | kw))


def blessed(registry: ModelRegistry, *versions: int, name: str = NAME) -> None:
    for version in versions:
        export(registry.settings.models_dir, version, name)
        register(registry, version, name)
        registry.bless(name, version, "beats production", compared_to=None)


def served(settings: Settings) -> dict[str, int | None]:
    """Name -> the version labelled ``stable`` in models.config."""
    text = serving_config_path(settings.trainer.models_dir).read_text()
    return {name: model.stable for name, model in parse_serving_config(text).items()}


def actions(doc: ModelVersion) -> list[tuple[str, str | None, str]]:
    return [(h.action, h.from_state, h.to_state) for h in doc.history]


# -- registering --------------------------------------------------------------------------------


def test_register_records_a_candidate_and_is_idempotent(
    registry: ModelRegistry, events: list
) -> None:
    doc = register(registry, 1, data={"rows": {"train": 10}})
    assert doc.id == f"{NAME}:1" and doc.state == "candidate" and doc.version == 1
    assert doc.job == "job-1" and doc.transform == "tf-1" and doc.label_run == "lr-1"
    assert doc.metrics["dev"]["roc_auc"] == pytest.approx(0.91)
    assert doc.data == {"rows": {"train": 10}}
    assert doc.blessing.blessed is False
    assert actions(doc) == [("registered", None, "candidate")]
    assert doc.created_at.endswith("+00:00")

    again = register(registry, 1, job="other", metrics={"dev": {}})
    assert again == doc
    assert [e.event for e in events] == ["registered"]
    assert registry.get(NAME, 1) == doc
    assert len(registry.list_versions(NAME)) == 1


def test_register_rejects_bad_names_and_versions(registry: ModelRegistry) -> None:
    for name in ("../etc", "", "a b", "serving", "x" * 65):
        with pytest.raises(InvalidInput):
            register(registry, 1, name=name)
    for version in (0, -1, True, "1"):
        with pytest.raises(InvalidInput):
            register(registry, version)  # type: ignore[arg-type]


def test_numpy_and_nan_metrics_are_stored_as_json(registry: ModelRegistry) -> None:
    np = pytest.importorskip("numpy")
    doc = register(registry, 1, metrics={"dev": {"roc_auc": np.float32(0.5), "f1": float("nan")}})
    assert doc.metrics == {"dev": {"roc_auc": 0.5, "f1": None}}


def test_next_version_considers_docs_and_directories(
    registry: ModelRegistry, settings: Settings
) -> None:
    assert registry.next_version(NAME) == 1
    register(registry, 2)
    assert registry.next_version(NAME) == 3
    export(settings.trainer.models_dir, 7)
    (settings.trainer.models_dir / NAME / "9.tmp").mkdir()  # not a version folder
    (settings.trainer.models_dir / NAME / "12").touch()  # a file, not a folder
    assert registry.next_version(NAME) == 8
    assert registry.next_version("other") == 1


def test_get_unknown_names_the_available_versions(registry: ModelRegistry) -> None:
    register(registry, 1)
    register(registry, 3)
    with pytest.raises(NotFound) as caught:
        registry.get(NAME, 2)
    assert caught.value.details["available"] == [3, 1]


def test_list_versions_newest_first_with_filters(registry: ModelRegistry) -> None:
    for version in (2, 10, 1):
        register(registry, version)
    register(registry, 4, name="attack")
    registry.bless(NAME, 10, "good")
    assert [d.version for d in registry.list_versions(NAME)] == [10, 2, 1]
    assert [d.id for d in registry.list_versions()] == [
        "attack:4",
        f"{NAME}:10",
        f"{NAME}:2",
        f"{NAME}:1",
    ]
    assert [d.version for d in registry.list_versions(NAME, "blessed")] == [10]
    assert registry.list_versions(NAME, "production") == []
    with pytest.raises(InvalidInput) as caught:
        registry.list_versions(NAME, "shipped")
    assert all(state in caught.value.message for state in MODEL_STATES)


# -- judging ------------------------------------------------------------------------------------


def test_bless_and_unbless(registry: ModelRegistry, events: list) -> None:
    register(registry, 1)
    register(registry, 2)
    doc = registry.bless(NAME, 1, "first model", compared_to=None, metric="roc_auc", value=0.91)
    assert doc.state == "blessed"
    assert doc.blessing.blessed is True and doc.blessing.reason == "first model"
    assert doc.blessing.metric == "roc_auc" and doc.blessing.compared_to is None
    assert actions(doc)[-1] == ("blessed", "candidate", "blessed")

    doc = registry.unbless(NAME, 2, "worse than version 1", compared_to=1, margin=0.01)
    assert doc.state == "unblessed"
    assert doc.blessing.model_dump(mode="json") | {"judged_at": None} == {
        "blessed": False,
        "reason": "worse than version 1",
        "compared_to": 1,
        "margin": 0.01,
        "judged_at": None,
    }
    assert doc.history[-1].reason == "worse than version 1"
    assert [e.event for e in events] == ["registered", "registered", "blessed", "unblessed"]
    assert registry.get(NAME, 2).state == "unblessed"

    # The same judgement again is a no-op; the opposite one is not a transition there is.
    assert registry.bless(NAME, 1, "again") == registry.get(NAME, 1)
    assert len(events) == 4
    with pytest.raises(ValidationFailed, match="only a candidate"):
        registry.bless(NAME, 2, "changed my mind")
    with pytest.raises(ValidationFailed, match="only a candidate"):
        registry.unbless(NAME, 1, "changed my mind")
    with pytest.raises(InvalidInput, match="reason"):
        registry.bless(NAME, 1, "  ")
    with pytest.raises(NotFound):
        registry.bless(NAME, 5, "missing")


# -- promotion and rollback ---------------------------------------------------------------------


def test_promote_archives_the_old_production_and_records_everything(
    registry: ModelRegistry, settings: Settings, events: list
) -> None:
    blessed(registry, 1, 2)
    events.clear()
    first = registry.promote(NAME, 1, "first release")
    assert first.state == "production"
    assert registry.production(NAME).version == 1
    assert served(settings) == {NAME: 1}
    assert [(e.event, e.version, e.previous_version) for e in events] == [("promoted", 1, None)]
    assert "previous_version" in events[0].model_dump(mode="json")  # published, as null

    second = registry.promote(NAME, 2, "better roc_auc")
    old = registry.get(NAME, 1)
    assert second.state == "production" and old.state == "archived"
    assert registry.production(NAME).version == 2
    assert served(settings) == {NAME: 2}
    assert [(e.event, e.version, e.state, e.from_state) for e in events[1:]] == [
        ("archived", 1, "archived", "production"),
        ("promoted", 2, "production", "blessed"),
    ]
    assert events[-1].previous_version == 1 and events[-1].reason == "better roc_auc"
    assert actions(old) == [
        ("registered", None, "candidate"),
        ("blessed", "candidate", "blessed"),
        ("promoted", "blessed", "production"),
        ("archived", "production", "archived"),
    ]
    assert "better roc_auc" in old.history[-1].reason
    assert second.history[-1].reason == "better roc_auc"
    assert all(h.time.endswith("+00:00") for h in old.history)
    assert registry.store.get(MODELS, f"serving:{NAME}")["previous"] == [1]
    assert registry.serving_versions() == {NAME: 2}
    # Pointer documents are not model versions.
    assert {d.id for d in registry.list_versions()} == {f"{NAME}:1", f"{NAME}:2"}


def test_promoting_the_production_version_is_a_no_op(registry: ModelRegistry, events: list) -> None:
    blessed(registry, 1)
    doc = registry.promote(NAME, 1, "release")
    count = len(events)
    assert registry.promote(NAME, 1, "again") == doc
    assert len(events) == count
    assert registry.store.get(MODELS, f"serving:{NAME}")["previous"] == []


def test_promoting_an_unjudged_or_unblessed_version_needs_force(
    registry: ModelRegistry, settings: Settings
) -> None:
    export(settings.trainer.models_dir, 1)
    export(settings.trainer.models_dir, 2)
    register(registry, 1)
    register(registry, 2)
    registry.unbless(NAME, 2, "worse")
    for version, state in ((1, "candidate"), (2, "unblessed")):
        with pytest.raises(ValidationFailed) as caught:
            registry.promote(NAME, version, "ship it")
        assert state in caught.value.message and "force" in caught.value.message
    assert not serving_config_path(settings.trainer.models_dir).exists()

    doc = registry.promote(NAME, 2, "hotfix: known good on the new slice", force=True)
    assert doc.state == "production"
    assert doc.history[-1].forced is True
    assert doc.history[-1].from_state == "unblessed"


def test_promoting_a_version_without_its_saved_model_is_not_found(
    registry: ModelRegistry, settings: Settings
) -> None:
    register(registry, 1)
    registry.bless(NAME, 1, "good")
    with pytest.raises(NotFound, match="no SavedModel"):
        registry.promote(NAME, 1, "release")
    (settings.trainer.models_dir / NAME / "1").mkdir(parents=True)  # an empty folder is no model
    with pytest.raises(NotFound, match="no SavedModel"):
        registry.promote(NAME, 1, "release")
    assert registry.get(NAME, 1).state == "blessed"
    assert registry.production(NAME) is None
    with pytest.raises(NotFound):
        registry.promote(NAME, 4, "release")


def test_rollback_restores_the_previous_production_and_pops_the_stack(
    registry: ModelRegistry, settings: Settings, events: list
) -> None:
    blessed(registry, 1, 2, 3)
    for version in (1, 2, 3):
        registry.promote(NAME, version, f"release {version}")
    assert registry.store.get(MODELS, f"serving:{NAME}")["previous"] == [2, 1]
    events.clear()

    restored, rolled_back = registry.rollback_pair(NAME, "v3 flags every emoji", actor="ops")
    assert (restored.version, restored.state) == (2, "production")
    assert (rolled_back.version, rolled_back.state) == (3, "rolled_back")
    assert actions(restored)[-1] == ("restored", "archived", "production")
    assert actions(rolled_back)[-1] == ("rolled_back", "production", "rolled_back")
    assert rolled_back.history[-1].reason == "v3 flags every emoji"
    assert rolled_back.history[-1].actor == restored.history[-1].actor == "ops"
    assert [(e.event, e.version, e.previous_version, e.from_state, e.actor) for e in events] == [
        ("rolled_back", 3, None, "production", "ops"),
        ("restored", 2, 3, "archived", "ops"),
    ]
    assert served(settings) == {NAME: 2}
    assert registry.store.get(MODELS, f"serving:{NAME}")["previous"] == [1]

    # Twice: one more step back (the rolled-back version is not pushed on the stack).
    assert registry.rollback(NAME, "v2 too").version == 1
    assert served(settings) == {NAME: 1}
    assert registry.get(NAME, 2).state == "rolled_back"
    with pytest.raises(ValidationFailed, match="nothing to roll back to"):
        registry.rollback(NAME, "again")
    assert registry.production(NAME).version == 1

    # A rolled-back version is served again only with force; the replaced one goes on the stack.
    with pytest.raises(ValidationFailed, match="force"):
        registry.promote(NAME, 3, "fixed upstream")
    registry.promote(NAME, 3, "fixed upstream", force=True)
    assert registry.store.get(MODELS, f"serving:{NAME}")["previous"] == [1]
    assert registry.rollback(NAME, "no it was not").version == 1


def test_rollback_without_a_production_version_is_not_found(registry: ModelRegistry) -> None:
    with pytest.raises(NotFound, match="no production version"):
        registry.rollback(NAME, "oops")


def test_rollback_to_a_version_whose_saved_model_is_gone(
    registry: ModelRegistry, settings: Settings
) -> None:
    blessed(registry, 1, 2)
    registry.promote(NAME, 1, "r1")
    registry.promote(NAME, 2, "r2")
    (settings.trainer.models_dir / NAME / "1" / "saved_model.pb").unlink()
    with pytest.raises(NotFound, match="no SavedModel"):
        registry.rollback(NAME, "back")
    assert registry.production(NAME).version == 2


def test_a_failing_emit_does_not_undo_a_durable_change(
    settings: Settings, sqlite_store: SqliteStore
) -> None:
    def broken(event: ModelEvent) -> None:
        raise RuntimeError("broker down")

    registry = ModelRegistry(settings.trainer, sqlite_store, emit=broken)
    blessed(registry, 1)
    assert registry.promote(NAME, 1, "release").state == "production"
    assert registry.get(NAME, 1).state == "production"


# -- serving config -----------------------------------------------------------------------------


def test_serving_config_is_valid_text_proto_with_escaped_strings() -> None:
    base = '/mnt/models "quoted"\\é\n'
    text = render_serving_config({"toxicity": 3, "attack": 1}, base)
    parsed = text_format.Parse(text, ModelServerConfig())
    configs = {c.name: c for c in parsed.model_config_list.config}
    assert configs["toxicity"].base_path == base + "/toxicity"
    assert configs["toxicity"].model_platform == "tensorflow"
    assert list(configs["toxicity"].model_version_policy.specific.versions) == [3]
    assert list(configs["attack"].model_version_policy.specific.versions) == [1]
    assert dict(configs["toxicity"].version_labels) == {"stable": 3}
    assert parse_serving_config(text) == {
        "attack": ServedModel((1,), {"stable": 1}),
        "toxicity": ServedModel((3,), {"stable": 3}),
    }
    assert text_format.Parse(render_serving_config({}, "/m"), ModelServerConfig())


def test_parse_serving_config_reads_other_policies_and_syntax() -> None:
    text = """
    # written by hand
    model_config_list: {
      config: {
        name: 'latest' base_path: "/m/latest" model_version_policy { latest { num_versions: 2 } }
      },
      config < name: "all" model_version_policy: { all {} } >
      config { name: "default" base_path: "/m/default" }
      config { name: "several" model_version_policy { specific { versions: [1, 4] } } }
    }
    """
    assert {name: (m.versions, m.stable) for name, m in parse_serving_config(text).items()} == {
        "latest": ((), None),
        "all": ((), None),
        "default": ((), None),
        "several": ((1, 4), 4),
    }
    assert parse_serving_config("") == {}
    with pytest.raises(InvalidInput, match="not a text-format serving config"):
        parse_serving_config("model_config_list { config { name: 'x' }")


def test_serving_config_follows_promotions_and_rollbacks_of_every_name(
    registry: ModelRegistry, settings: Settings
) -> None:
    blessed(registry, 1, 2)
    blessed(registry, 5, name="attack")
    registry.promote(NAME, 1, "r1")
    registry.promote("attack", 5, "a5")
    assert served(settings) == {NAME: 1, "attack": 5}
    registry.promote(NAME, 2, "r2")
    assert served(settings) == {NAME: 2, "attack": 5}
    registry.rollback(NAME, "back")
    assert served(settings) == {NAME: 1, "attack": 5}
    text = serving_config_path(settings.trainer.models_dir).read_text()
    assert f'base_path: "{(settings.trainer.models_dir / NAME).resolve()}"' in text
    assert not list(settings.trainer.models_dir.glob(".models.config.*"))  # no temp file left

    # write_serving_config rebuilds the file from the store (e.g. at service start).
    serving_config_path(settings.trainer.models_dir).unlink()
    assert registry.write_serving_config() == serving_config_path(settings.trainer.models_dir)
    assert served(settings) == {NAME: 1, "attack": 5}


def test_serving_config_base_path_override(tmp_path: Path, sqlite_store: SqliteStore) -> None:
    settings = load_settings(data_dir=tmp_path, model_server_base_path="/models/")
    registry = ModelRegistry(settings.trainer, sqlite_store)
    blessed(registry, 1)
    registry.promote(NAME, 1, "release")
    text = serving_config_path(settings.trainer.models_dir).read_text()
    assert 'base_path: "/models/toxicity"' in text
    assert (
        serving_config_path(settings.trainer.models_dir)
        == settings.trainer.models_dir / "models.config"
    )
