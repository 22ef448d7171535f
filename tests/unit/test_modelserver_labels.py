"""TF Serving's version-label rule in the model server's manager.

A config's labels are applied, all or none, once its versions are synced: a label
on a version that is not AVAILABLE is refused with FAILED_PRECONDITION and TF
Serving's message, and the labels in force stay. ``allow_unavailable_labels``
(``--allow_version_labels_for_unavailable_models``) lets a new label wait for its
version, never move an existing label onto one. Loading is stubbed: the rule is
about states, not TensorFlow.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from mlcycle.common.errors import InvalidInput, NotFound
from mlcycle.modelserver import manager as manager_module
from mlcycle.modelserver.config import ModelSettings
from mlcycle.modelserver.errors import FailedPrecondition
from mlcycle.modelserver.flags import ModelServerOptions, parse_flags
from mlcycle.modelserver.manager import ModelManager
from mlcycle.modelserver.versions import VersionPolicy

NAME = "toxicity"


class Loaded:
    """What a stubbed load returns: enough for the manager's bookkeeping."""

    def __init__(self, version: int) -> None:
        self.version = version


@pytest.fixture
def base(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Versions 1-3 load; a folder holding a file named ``broken`` fails to."""

    def load(name: str, version: int, path: Path, tags: tuple[str, ...]) -> Loaded:
        if (path / "broken").exists():
            raise InvalidInput(f"cannot read the SavedModel of version {version}")
        return Loaded(version)

    monkeypatch.setattr(manager_module.Servable, "load", staticmethod(load))
    for version in (1, 2, 3):
        (tmp_path / NAME / str(version)).mkdir(parents=True)
    return tmp_path / NAME


def model(base: Path, versions: set[int], **labels: int) -> ModelSettings:
    policy = VersionPolicy("specific", versions=frozenset(versions))
    return ModelSettings(name=NAME, base_path=base, policy=policy, labels=labels)


def served_version(manager: ModelManager, label: str) -> int:
    return manager.resolve(NAME, label=label).version  # type: ignore[attr-defined]


def test_labels_on_available_versions_apply_and_resolve(base: Path) -> None:
    manager = ModelManager([model(base, {1, 2, 3}, stable=1, canary=2, shadow=3)], warmup=False)
    manager.sync()
    assert manager.labels(NAME) == {"stable": 1, "canary": 2, "shadow": 3}
    assert [served_version(manager, label) for label in ("stable", "canary", "shadow")] == [1, 2, 3]
    assert manager.status(NAME, label="canary")[0].version == 2
    with pytest.raises(InvalidInput, match="Unrecognized servable version label: nope"):
        manager.resolve(NAME, label="nope")


def test_a_label_on_a_version_that_is_not_available_is_refused_and_old_labels_stay(
    base: Path,
) -> None:
    manager = ModelManager([model(base, {1, 2}, stable=1, canary=2)], warmup=False)
    manager.sync()
    (base / "3" / "broken").touch()
    with pytest.raises(FailedPrecondition) as caught:
        manager.reconfigure([model(base, {1, 2, 3}, stable=2, canary=3)])
    assert caught.value.message == (
        f"Request to assign label to version 3 of model {NAME}, "
        "which is not currently available for inference"
    )
    assert caught.value.grpc_code.name == "FAILED_PRECONDITION"
    # All or none: stable did not move to 2 either; the versions of the config are served.
    assert manager.labels(NAME) == {"stable": 1, "canary": 2}
    assert served_version(manager, "stable") == 1
    assert {s.version: s.state for s in manager.status(NAME)} == {
        1: "AVAILABLE",
        2: "AVAILABLE",
        3: "END",
    }

    # A version missing altogether is no more available.
    with pytest.raises(FailedPrecondition, match="version 7 of model"):
        manager.reconfigure([model(base, {1, 2}, stable=1, canary=7)])
    # Once a config's labels all point at available versions, they apply.
    manager.reconfigure([model(base, {1, 2}, stable=2)])
    assert manager.labels(NAME) == {"stable": 2}
    with pytest.raises(InvalidInput, match="Unrecognized servable version label: canary"):
        manager.resolve(NAME, label="canary")


def test_a_version_loaded_by_the_same_config_may_be_labelled(base: Path) -> None:
    # The sync loads the config's versions before its labels are checked.
    manager = ModelManager([model(base, {1}, stable=1)], warmup=False)
    manager.sync()
    manager.reconfigure([model(base, {1, 2}, stable=1, canary=2)])
    assert served_version(manager, "canary") == 2


def test_the_flag_lets_a_new_label_wait_but_never_moves_one_onto_an_unavailable_version(
    base: Path,
) -> None:
    (base / "3" / "broken").touch()
    strict = ModelManager([model(base, {1, 3}, stable=1, canary=3)], warmup=False)
    strict.sync()  # at start: refused, so no label is in force
    assert strict.labels(NAME) == {}

    manager = ModelManager(
        [model(base, {1, 3}, stable=1, canary=3)], warmup=False, allow_unavailable_labels=True
    )
    manager.sync()
    assert manager.labels(NAME) == {"stable": 1, "canary": 3}
    with pytest.raises(NotFound, match=r"Specific\(toxicity, 3\)"):
        manager.resolve(NAME, label="canary")  # the label waits for its version
    # An existing label keeping its version is fine; moving it onto an unavailable one is not.
    manager.reconfigure([model(base, {1, 2, 3}, stable=1, canary=3, shadow=2)])
    assert manager.labels(NAME) == {"stable": 1, "canary": 3, "shadow": 2}
    with pytest.raises(FailedPrecondition, match="version 3 of model"):
        manager.reconfigure([model(base, {1, 2, 3}, stable=3, canary=3)])
    assert manager.labels(NAME)["stable"] == 1


def test_the_flag_is_parsed_not_ignored() -> None:
    defaults = ModelServerOptions()
    assert defaults.allow_version_labels_for_unavailable_models is False
    flag = "--allow_version_labels_for_unavailable_models"
    assert parse_flags([f"{flag}=true"], defaults).allow_version_labels_for_unavailable_models
    assert parse_flags([flag], defaults).allow_version_labels_for_unavailable_models
    assert not parse_flags([f"{flag}=false"], defaults).allow_version_labels_for_unavailable_models
