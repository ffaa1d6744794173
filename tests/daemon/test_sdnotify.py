"""systemd's notify protocol against real unix datagram sockets, up to a real `bulkwatch run`."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

import pytest
import yaml

from bulkwatch.daemon.sdnotify import SystemdNotifier, supervised
from bulkwatch.simulator import make_stores, run_simulator

PID = 4242


class Listener:
    """A unix datagram socket standing in for systemd's notify socket."""

    def __init__(self, sock: socket.socket, env_value: str) -> None:
        self.sock = sock
        self.env_value = env_value  # what $NOTIFY_SOCKET would hold

    async def receive(self, within: float = 10.0) -> str:
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(within):
            data = await loop.sock_recv(self.sock, 4096)
        return data.decode()

    async def receive_until(self, line: str, within: float = 20.0) -> list[str]:
        """Every message up to and including the first that holds `line`."""
        got: list[str] = []
        async with asyncio.timeout(within):
            while not got or line not in got[-1].splitlines():
                got.append(await self.receive(within))
        return got


@contextmanager
def listener(*, abstract: bool = False) -> Iterator[Listener]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.setblocking(False)
    # A short directory: unix socket paths are limited to 108 bytes, pytest's tmp_path is long.
    with tempfile.TemporaryDirectory(prefix="bw-sd-") as tmp:
        try:
            if abstract:
                name = f"bulkwatch-test-{os.getpid()}-{id(sock)}"
                sock.bind("\0" + name)
                yield Listener(sock, "@" + name)
            else:
                path = str(Path(tmp) / "notify")
                sock.bind(path)
                yield Listener(sock, path)
        finally:
            sock.close()


# --- the environment ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("environ", "address", "watchdog"),
    [
        pytest.param(
            {"NOTIFY_SOCKET": "/run/systemd/notify"}, "/run/systemd/notify", None, id="path"
        ),
        pytest.param({"NOTIFY_SOCKET": "@sd-notify"}, "\0sd-notify", None, id="abstract"),
        pytest.param(
            {"NOTIFY_SOCKET": "/n", "WATCHDOG_USEC": "30000000"}, "/n", 15.0, id="watchdog"
        ),
        pytest.param(
            {"NOTIFY_SOCKET": "/n", "WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(PID)},
            "/n",
            15.0,
            id="watchdog-for-us",
        ),
        pytest.param(
            {"NOTIFY_SOCKET": "/n", "WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"},
            "/n",
            None,
            id="watchdog-for-another-pid",
        ),
        pytest.param({"NOTIFY_SOCKET": "/n", "WATCHDOG_USEC": "soon"}, "/n", None, id="bad-usec"),
        pytest.param({"NOTIFY_SOCKET": "/n", "WATCHDOG_USEC": "0"}, "/n", None, id="zero-usec"),
    ],
)
def test_from_environ_reads_the_socket_and_the_watchdog(
    environ: dict[str, str], address: str, watchdog: float | None
) -> None:
    notifier = SystemdNotifier.from_environ(environ, PID)
    assert notifier is not None
    assert notifier.address == address
    assert notifier.watchdog_interval == watchdog


@pytest.mark.parametrize(
    "environ",
    [
        pytest.param({}, id="not-under-systemd"),
        pytest.param({"NOTIFY_SOCKET": ""}, id="empty"),
        pytest.param({"NOTIFY_SOCKET": "relative/path"}, id="relative"),
        pytest.param({"NOTIFY_SOCKET": "vsock:2:1234"}, id="vsock"),
        pytest.param({"NOTIFY_SOCKET": "@"}, id="empty-abstract-name"),
    ],
)
def test_from_environ_gives_no_notifier_without_a_usable_socket(environ: dict[str, str]) -> None:
    assert SystemdNotifier.from_environ(environ, PID) is None


# --- sending -----------------------------------------------------------------------------------


@pytest.mark.parametrize("abstract", [False, True], ids=["path", "abstract"])
async def test_notify_sends_one_datagram_of_newline_separated_fields(abstract: bool) -> None:
    with listener(abstract=abstract) as sd:
        notifier = SystemdNotifier.from_environ({"NOTIFY_SOCKET": sd.env_value}, PID)
        assert notifier is not None
        try:
            assert notifier.notify("READY=1", "STATUS=watching 2 stores")
            assert notifier.notify("WATCHDOG=1")
            first, second = await sd.receive(), await sd.receive()
        finally:
            notifier.close()
    assert first == "READY=1\nSTATUS=watching 2 stores"
    assert second == "WATCHDOG=1"


