"""The gRPC key plumbing that needs no server: metadata in and out, tables, the stack's own key."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlcycle.common.errors import Forbidden
from mlcycle.common.grpc_auth import (
    bearer_metadata,
    check_table,
    method_name,
    presented_key,
    service_methods,
)
from mlcycle.common.keys import KeyRing, Scope
from mlcycle.common.settings import Settings, load_settings
from mlcycle.local.stack import STACK_KEY_NAME, service_key_env
from mlcycle.protos.mlcycle.v1 import featurizer_pb2

pytestmark = pytest.mark.unit

FEATURIZER = featurizer_pb2.DESCRIPTOR.services_by_name["FeaturizerService"].full_name


@pytest.mark.parametrize(
    ("metadata", "presented"),
    [
        ((("authorization", "Bearer s3cret"),), "s3cret"),
        ((("authorization", "bearer  s3cret "),), "s3cret"),
        ((("user-agent", "x"), ("authorization", "BEARER s3cret")), "s3cret"),
        ((("authorization", "Basic dXNlcjpwYXNz"),), None),
        ((("authorization", "Bearer"),), None),
        ((("authorization", "Bearer "),), None),
        ((("x-api-key", "s3cret"),), None),
        ((), None),
        (None, None),
    ],
)
def test_only_a_bearer_authorization_entry_presents_a_key(metadata, presented) -> None:
    assert presented_key(metadata) == presented


def test_what_a_client_sends_is_what_the_server_reads() -> None:
    assert presented_key(bearer_metadata("k-1")) == "k-1"
    assert bearer_metadata("") == ()  # keys off: nothing to send


def test_a_table_must_name_every_method_of_the_served_services() -> None:
    methods = service_methods([FEATURIZER])
    assert methods == [method_name(FEATURIZER, m) for m in ("Fit", "Featurize", "GetTransform")]
    check_table([FEATURIZER], dict.fromkeys(methods, Scope.ADMIN))
    with pytest.raises(ValueError, match="GetTransform"):
        check_table([FEATURIZER], dict.fromkeys(methods[:2], Scope.ADMIN))
    with pytest.raises(ValueError, match="no proto descriptor"):
        service_methods(["no.such.Service"])


def child_settings(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Settings:
    """The settings a service of the stack loads from the variables it is given."""
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return load_settings(data_dir=tmp_path)


def test_without_keys_the_stack_adds_none(tmp_path: Path) -> None:
    assert service_key_env(load_settings(data_dir=tmp_path)) == {}


def test_the_users_own_service_key_is_left_alone(tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path, api_keys=("svc:predict:mine",), service_key="mine")
    assert service_key_env(settings) == {}


def test_with_keys_each_service_gets_a_predict_key_that_is_in_its_ring(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    keys_file = tmp_path / "keys"
    keys_file.write_text("ops:admin:from-the-file\n", encoding="utf-8")
    settings = load_settings(
        data_dir=tmp_path, api_keys=("app:predict:app-secret",), api_keys_file=keys_file
    )
    env = service_key_env(settings)
    assert env != service_key_env(settings)  # a fresh secret at every start
    child = child_settings(env, monkeypatch, tmp_path)
    ring = KeyRing.from_settings(child.edge.api_keys, settings.edge.api_keys_file)
    caller = ring.authorize(child.edge.service_key, Scope.PREDICT)
    assert caller.name == STACK_KEY_NAME
    with pytest.raises(Forbidden):
        ring.authorize(child.edge.service_key, Scope.TRAIN)
    # The user's keys, from the variable and the file, still work beside it.
    assert ring.authorize("app-secret", Scope.PREDICT).name == "app"
    assert ring.authorize("from-the-file", Scope.ADMIN).name == "ops"
