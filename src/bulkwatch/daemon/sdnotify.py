"""systemd's notify protocol in plain Python: READY=1, WATCHDOG=1, STOPPING=1 and STATUS=.

The protocol is one datagram per message on the AF_UNIX socket named by `$NOTIFY_SOCKET` (a
path, or `@name` in the abstract namespace), newline-separated `KEY=value` lines. With
`Type=notify` systemd waits for READY=1; with `WatchdogSec=` it sets `$WATCHDOG_USEC` and
restarts the service when WATCHDOG=1 does not arrive in time. The environment is read by the
caller, once, at start-up (`from_environ`); nothing here reads it.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager

import structlog

__all__ = ["SystemdNotifier", "supervised"]

log = structlog.get_logger("bulkwatch")


def _address(value: str) -> str | None:
    """The socket address of `$NOTIFY_SOCKET`, or None when it is not one we can use."""
    if value.startswith("@") and len(value) > 1:
        return "\0" + value[1:]  # Linux abstract namespace
    if value.startswith("/"):
        return value
    return None  # e.g. systemd 253's vsock: addresses, which no unix socket reaches


class SystemdNotifier:
    """Sends notify messages to systemd. Every send is best effort: a lost message is logged,
    never raised, because no notification is worth stopping the daemon for."""

    def __init__(self, address: str, *, watchdog_usec: int | None = None) -> None:
        self.address = address
        self.watchdog_usec = watchdog_usec
        self._sock: socket.socket | None = None
        self._failing = False  # log a lost message once, not every watchdog interval

    @classmethod
    def from_environ(cls, environ: Mapping[str, str], pid: int) -> SystemdNotifier | None:
        """A notifier for the service manager named in `environ`, or None outside systemd.

        The watchdog is on when `$WATCHDOG_USEC` is a positive number and `$WATCHDOG_PID`, if
        set, is `pid` (systemd sets it so a child process does not ping for its parent).
        """
        raw = environ.get("NOTIFY_SOCKET", "")
        address = _address(raw)
        if address is None:
            if raw:
                log.warning("NOTIFY_SOCKET is not a unix socket address; not notifying")
            return None
        watchdog: int | None = None
        try:
            usec = int(environ.get("WATCHDOG_USEC", ""))
        except ValueError:
            usec = 0
        watchdog_pid = environ.get("WATCHDOG_PID", "")
        if usec > 0 and watchdog_pid in ("", str(pid)):
            watchdog = usec
        return cls(address, watchdog_usec=watchdog)

    @property
    def watchdog_interval(self) -> float | None:
        """Seconds between two WATCHDOG=1: half the timeout, as sd_watchdog_enabled(3) advises."""
        return None if self.watchdog_usec is None else self.watchdog_usec / 2_000_000

    def notify(self, *lines: str) -> bool:
        """Send `lines` (e.g. "READY=1", "STATUS=...") as one message; True when it was sent."""
        message = "\n".join(lines).encode()
        try:
            if self._sock is None:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                # Never block the event loop: a full queue drops this message instead.
                sock.setblocking(False)
                self._sock = sock
            self._sock.sendto(message, self.address)
        except OSError as exc:
            if not self._failing:
                log.warning("systemd notification not sent", message=lines[0], error=str(exc))
            self._failing = True
            return False
        if self._failing:
            log.info("systemd notifications sent again")
        self._failing = False
        return True

    def close(self) -> None:
        """Close the socket; a later `notify` opens a new one."""
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()

    def __repr__(self) -> str:
        return f"SystemdNotifier({self.address!r}, watchdog_usec={self.watchdog_usec})"


async def _watchdog(
    notifier: SystemdNotifier,
    interval: float,
    alive: Callable[[], list[str]],
    stop: asyncio.Event,
) -> None:
    """WATCHDOG=1 every `interval` while `alive()` reports no problem; withheld otherwise, so
    that systemd restarts a daemon whose scheduler died or whose loop stalled.

    The first check waits one interval: systemd arms the watchdog only at READY=1, and by
    then the engine's scheduler and heartbeat are up. Once `stop` is set the scheduler shuts
    down on purpose; systemd's stop timeout, not the watchdog, bounds the drain.
    """
    withheld = False
    while True:
        await asyncio.sleep(interval)
        if stop.is_set():
            return
        problems = alive()
        if not problems:
            if withheld:
                log.info("liveness restored; watchdog pings resumed")
            withheld = False
            notifier.notify("WATCHDOG=1")
        elif not withheld:
            withheld = True
            log.error("liveness failed; withholding watchdog pings", problems=problems)
            notifier.notify(f"STATUS=unhealthy: {'; '.join(problems)}")


async def _stopping(notifier: SystemdNotifier, stop: asyncio.Event) -> None:
    await stop.wait()
    notifier.notify("STOPPING=1", "STATUS=stopping: finishing in-flight polls and deliveries")


@asynccontextmanager
async def supervised(
    notifier: SystemdNotifier | None,
    stop: asyncio.Event,
    alive: Callable[[], list[str]],
    status: str,
) -> AsyncIterator[Callable[[], None]]:
    """Report the daemon's life to systemd while the block runs.

    Yields the callback to call once the first schedule is armed (READY=1 with `status`);
    meanwhile pings the watchdog while `alive()` returns no problems, and sends STOPPING=1
    as soon as `stop` is set. Without a notifier, the callback does nothing.
    """
    if notifier is None:
        yield lambda: None
        return

    def ready() -> None:
        notifier.notify("READY=1", f"STATUS={status}")

    tasks = {asyncio.create_task(_stopping(notifier, stop), name="bulkwatch-sd-stopping")}
    interval = notifier.watchdog_interval
    if interval is not None:
        watchdog = _watchdog(notifier, interval, alive, stop)
        tasks.add(asyncio.create_task(watchdog, name="bulkwatch-sd-watchdog"))
    try:
        yield ready
    finally:
        for task in tasks:
            task.cancel()
        # Our tasks' CancelledError comes back as a result; a cancellation of this task
        # itself still raises out of the gather.
        results = await asyncio.gather(*tasks, return_exceptions=True)
        notifier.close()
        for result in results:
            if isinstance(result, Exception):
                raise result
