"""The base of every settings model: frozen once validated, and an unknown field is an error
(a misspelt field must not silently fall back to its default)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

__all__ = ["FrozenModel"]


class FrozenModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