async def test_notify_to_a_vanished_socket_returns_false_without_raising() -> None:
    with listener() as sd:
        address = sd.env_value
    notifier = SystemdNotifier(address)
    try:
        assert notifier.notify("READY=1") is False
    finally:
        notifier.close()


# --- supervised: ready, watchdog, stopping ------------------------------------------------------


async def test_supervised_sends_ready_watchdog_then_stopping_in_order() -> None:
    with listener() as sd:
        environ = {"NOTIFY_SOCKET": sd.env_value, "WATCHDOG_USEC": "40000"}  # ping every 20 ms
        notifier = SystemdNotifier.from_environ(environ, PID)
        stop = asyncio.Event()
        async with supervised(notifier, stop, list, "watching 1 store") as ready:
            ready()
            before_ready = await sd.receive_until("READY=1")
            await sd.receive_until("WATCHDOG=1")
            stop.set()
            after = await sd.receive_until("STOPPING=1")
    assert before_ready[-1] == "READY=1\nSTATUS=watching 1 store"
    assert after[-1] == "STOPPING=1\nSTATUS=stopping: finishing in-flight polls and deliveries"


async def test_supervised_withholds_watchdog_pings_while_liveness_fails() -> None:
    problems = ["scheduler is stopped"]
    with listener() as sd:
        notifier = SystemdNotifier(sd.env_value, watchdog_usec=40000)
        async with supervised(notifier, asyncio.Event(), lambda: list(problems), "s"):
            unhealthy = await sd.receive()
            problems.clear()
            resumed = await sd.receive()
    assert unhealthy == "STATUS=unhealthy: scheduler is stopped"
    assert resumed == "WATCHDOG=1"


async def test_supervised_without_a_notifier_does_nothing() -> None:
    async with supervised(None, asyncio.Event(), list, "s") as ready:
        ready()


# --- a real daemon -----------------------------------------------------------------------------


@asynccontextmanager
async def daemon(config: Path, notify_socket: str) -> AsyncIterator[asyncio.subprocess.Process]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BULKWATCH_", "WATCHDOG_"))}
    env.update(NOTIFY_SOCKET=notify_socket, WATCHDOG_USEC="200000", PYTHONUNBUFFERED="1")
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bulkwatch",
        "run",
        "--config",
        str(config),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    try:
        yield proc
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_bulkwatch_run_notifies_ready_watchdog_and_stopping(tmp_path: Path) -> None:
    async with run_simulator(stores=make_stores(1, 1)) as sim:
        config = tmp_path / "config.yaml"
        config.write_text(
            yaml.safe_dump(
                {
                    "instance": "sd-test",
                    "state": {"url": f"sqlite:///{tmp_path / 'state.db'}"},
                    "server": {"enabled": False},
                    "defaults": {"interval": 0.5},
                    "log": {"format": "json"},
                    "shutdown_grace": 2,
                    "stores": sim.store_configs(),
                }
            ),
            encoding="utf-8",
        )
        with listener(abstract=True) as sd:
            async with daemon(config, sd.env_value) as proc:
                started = await sd.receive_until("READY=1")
                pings = await sd.receive_until("WATCHDOG=1")
                await sim.wait_for_requests("lazza-1", 1)
                proc.send_signal(signal.SIGTERM)
                stopping = await sd.receive_until("STOPPING=1")
                assert proc.stderr is not None
                async with asyncio.timeout(10):
                    stderr = (await proc.stderr.read()).decode()
                    code = await proc.wait()

    assert code == 0, stderr
    messages = started + pings + stopping
    firsts = [m.splitlines()[0] for m in messages]
    assert firsts.index("READY=1") < firsts.index("WATCHDOG=1") < firsts.index("STOPPING=1")
    assert started[-1] == "READY=1\nSTATUS=watching 2 stores (3 endpoints)"
    assert "Traceback" not in stderr
