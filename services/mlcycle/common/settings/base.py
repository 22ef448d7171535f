"""What every settings section is."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Section(BaseModel):
    """One owner's settings: frozen, and filled by flat name or by field name."""

    model_config = ConfigDict(frozen=True, validate_by_name=True, validate_by_alias=True)
