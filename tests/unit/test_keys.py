"""Scoped API keys: parsing, hashing, scopes, constant-time lookup, fail-closed exposure."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import pytest

from mlcycle.common.errors import Forbidden, Unauthenticated
from mlcycle.common.keys import (
    OPEN_CALLER,
    KeyConfigError,
    KeyRing,
    Scope,
    check_exposure,
    is_loopback,
)

pytestmark = pytest.mark.unit


def test_a_named_key_is_allowed_its_scopes_and_refused_the_rest() -> None:
    ring = KeyRing.from_entries(["reader:read+predict:s3cret"])
    assert ring.authorize("s3cret", Scope.PREDICT).name == "reader"
    assert ring.authorize("s3cret", Scope.READ).scopes == {Scope.READ, Scope.PREDICT}
    with pytest.raises(Forbidden) as refused:
        ring.authorize("s3cret", Scope.ADMIN)
    assert refused.value.http_status == 403
    assert refused.value.details["required_scope"] == "admin"
    assert "s3cret" not in refused.value.message


def test_admin_grants_every_scope() -> None:
    ring = KeyRing.from_entries(["ops:admin:root-secret"])
    for scope in Scope:
        assert ring.authorize("root-secret", scope).name == "ops"


def test_no_key_and_an_unknown_key_are_401() -> None:
    ring = KeyRing.from_entries(["a:read:x1"])
    for presented in (None, "", "not-a-key"):
        with pytest.raises(Unauthenticated):
            ring.authorize(presented, Scope.READ)


def test_a_digest_entry_matches_its_secret() -> None:
    digest = hashlib.sha256(b"hunter2").hexdigest()
    ring = KeyRing.from_entries([f"ci:train:sha256:{digest.upper()}"])
    assert ring.authorize("hunter2", Scope.TRAIN).name == "ci"
    with pytest.raises(Unauthenticated):
        ring.authorize(f"sha256:{digest}", Scope.TRAIN)


def test_a_bare_key_is_an_all_scope_legacy_key_that_warns_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    ring = KeyRing.from_entries(["old-style-key"])
    with caplog.at_level(logging.WARNING, logger="mlcycle.common.keys"):
        for scope in Scope:
            caller = ring.authorize("old-style-key", scope)
    assert caller.name.startswith("legacy-")
    warnings = [r for r in caplog.records if "deprecated" in r.getMessage()]
    assert len(warnings) == 1
    assert "old-style-key" not in caplog.text


@pytest.mark.parametrize(
    ("entry", "complaint"),
    [
        ("name:read:", "NAME:SCOPES:SECRET"),
        ("bad name:read:TOPSECRET", "must match"),
        ("a:read+root:TOPSECRET", "unknown scope 'root'"),
        ("a:read:sha256:TOPSECRET", "64 hex digits"),
    ],
)
def test_malformed_entries_are_refused_without_their_secret(entry: str, complaint: str) -> None:
    with pytest.raises(KeyConfigError, match=complaint) as refused:
        KeyRing.from_entries([entry])
    assert "TOPSECRET" not in str(refused.value)


def test_names_and_secrets_must_be_unique() -> None:
    with pytest.raises(KeyConfigError, match="repeated: a"):
        KeyRing.from_entries(["a:read:x", "a:read:y"])
    with pytest.raises(KeyConfigError, match="share one secret"):
        KeyRing.from_entries(["a:read:x", "b:admin:x"])


def test_keys_come_from_the_variable_and_the_file(tmp_path: Path) -> None:
    keys_file = tmp_path / "keys"
    keys_file.write_text("# rotated monthly\nbot:ingest:b1\n\nui:read+label:u1,ops:admin:o1\n")
    ring = KeyRing.from_settings(("app:predict:p1",), keys_file)
    assert [key.name for key in ring.keys] == ["app", "bot", "ui", "ops"]
    with pytest.raises(KeyConfigError, match="MLCYCLE_API_KEYS_FILE"):
        KeyRing.from_settings((), tmp_path / "missing")


def test_without_keys_everyone_may_do_everything() -> None:
    assert KeyRing().authorize(None, Scope.ADMIN) is OPEN_CALLER


def test_the_repr_of_a_key_holds_no_digest() -> None:
    ring = KeyRing.from_entries(["a:read:x"])
    assert hashlib.sha256(b"x").hexdigest() not in repr(ring.keys)
    assert "digest" not in repr(ring.keys[0])


def test_a_public_address_without_keys_refuses_to_start_unless_auth_is_off(
    caplog: pytest.LogCaptureFixture,
) -> None:
    open_ring, keyed = KeyRing(), KeyRing.from_entries(["a:read:x"])
    for host in ("127.0.0.1", "::1", "localhost", "127.0.0.2"):
        assert is_loopback(host)
        check_exposure(host, open_ring, auth="on", service="collector")
    for host in ("0.0.0.0", "10.0.0.5", "::", "collector.internal"):
        assert not is_loopback(host)
        check_exposure(host, keyed, auth="on", service="collector")
        with pytest.raises(KeyConfigError, match="MLCYCLE_AUTH=off"):
            check_exposure(host, open_ring, auth="on", service="collector")
    with caplog.at_level(logging.WARNING, logger="mlcycle.common.keys"):
        check_exposure("0.0.0.0", open_ring, auth="off", service="collector")
    assert "MLCYCLE_AUTH=off" in caplog.text
