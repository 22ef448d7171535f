"""Typed, frozen settings read once from ``MLCYCLE_*`` environment variables.

Entry points call :func:`load_settings` once and hand each component the
section it needs (``settings.inference``, ``settings.kafka``, ...); nothing
else reads ``os.environ``. Every external part has an embedded default that
mlcycle starts by itself, and a setting that swaps it for a real cluster:
``MLCYCLE_KAFKA_BOOTSTRAP``, ``MLCYCLE_ES_URL``, ``MLCYCLE_REDIS_URL``.

Sections group the settings by owner, but the variables stay flat: a field's
variable is ``MLCYCLE_`` and its *flat name*, which is its ``validation_alias``
when it has one (``inference.port`` reads ``MLCYCLE_INFERENCE_PORT``) and its
name otherwise (``inference.predict_deadline_s`` reads
``MLCYCLE_PREDICT_DEADLINE_S``). Flat names are unique across sections, so
``load_settings(predict_deadline_s=1.0)`` and :meth:`Settings.replace` take
them too, as the environment does.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import ModelWrapValidatorHandler, PrivateAttr, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from mlcycle.common.settings.sections import (
    ENV_PREFIX,
    SECTIONS,
    CacheSettings,
    CollectorSettings,
    EdgeSettings,
    FeaturizerSettings,
    InferenceSettings,
    KafkaSettings,
    LabelerSettings,
    ModelServerSettings,
    MonitoringSettings,
    RolloutSettings,
    Section,
    StoreSettings,
    TopicNames,
    TrainerSettings,
    flat_name,
)
from mlcycle.common.settings.sources import FlatEnvSource, merge, nest

__all__ = [
    "CacheSettings",
    "CollectorSettings",
    "EdgeSettings",
    "FeaturizerSettings",
    "InferenceSettings",
    "MonitoringSettings",
    "RolloutSettings",
    "KafkaSettings",
    "LabelerSettings",
    "ModelServerSettings",
    "Section",
    "Settings",
    "StoreSettings",
    "TopicNames",
    "TrainerSettings",
    "load_settings",
    "settings_to_env",
]

# The behavioural suite of a source checkout (services/mlcycle/common/settings -> the root).
CHECKOUT_SUITE = Path(__file__).resolve().parents[4] / "tests" / "behaviour"


class Settings(BaseSettings):
    """Everything a process may be configured with, one section per owner. Frozen."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, frozen=True, extra="ignore")

    # -- where durable state lives (SQLite store, artifacts, models, download cache)
    data_dir: Path = Path(".mlcycle")
    # -- logging
    log_level: str = "INFO"
    log_format: Literal["json", "text"] = "json"
    # -- the interface every server binds and every local client dials
    host: str = "127.0.0.1"

    kafka: KafkaSettings
    store: StoreSettings
    cache: CacheSettings
    edge: EdgeSettings
    collector: CollectorSettings
    labeler: LabelerSettings
    featurizer: FeaturizerSettings
    trainer: TrainerSettings
    modelserver: ModelServerSettings
    inference: InferenceSettings
    monitoring: MonitoringSettings
    rollouts: RolloutSettings

    # The nested inputs before defaults were resolved, so replace() re-resolves them.
    _inputs: dict[str, Any] = PrivateAttr(default_factory=dict)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Init arguments, then the flat ``MLCYCLE_*`` variables; no dotenv or secret files."""
        return init_settings, FlatEnvSource(settings_cls)

    def __init__(self, **values: Any) -> None:
        # Unknown names fail here, before validation, so the error never echoes the other
        # inputs (API keys among them).
        nest(values)
        super().__init__(**values)

    @model_validator(mode="wrap")
    @classmethod
    def _resolve(cls, data: Any, handler: ModelWrapValidatorHandler[Settings]) -> Settings:
        """Nest flat names, fill the defaults that depend on other settings, and keep the
        inputs as given, so :meth:`replace` resolves those defaults again."""
        if not isinstance(data, dict):
            return handler(data)
        inputs = nest(data)
        settings = handler(_with_derived_defaults(inputs))
        settings._inputs = inputs
        return settings

    def replace(self, **changes: object) -> Settings:
        """A copy with ``changes`` (flat names, as in the environment) applied and re-resolved.

        A changed ``data_dir`` moves every path that was left to its default with it.
        """
        changed = nest(changes)  # unknown names fail here, before validation
        return type(self).model_validate(merge(self._inputs, changed))

    def __eq__(self, other: object) -> bool:
        """Equal when every setting is equal: how they were given (kept for :meth:`replace`)
        does not count, so loaded, replaced and copied settings compare by value."""
        if not isinstance(other, BaseSettings):
            return NotImplemented
        return type(self) is type(other) and self.__dict__ == other.__dict__

    def model_copy(
        self, *, update: Mapping[str, Any] | None = None, deep: bool = False
    ) -> Settings:
        """A copy; with ``update``, the same as :meth:`replace` (flat names, re-resolved).

        Pydantic's own copy would set ``update``'s keys as attributes of the root
        unvalidated, so a flat name (``max_body_bytes``) would change nothing.
        """
        if update:
            return self.replace(**update)
        return super().model_copy(deep=deep)


def _with_derived_defaults(inputs: dict[str, Any]) -> dict[str, Any]:
    """``inputs`` with the paths under the data dir and the model server's address filled in
    where they were left empty."""
    sections = {name: dict(inputs.get(name) or {}) for name in SECTIONS}
    given = inputs.get("data_dir")
    # A data dir that is not a path is left for validation to refuse, naming the field.
    usable = isinstance(given, str | os.PathLike) and str(given)
    data_dir = Path(given) if usable else Settings.model_fields["data_dir"].default
    host = inputs.get("host") or Settings.model_fields["host"].default

    def default(section: str, field: str, value: object) -> None:
        values = sections[section]
        alias = flat_name(field, SECTIONS[section].model_fields[field])
        if values.get(field) in (None, "") and values.get(alias) in (None, ""):
            values[field] = value

    default("store", "sqlite_path", data_dir / "store.sqlite3")
    default("featurizer", "artifacts_dir", data_dir / "artifacts")
    if CHECKOUT_SUITE.is_dir():
        default("featurizer", "behaviour_suite", CHECKOUT_SUITE)
    default("trainer", "models_dir", data_dir / "models")
    default(
        "trainer", "study_storage", f"sqlite:///{(data_dir / 'trainer-studies.sqlite3').resolve()}"
    )
    server = sections["modelserver"]
    port = server.get("port") or server.get("model_server_port") or 8500
    default("modelserver", "target", f"{host}:{port}")
    return {**inputs, **sections}


def load_settings(**overrides: object) -> Settings:
    """Read the environment once; ``overrides`` (flat names) win: tests and CLI flags use them."""
    return Settings(**overrides)


def settings_to_env(settings: Settings) -> dict[str, str]:
    """``MLCYCLE_*`` variables that make a child process load exactly ``settings``.

    The local stack starts each service as its own process; this is how the
    parent's resolved settings (free ports, the embedded broker's address)
    reach them without a second source of truth.
    """
    env: dict[str, str] = {}
    for name in ("data_dir", "log_level", "log_format", "host"):
        env[f"{ENV_PREFIX}{name.upper()}"] = str(getattr(settings, name))
    for section in SECTIONS:
        dumped = getattr(settings, section).model_dump(mode="json")
        for name, field in SECTIONS[section].model_fields.items():
            value = dumped[name]
            if name == "topics":
                for topic_field, topic in value.items():
                    env[f"{ENV_PREFIX}TOPICS__{topic_field.upper()}"] = str(topic)
            elif name == "api_keys":
                env[f"{ENV_PREFIX}API_KEYS"] = ",".join(value)
            elif isinstance(value, dict | list):
                env[f"{ENV_PREFIX}{flat_name(name, field).upper()}"] = json.dumps(value)
            elif value is not None:
                env[f"{ENV_PREFIX}{flat_name(name, field).upper()}"] = str(value)
    return env
