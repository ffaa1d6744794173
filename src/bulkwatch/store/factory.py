"""Building the state store a `state.url` names.

Error messages name the scheme, never the URL: a database URL may carry a password.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator

from bulkwatch.config import StateSettings
from bulkwatch.store.base import StateStore
from bulkwatch.store.postgres.store import PostgresStore
from bulkwatch.store.sqlite.lock import state_file_lock
from bulkwatch.store.sqlite.store import SqliteStore

__all__ = ["daemon_lock", "open_store", "open_store_from_url", "sqlite_file"]

_SQLITE_PREFIX = "sqlite:///"
_POSTGRES_SCHEMES = frozenset({"postgresql", "postgres"})
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


def sqlite_file(url: str) -> str | None:
    """The database file a SQLite `state.url` names, as written (relative to the working
    directory or absolute); None for an in-memory database or any other URL."""
    if url[: len(_SQLITE_PREFIX)].lower() != _SQLITE_PREFIX:
        return None
    path = url[len(_SQLITE_PREFIX) :]
    return None if not path or path.endswith("/") or path == ":memory:" else path


def open_store_from_url(
    url: str,
    *,
    pool_size: int = 10,
    owner: str | None = None,
    claim_timeout: float = 300.0,
) -> StateStore:
    """Build the (not yet opened) state store a `state.url` names; raise ValueError when the
    URL is unusable. `pool_size` bounds a PostgreSQL store's connections; `owner` and
    `claim_timeout` are its outbox's claims (`PostgresStore`), which a SQLite store, used by
    one process only, does without. Call `await store.open()` before use and
    `await store.close()` after."""
    scheme, sep, _ = url.partition("://")
    if sep and scheme.lower() == "sqlite":
        return _sqlite(url)
    if sep and scheme.lower() in _POSTGRES_SCHEMES:
        return PostgresStore(url, pool_size=pool_size, owner=owner, claim_timeout=claim_timeout)
    shown = repr(scheme) if sep and _SCHEME.fullmatch(scheme) else "(none)"
    raise ValueError(f"unsupported state URL scheme {shown}; use sqlite:// or postgresql://")


def open_store(
    settings: StateSettings, *, owner: str | None = None, claim_timeout: float = 300.0
) -> StateStore:
    """Build the (not yet opened) state store the `state` settings name; `owner` and
    `claim_timeout` as in `open_store_from_url`."""
    return open_store_from_url(
        settings.url, pool_size=settings.pool_size, owner=owner, claim_timeout=claim_timeout
    )


def daemon_lock(
    store: StateStore, *, replicas: bool = False
) -> contextlib.AbstractAsyncContextManager[None]:
    """The lock a daemon holds on its state for its whole life (`StateInUseError` at once
    when another daemon excludes it): a SQLite file's lock; a PostgreSQL database's daemon
    lock, exclusive, or shared between `replicas`; nothing for an in-memory database."""
    if isinstance(store, SqliteStore) and store.path != ":memory:":
        return _entered(state_file_lock(store.path))
    if isinstance(store, PostgresStore):
        return store.daemon_guard(shared=replicas)
    return contextlib.nullcontext()


@contextlib.asynccontextmanager
async def _entered(lock: contextlib.AbstractContextManager[None]) -> AsyncIterator[None]:
    with lock:
        yield
