"""Validating the `notifiers:` list, each entry with the config model of its `type`.

The models come from the notifier registry, so a plugin's type is checked like a built-in one;
the problems are lines for `ConfigError`, each naming the entry (`notifiers[2].url: ...`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from bulkwatch.config.errors import validation_problems
from bulkwatch.notifiers import registry

__all__ = ["validate_notifiers"]


def validate_notifiers(value: Any) -> tuple[list[Any], list[str]]:
    """Validate each notifier with the config model of its `type`: (configs, problems).

    A value that is not a list is returned as it is, for the settings model to reject.
    """
    if not isinstance(value, list):
        return value, []
    out: list[Any] = []
    problems: list[str] = []
    for i, item in enumerate(value):
        if not isinstance(item, Mapping):
            problems.append(f"notifiers[{i}]: must be a mapping of fields")
            continue
        kind_name = item.get("type")
        if not isinstance(kind_name, str):
            problems.append(f"notifiers[{i}].type: field required ({_known()})")
            continue
        try:
            kind = registry.get(kind_name)
        except registry.PluginError as exc:
            problems.append(f"notifiers[{i}].type: {exc}")
            continue
        if kind is None:
            problems.append(
                f"notifiers[{i}].type: unknown notifier type {kind_name!r} ({_known()})"
            )
            continue
        try:
            out.append(kind.config_model.model_validate(dict(item)))
        except ValidationError as exc:
            problems.extend(validation_problems(exc, prefix=f"notifiers[{i}]."))
    return out, problems


def _known() -> str:
    return "known: " + ", ".join(registry.known_types())
