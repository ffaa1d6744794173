"""The notifier types bulkwatch knows: built-ins, plus any registered at start-up."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from bulkwatch.notifiers.base import Notifier, NotifierConfig, NotifierContext

__all__ = ["NotifierType", "get", "known_types", "register"]


@dataclass(frozen=True, slots=True)
class NotifierType:
    name: str
    config_model: type[NotifierConfig]
    factory: Callable[[NotifierConfig, NotifierContext], Notifier]


_TYPES: dict[str, NotifierType] = {}


def register(kind: NotifierType) -> None:
    """Make a notifier type available to config validation and the app."""
    _TYPES[kind.name] = kind


def _load_builtins() -> None:
    from bulkwatch.notifiers import log, webhook  # noqa: PLC0415 - avoids an import cycle

    for kind in (log.TYPE, webhook.TYPE):
        _TYPES.setdefault(kind.name, kind)


def get(name: str) -> NotifierType | None:
    if not _TYPES:
        _load_builtins()
    return _TYPES.get(name)


def known_types() -> list[str]:
    if not _TYPES:
        _load_builtins()
    return sorted(_TYPES)
