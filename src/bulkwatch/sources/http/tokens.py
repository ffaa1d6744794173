"""Where a source gets the token it sends: `TokenProvider`, which follows a rotated file
(and `refresh.RefreshingTokenProvider`, which renews a Shopline app's token itself)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Protocol

from bulkwatch.common.redact import register_secrets
from bulkwatch.model import EndpointKey

__all__ = ["TokenProvider", "Tokens"]


class Tokens(Protocol):
    """The token a source sends, and a number that changes whenever that token does."""

    @property
    def version(self) -> int: ...

    def current(self) -> str | None:
        """The token in use now, without waiting (None: none configured)."""

    async def token_at(self, key: EndpointKey, now: datetime) -> str | None:
        """The token to poll `key` with at `now`; may renew it first (`PollError` when that
        fails in a way polling cannot go on from)."""


class TokenProvider:
    """A store's access token, re-read from its file whenever the file changes.

    Shopline tokens last about ten hours, so a rotated file must take effect without a restart.
    One `stat` per poll is the whole cost while the file stays the same.
    """

    def __init__(self, token: str | None, path: Path | None) -> None:
        self._token = token
        self._path = path
        self._seen: tuple[int, int, int] | None = None
        self.version = 0  # +1 whenever a new token is read: ends a wait after a 401

    def __repr__(self) -> str:
        # Never the token itself: a repr lands in tracebacks and debug logs.
        return f"TokenProvider(path={self._path!r}, version={self.version})"

    def current(self) -> str | None:
        """The token to send now, or None when none was ever configured."""
        if self._path is not None:
            self._refresh(self._path)
        return self._token

    async def token_at(self, key: EndpointKey, now: datetime) -> str | None:
        """The token to send now: the file's latest, or the inline one."""
        return self.current()

    def _refresh(self, path: Path) -> None:
        try:
            st = path.stat()
        except OSError:
            return  # mid-rotation (rename) or removed: the last good token is still the best bet
        # Inode and size catch an atomic rename or a rewrite within the mtime granularity.
        signature = (st.st_mtime_ns, st.st_size, st.st_ino)
        if signature == self._seen:
            return
        try:
            token = path.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError):
            return
        if token:  # an empty file is a writer caught halfway: read it again next poll
            if token != self._token:
                self.version += 1
                register_secrets([token])  # a rotated token is as secret as the first
            self._token = token
            self._seen = signature
