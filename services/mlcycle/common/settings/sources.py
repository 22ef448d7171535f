"""Reading the flat ``MLCYCLE_*`` variables into sections, and flat overrides likewise."""

from __future__ import annotations

from typing import Any

from pydantic_settings import EnvSettingsSource, NoDecode, SettingsError

from mlcycle.common.settings.sections import FLAT_NAMES, ROOT_FIELDS, SECTIONS, flat_name


class FlatEnvSource(EnvSettingsSource):
    """``MLCYCLE_<flat name>`` variables, nested into their sections.

    The stock environment source would read a section from ``MLCYCLE_<SECTION>__<FIELD>``;
    mlcycle's variables predate the sections and keep their names.
    """

    def __call__(self) -> dict[str, Any]:
        """Every variable that is set, as ``{root field: value, section: {field: value}}``."""
        data: dict[str, Any] = {}
        for name in self.settings_cls.model_fields:
            if name in SECTIONS:
                values = self._section(name)
                if values:
                    data[name] = values
                continue
            raw = self.env_vars.get(f"{self.env_prefix}{name}".lower())
            if raw is not None:
                data[name] = raw
        return data

    def _section(self, section: str) -> dict[str, Any]:
        """The variables of ``section`` that are set, by field name; JSON ones decoded."""
        values: dict[str, Any] = {}
        for name, field in SECTIONS[section].model_fields.items():
            if name == "topics":
                prefix = f"{self.env_prefix}topics__".lower()
                topics = {
                    key[len(prefix) :]: value
                    for key, value in self.env_vars.items()
                    if key.startswith(prefix) and value is not None
                }
                if topics:
                    values[name] = topics
                continue
            variable = f"{self.env_prefix}{flat_name(name, field)}"
            raw = self.env_vars.get(variable.lower())
            if raw is None:
                continue
            if not self.field_is_complex(field) or NoDecode in field.metadata:
                values[name] = raw
                continue
            try:
                values[name] = self.decode_complex_value(name, field, raw)
            except ValueError as exc:  # not JSON
                raise SettingsError(
                    f"error parsing value for field {section}.{name} from {variable.upper()}: "
                    "expected JSON"
                ) from exc
        return values


def nest(flat: dict[str, object]) -> dict[str, Any]:
    """Flat names (``predict_retries``) as nested inputs (``{"inference": {...}}``)."""
    nested: dict[str, Any] = {}
    for key, value in flat.items():
        if key in SECTIONS and isinstance(value, dict):
            nested[key] = merge(nested.get(key, {}), value)
            continue
        if key in SECTIONS or key in ROOT_FIELDS:
            nested[key] = value  # a section given whole, or a root field
            continue
        if key == "topics":
            nested.setdefault("kafka", {})["topics"] = value
            continue
        if key not in FLAT_NAMES:
            raise ValueError(f"unknown setting {key!r}")
        section, field = FLAT_NAMES[key]
        nested.setdefault(section, {})[field] = value
    return nested


def merge(base: dict[str, Any], changes: Any) -> dict[str, Any]:
    """``base`` with ``changes`` applied, section dicts merged field by field."""
    if not isinstance(changes, dict):
        return changes
    merged = dict(base)
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = value
    return merged
