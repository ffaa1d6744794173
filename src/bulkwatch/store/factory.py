"""Building a state store from `state.url`: a small registry keyed by URL scheme.

Error messages name the scheme, never the URL: a PostgreSQL URL may carry a password.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from bulkwatch.store.base import StateStore
from bulkwatch.store.sqlite.store import SqliteStore

__all__ = ["StoreOpener", "known_schemes", "open_store_from_url", "register_scheme"]

# Builds an unopened store from the full URL; the caller awaits `open()`.
StoreOpener = Callable[[str], StateStore]

_SQLITE_PREFIX = "sqlite:///"
# RFC 3986 scheme syntax: anything else before "://" might be a mangled credential.
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*")


def _sqlite(url: str) -> StateStore:
    if url[: len(_SQLITE_PREFIX)].lower() != _SQLITE_PREFIX:
        raise ValueError(
            "a SQLite state URL has three slashes: sqlite:///relative.db, "
            "sqlite:////absolute/path.db or sqlite:///:memory:"
        )
    # What follows the third slash is the path as written: "x.db" stays relative to the
    # working directory, "/var/lib/x.db" (from four slashes) is absolute.
    path = url[len(_SQLITE_PREFIX) :]
    if not path or path.endswith("/"):
        raise ValueError("the SQLite state URL names no database file")
    return SqliteStore(path)


def _postgresql(url: str) -> StateStore:
    raise ValueError(
        "PostgreSQL state stores are not built yet; use state.url: sqlite:///bulkwatch.db for now"
    )


_OPENERS: dict[str, StoreOpener] = {
    "sqlite": _sqlite,
    "postgresql": _postgresql,
    "postgres": _postgresql,
}


def register_scheme(scheme: str, opener: StoreOpener) -> None:
    """Make `scheme://...` state URLs build stores with `opener` (replacing any earlier one)."""
    _OPENERS[scheme.lower()] = opener


def known_schemes() -> list[str]:
    """The URL schemes `open_store_from_url` accepts."""
    return sorted(_OPENERS)


def open_store_from_url(url: str) -> StateStore:
    """Build the (not yet opened) state store a `state.url` names; raise ValueError when the
    URL is unusable. Call `await store.open()` before use and `await store.close()` after."""
    scheme, sep, _ = url.partition("://")
    opener = _OPENERS.get(scheme.lower()) if sep else None
    if opener is None:
        shown = repr(scheme) if sep and _SCHEME.fullmatch(scheme) else "(none)"
        raise ValueError(
            f"unsupported state URL scheme {shown}; use one of: "
            + ", ".join(f"{s}://" for s in known_schemes())
        )
    return opener(url)
