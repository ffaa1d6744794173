"""Notifier filters that can never match: each `events` glob must match an event type, and
each `stores` glob a configured store, or that notifier would silently never fire.

Runs once the settings are valid; each line names the glob's place in the file
(`notifiers[1].events[0]`) and, where one is close, suggests what was probably meant.
"""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Sequence

from bulkwatch.config.settings import Settings
from bulkwatch.model import EventType

__all__ = ["filter_problems"]

_TYPES: tuple[str, ...] = tuple(t.value for t in EventType)
# `bulkwatch.task.*`, `bulkwatch.store.*`: what a near miss of a family most likely meant.
_FAMILIES: tuple[str, ...] = tuple(sorted({t.rsplit(".", 1)[0] + ".*" for t in _TYPES}))


def _matches(glob: str, names: Sequence[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, glob) for name in names)


def _hint(glob: str, candidates: Sequence[str], fallback: str) -> str:
    close = difflib.get_close_matches(glob, candidates, n=1, cutoff=0.6)
    return f"did you mean {close[0]!r}?" if close else fallback


def filter_problems(settings: Settings) -> list[str]:
    """One line per `events` or `stores` glob of a notifier that matches nothing. Store globs
    are not checked when no store is configured (commands that watch stores refuse that)."""
    stores = [store.name for store in settings.stores]
    known_stores = "configured: " + ", ".join(stores)
    known_types = "known: " + ", ".join(_FAMILIES)
    problems: list[str] = []
    for i, notifier in enumerate(settings.notifiers):
        for j, glob in enumerate(notifier.events):
            if not _matches(glob, _TYPES):
                hint = _hint(glob, _TYPES + _FAMILIES, known_types)
                problems.append(
                    f"notifiers[{i}].events[{j}]: {glob!r} matches no event type, so "
                    f"notifier {notifier.name!r} would never get it ({hint})"
                )
        if not stores:
            continue
        for j, glob in enumerate(notifier.stores):
            if not _matches(glob, stores):
                hint = _hint(glob, stores, known_stores)
                problems.append(
                    f"notifiers[{i}].stores[{j}]: {glob!r} matches no configured store, so "
                    f"notifier {notifier.name!r} would never hear of it ({hint})"
                )
    return problems
