"""The simulator's two command lines (`bulkwatch simulate`, `python -m bulkwatch.simulator`):
stopped by a signal they exit 0, on a taken port they exit 1 with one line."""

from __future__ import annotations

import asyncio
import signal
import socket
import sys
from collections.abc import Iterator

import pytest

from bulkwatch.simulator.runner import serve, until_signalled

COMMANDS = {
    "bulkwatch-simulate": (sys.executable, "-m", "bulkwatch", "simulate"),
    "python-m-simulator": (sys.executable, "-m", "bulkwatch.simulator"),
}
both_commands = pytest.mark.parametrize("command", COMMANDS.values(), ids=COMMANDS.keys())


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A port on 127.0.0.1 that something is already listening on."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        yield busy.getsockname()[1]


@both_commands
async def test_a_taken_port_exits_1_with_one_line_naming_it(
    command: tuple[str, ...], busy_port: int
) -> None:
    proc = await asyncio.create_subprocess_exec(
        *command,
        "--port",
        str(busy_port),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(30):
        _, err = await proc.communicate()

    assert proc.returncode == 1
    [line] = err.decode().splitlines()
    assert line.startswith(f"bulkwatch: cannot listen on 127.0.0.1:{busy_port}: ")


@both_commands
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
async def test_a_signal_after_the_announcement_exits_0_quietly(
    command: tuple[str, ...], sig: signal.Signals
) -> None:
    proc = await asyncio.create_subprocess_exec(
        *command,
        "--port",
        "0",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    try:
        async with asyncio.timeout(20):
            first = (await proc.stdout.readline()).decode()
        assert first.startswith("bulkwatch simulator listening on http://127.0.0.1:")
    finally:
        proc.send_signal(sig)
        async with asyncio.timeout(20):
            _, err = await proc.communicate()

    assert proc.returncode == 0
    assert err.decode() == ""


async def test_a_cancel_no_signal_asked_for_propagates() -> None:
    ready = asyncio.Event()
    task = asyncio.create_task(
        until_signalled(serve(port=0, announce=None, ready=lambda _: ready.set()), "127.0.0.1", 0)
    )
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(5):
            await ready.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
