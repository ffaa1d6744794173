"""A TCP proxy in front of PostgreSQL that a test can cut: a network partition on demand.

Each replica of a test gets its own proxy and its `state.url` points at the proxy's port, so
one replica can lose PostgreSQL while the others keep it. Two ways to cut:

- `blackhole()`: nothing is forwarded any more, in either direction, and nothing is closed;
  new connections are accepted and held the same way. The replica sees statements that
  never answer and connects that never finish: a cable pulled, a firewall dropping packets,
  the hardest case for a client (no error, only silence).
- `drop()`: every connection is closed and new ones are refused at once: the server gone.

`heal()` ends either: connections held by a blackhole are closed (after a partition that
long, TCP would have given up on them too) and new ones are forwarded again.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

__all__ = ["Cut", "PgProxy", "running_proxy"]

_CHUNK = 65536


class Cut(enum.Enum):
    NONE = "none"
    BLACKHOLE = "blackhole"
    DROP = "drop"


class PgProxy:
    """Forwards 127.0.0.1:`port` to `upstream`; `blackhole()`, `drop()` and `heal()` cut it."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.port = 0
        self.cut = Cut.NONE
        self.connections = 0  # accepted since the start, held ones included
        self._server: asyncio.Server | None = None
        self._open: set[asyncio.StreamWriter] = set()
        self._flowing = asyncio.Event()
        self._flowing.set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        self._close_all()
        self._flowing.set()  # held pumps wake up and find their sockets closed
        if self._server is not None:
            with contextlib.suppress(Exception):
                await self._server.wait_closed()

    def blackhole(self) -> None:
        """Stop forwarding, hold every connection open, accept new ones and hold them too."""
        self.cut = Cut.BLACKHOLE
        self._flowing.clear()

    def drop(self) -> None:
        """Close every connection; refuse new ones (accepted and closed at once)."""
        self.cut = Cut.DROP
        self._flowing.clear()
        self._close_all()

    def heal(self) -> None:
        """Forward again; the connections a blackhole held are closed (they are long dead)."""
        if self.cut is Cut.BLACKHOLE:
            self._close_all()
        self.cut = Cut.NONE
        self._flowing.set()

    def _close_all(self) -> None:
        for writer in list(self._open):
            writer.transport.abort()  # a reset, not a polite FIN: nothing more gets through
        self._open.clear()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        if self.cut is Cut.DROP:
            writer.transport.abort()
            return
        self._open.add(writer)
        try:
            await self._flowing.wait()  # a blackhole holds a new connection here
            if writer.transport.is_closing():
                return
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            writer.transport.abort()
            self._open.discard(writer)
            return
        self._open.add(up_writer)
        try:
            await asyncio.gather(self._pump(reader, up_writer), self._pump(up_reader, writer))
        finally:
            for w in (writer, up_writer):
                w.transport.abort()
                self._open.discard(w)

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Copy one direction while not cut; on a blackhole, hold what was read."""
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            while True:
                data = await reader.read(_CHUNK)
                if not data:
                    break
                await self._flowing.wait()
                if writer.transport.is_closing():
                    break
                writer.write(data)
                await writer.drain()
        writer.transport.abort()


@asynccontextmanager
async def running_proxy(upstream: tuple[str, int]) -> AsyncIterator[PgProxy]:
    """A started `PgProxy` to `upstream`, closed (with all its connections) afterwards."""
    proxy = PgProxy(upstream)
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.close()
