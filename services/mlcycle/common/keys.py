"""API keys and what each may do: named, scoped keys checked in constant time.

``MLCYCLE_API_KEYS`` (or the file ``MLCYCLE_API_KEYS_FILE``, one entry per line)
holds comma-separated entries ``NAME:SCOPES:SECRET``:

- NAME identifies the caller in every audit record (registry transitions, label
  runs, jobs, human labels) and in logs; the secret never appears anywhere;
- SCOPES is ``+``-joined from :class:`Scope`; ``admin`` grants every scope;
- SECRET is the secret itself, or ``sha256:<hex>`` of it so the configuration
  need not hold the secret.

A bare entry without colons (the format before scopes) is an all-scope key named
``legacy-<first 8 hex digits of its sha256>``; each use logs a deprecation warning.

Every presented secret is hashed and compared with every configured digest with
:func:`hmac.compare_digest`, so timing tells nothing about which key (if any) matched.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from mlcycle.common.errors import Forbidden, Unauthenticated, ValidationFailed

log = logging.getLogger(__name__)

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")
DIGEST_PREFIX = "sha256:"
ANONYMOUS = "anonymous"


class Scope(StrEnum):
    """What a key may do. ``admin`` also promotes, rolls back and administers servers."""

    INGEST = "ingest"  # collector writes
    READ = "read"  # GETs that return data: comments, labels, runs, jobs, registry, reports
    LABEL = "label"  # label runs and human labels
    PREDICT = "predict"  # predictions, on the inference service and the model server
    TRAIN = "train"  # training jobs, featurizer fit and feature sets
    ADMIN = "admin"  # everything above, plus promote, rollback, current transform, reloads


class KeyConfigError(ValueError):
    """A key entry that cannot be used; the message names the entry, never its secret."""


@dataclass(frozen=True)
class ApiKey:
    """One configured key: its name, its scopes and the sha256 digest of its secret."""

    name: str
    scopes: frozenset[Scope]
    digest: bytes = field(repr=False)
    legacy: bool = False

    def allows(self, scope: Scope) -> bool:
        """True when this key may make a call that needs ``scope``."""
        return Scope.ADMIN in self.scopes or scope in self.scopes


def reviewer_of(named: str | None, caller: Caller, keys_required: bool) -> str:
    """Who a human decision is recorded as: a named key's own name, else the body's ``named``.

    A named key decides as itself; naming someone else is refused (403). Without keys, or
    with a bare legacy key (whose name stands for no one), the body must name the reviewer.
    Human labels (the labeler) and moderators' decisions (inference feedback) share it.
    """
    if keys_required and not caller.legacy:
        if named is not None and named != caller.name:
            raise Forbidden(
                f"API key {caller.name!r} labels as {caller.name!r}, not as {named!r}: "
                "omit reviewer, or use the reviewer's own key",
                details={"key": caller.name, "reviewer": named},
            )
        return caller.name
    if named is None:
        raise ValidationFailed(
            "reviewer is required: without a named API key, the body says who labeled",
            details={"field": "reviewer"},
        )
    return named


@dataclass(frozen=True)
class Caller:
    """Who made an authorized call: the key's name (``anonymous`` when keys are off).

    ``legacy`` marks a bare key from before names and scopes: its name is made up, so
    it cannot stand for a person (a human label's reviewer, say).
    """

    name: str
    scopes: frozenset[Scope]
    legacy: bool = False

    def allows(self, scope: Scope) -> bool:
        """True when this caller may also do what needs ``scope``."""
        return Scope.ADMIN in self.scopes or scope in self.scopes


OPEN_CALLER = Caller(ANONYMOUS, frozenset(Scope))


def digest_of(secret: str) -> bytes:
    """The sha256 digest keys are compared by."""
    return hashlib.sha256(secret.encode("utf-8")).digest()


def parse_entry(entry: str, position: int) -> ApiKey:
    """One ``NAME:SCOPES:SECRET`` entry (or a bare legacy secret) as an :class:`ApiKey`."""
    entry = entry.strip()
    if ":" not in entry:
        digest = digest_of(entry)
        return ApiKey(f"legacy-{digest.hex()[:8]}", frozenset(Scope), digest, legacy=True)
    parts = entry.split(":", 2)
    if len(parts) != 3 or not parts[2]:
        raise KeyConfigError(f"API key entry {position} is not NAME:SCOPES:SECRET")
    name, scope_text, secret = parts
    if not NAME_PATTERN.match(name):
        raise KeyConfigError(
            f"API key entry {position}: name {name!r} must match {NAME_PATTERN.pattern}"
        )
    scopes: set[Scope] = set()
    for word in scope_text.split("+"):
        try:
            scopes.add(Scope(word.strip()))
        except ValueError:
            known = ", ".join(s.value for s in Scope)
            raise KeyConfigError(
                f"API key {name!r}: unknown scope {word!r} (known: {known})"
            ) from None
    if secret.startswith(DIGEST_PREFIX):
        hex_digest = secret[len(DIGEST_PREFIX) :].strip().lower()
        if not re.fullmatch(r"[0-9a-f]{64}", hex_digest):
            raise KeyConfigError(f"API key {name!r}: sha256: must be followed by 64 hex digits")
        digest = bytes.fromhex(hex_digest)
    else:
        digest = digest_of(secret)
    return ApiKey(name, frozenset(scopes), digest)


class KeyRing:
    """The configured keys; :meth:`authorize` answers who is calling, or why they may not."""

    def __init__(self, keys: Iterable[ApiKey] = ()) -> None:
        self.keys = tuple(keys)
        names = [key.name for key in self.keys]
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise KeyConfigError(f"API key names must be unique; repeated: {', '.join(repeated)}")
        if len({key.digest for key in self.keys}) != len(self.keys):
            raise KeyConfigError("two API keys share one secret; give each caller its own")
        self._warned: set[str] = set()

    @classmethod
    def from_entries(cls, entries: Iterable[str]) -> KeyRing:
        """Keys from ``NAME:SCOPES:SECRET`` entries; blank entries and ``#`` comments skipped."""
        kept = [e.strip() for e in entries if e.strip() and not e.strip().startswith("#")]
        return cls(parse_entry(entry, position) for position, entry in enumerate(kept, 1))

    @classmethod
    def from_settings(cls, api_keys: Iterable[str], api_keys_file: Path | None) -> KeyRing:
        """Keys from ``MLCYCLE_API_KEYS`` and the lines (or commas) of ``MLCYCLE_API_KEYS_FILE``."""
        entries = list(api_keys)
        if api_keys_file is not None:
            try:
                text = api_keys_file.read_text(encoding="utf-8")
            except OSError as exc:
                raise KeyConfigError(f"cannot read MLCYCLE_API_KEYS_FILE: {exc.strerror}") from None
            entries += [part for line in text.splitlines() for part in line.split(",")]
        return cls.from_entries(entries)

    @property
    def open(self) -> bool:
        """True when no key is configured: every caller may do everything."""
        return not self.keys

    def identify(self, presented: str) -> ApiKey | None:
        """The key whose secret was presented, compared in constant time with every key."""
        presented_digest = digest_of(presented)
        found: ApiKey | None = None
        for key in self.keys:
            if hmac.compare_digest(presented_digest, key.digest):
                found = key
        return found

    def authorize(self, presented: str | None, scope: Scope) -> Caller:
        """The caller presenting ``presented`` if it may use ``scope``; else 401 or 403."""
        if self.open:
            return OPEN_CALLER
        if not presented:
            raise Unauthenticated("missing API key: send 'Authorization: Bearer <key>'")
        key = self.identify(presented)
        if key is None:
            raise Unauthenticated("invalid API key")
        if key.legacy and key.name not in self._warned:
            self._warned.add(key.name)
            log.warning(
                "API key %s has no name or scopes; bare keys are deprecated: "
                "write it as NAME:SCOPES:SECRET in MLCYCLE_API_KEYS",
                key.name,
            )
        if not key.allows(scope):
            raise Forbidden(
                f"API key {key.name!r} lacks the {scope.value!r} scope this call needs",
                details={
                    "key": key.name,
                    "required_scope": scope.value,
                    "scopes": sorted(s.value for s in key.scopes),
                },
            )
        return Caller(key.name, key.scopes, legacy=key.legacy)


def is_loopback(host: str) -> bool:
    """True for addresses only this machine can reach (``127.0.0.1``, ``::1``, ``localhost``)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_exposure(host: str, ring: KeyRing, *, auth: str, service: str) -> None:
    """Refuse to listen on ``host`` beyond loopback without keys, unless auth is off on purpose.

    Raises :class:`KeyConfigError` (the service does not start); with
    ``MLCYCLE_AUTH=off`` it logs a warning instead.
    """
    if not ring.open or is_loopback(host):
        return
    if auth == "off":
        log.warning(
            "%s listens on %s with no API keys and MLCYCLE_AUTH=off: anyone who reaches it "
            "may call every route",
            service,
            host,
        )
        return
    raise KeyConfigError(
        f"{service} would listen on {host} with no API keys: set MLCYCLE_API_KEYS "
        "(or MLCYCLE_API_KEYS_FILE), bind to 127.0.0.1, or set MLCYCLE_AUTH=off explicitly"
    )
