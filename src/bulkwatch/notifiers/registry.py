"""The notifier types bulkwatch knows: built-ins, and plugins found by entry point.

Third-party packages add a type with an entry point in the group `bulkwatch.notifiers`:

    [project.entry-points."bulkwatch.notifiers"]
    file = "bulkwatch_file_notifier:TYPE"

The entry point names the type (the `type:` of a notifier in the config) and resolves to a
`NotifierType`, or to a callable that returns one. The group is read once, on the first lookup,
but a plugin is imported only when a config asks for its type: a broken plugin never stops a
config that does not use it, and a config that does gets a `PluginError` naming the plugin and
what went wrong. A plugin may not replace a built-in type; it is ignored with a warning.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from importlib.metadata import EntryPoint, entry_points
from typing import Any

import structlog

from bulkwatch.notifiers.base import NotifierConfig, NotifierType

__all__ = [
    "ENTRY_POINT_GROUP",
    "NotifierRegistry",
    "NotifierType",
    "PluginError",
    "get",
    "known_types",
]

ENTRY_POINT_GROUP = "bulkwatch.notifiers"

_log = structlog.get_logger("bulkwatch")


class PluginError(Exception):
    """A notifier plugin that is installed but cannot be used; the message names it."""


def _builtin_types() -> list[NotifierType[Any]]:
    """The types bulkwatch ships; a plugin cannot take one of their names."""
    # Imported on first use, not with this module: the config imports the registry, so
    # `bulkwatch --help` would otherwise load aiohttp and aiosmtplib, which doubles its time.
    from bulkwatch.notifiers import apprise, command, email, log, slack, webhook  # noqa: PLC0415

    return [log.TYPE, webhook.TYPE, slack.TYPE, email.TYPE, command.TYPE, apprise.TYPE]


def _describe(entry: EntryPoint) -> str:
    dist = entry.dist
    where = f" from {dist.name} {dist.version}" if dist is not None else ""
    return f"notifier plugin {entry.name!r} ({entry.value}{where})"


class NotifierRegistry:
    """Types by name. Built-ins load on first use; plugins when their name is looked up.

    `discover` lists the candidate entry points; the default reads the installed
    distributions. Tests pass their own to exercise broken or clashing plugins.
    """

    def __init__(self, discover: Callable[[], Iterable[EntryPoint]] | None = None) -> None:
        self._discover = discover or (lambda: entry_points(group=ENTRY_POINT_GROUP))
        self._types: dict[str, NotifierType[Any]] = {}
        self._plugins: dict[str, EntryPoint] | None = None
        self._broken: dict[str, str] = {}

    def get(self, name: str) -> NotifierType[Any] | None:
        """The type called `name`, or None when nothing provides it.

        Raises `PluginError` when a plugin provides the name but cannot be loaded.
        """
        plugins = self._entry_points()
        kind = self._types.get(name)
        if kind is not None:
            return kind
        if name in self._broken:
            raise PluginError(self._broken[name])
        entry = plugins.get(name)
        if entry is None:
            return None
        try:
            kind = _load(entry)
        except PluginError as exc:
            self._broken[name] = str(exc)
            raise
        self._types[name] = kind
        return kind

    def known_types(self) -> list[str]:
        """Every type name a config may use, plugins included (without importing them)."""
        plugins = self._entry_points()  # first: it also loads the built-ins
        return sorted({*self._types, *plugins})

    def _entry_points(self) -> dict[str, EntryPoint]:
        """Plugins by type name; the first call also loads the built-ins."""
        if self._plugins is not None:
            return self._plugins
        for kind in _builtin_types():
            self._types.setdefault(kind.name, kind)
        plugins: dict[str, EntryPoint] = {}
        for entry in self._discover():
            if entry.name in self._types:
                _log.warning(
                    "notifier plugin ignored: a built-in type has its name",
                    plugin=_describe(entry),
                )
            elif entry.name in plugins:
                _log.warning(
                    "notifier plugin ignored: another plugin has its name",
                    plugin=_describe(entry),
                    kept=_describe(plugins[entry.name]),
                )
            else:
                plugins[entry.name] = entry
        self._plugins = plugins
        return plugins


def _load(entry: EntryPoint) -> NotifierType[Any]:
    """Import an entry point and check that it gives a usable `NotifierType`."""
    what = _describe(entry)
    try:
        target = entry.load()
        kind = target() if callable(target) else target
    except Exception as exc:  # third-party code may raise anything; the user gets its name
        raise PluginError(f"{what} failed to load: {type(exc).__name__}: {exc}") from exc
    if not isinstance(kind, NotifierType):
        raise PluginError(
            f"{what} must give a bulkwatch NotifierType (or a callable returning one), "
            f"not {type(kind).__name__}"
        )
    if kind.name != entry.name:
        raise PluginError(f"{what} declares type {kind.name!r}; the names must match")
    model = kind.config_model
    if not (isinstance(model, type) and issubclass(model, NotifierConfig)):
        raise PluginError(f"{what}: config_model must subclass bulkwatch NotifierConfig")
    if not callable(kind.factory):
        raise PluginError(f"{what}: factory is not callable")
    return kind


_default = NotifierRegistry()


def get(name: str) -> NotifierType[Any] | None:
    """The notifier type called `name` (None if unknown; `PluginError` if it is broken)."""
    return _default.get(name)


def known_types() -> list[str]:
    """Names of every notifier type: built-ins and installed plugins."""
    return _default.known_types()
