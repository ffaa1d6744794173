"""The simulator's two command lines (`bulkwatch simulate`, `python -m bulkwatch.simulator`):
one set of options with their defaults shown, task ids that never repeat across runs; stopped
by a signal they exit 0, on a taken port they exit 1 with one line."""

from __future__ import annotations

import asyncio
import signal
import socket
import sys
from collections.abc import Iterator

import aiohttp
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


def _options(help_text: str) -> dict[str, str]:
    """Each `--option` of a --help text, with the text of its help (wrapped lines joined)."""
    options: dict[str, str] = {}
    current = None
    for line in help_text.splitlines():
        words = line.split()
        if line.startswith(("  --", "  -h")):
            current = words[0].rstrip(",")
            options[current] = " ".join(words[1:])
        elif current is not None and line.startswith("      "):
            options[current] += " " + " ".join(words)
        else:
            current = None
    return options


async def test_both_commands_take_the_same_options_and_show_every_default() -> None:
    helps = []
    for command in COMMANDS.values():
        proc = await asyncio.create_subprocess_exec(
            *command, "--help", stdout=asyncio.subprocess.PIPE
        )
        async with asyncio.timeout(30):
            out, _ = await proc.communicate()
        assert proc.returncode == 0
        helps.append(_options(out.decode()))

    simulate, python_m = helps
    assert simulate == python_m
    assert {"--port", "--seed", "--step", "--stores", "--write-config", "--manual"} <= set(simulate)
    for option, text in simulate.items():
        if option not in {"-h", "--manual"}:  # flags: absent is the default
            assert "(default: " in text, option
    assert "(default: 8081)" in simulate["--port"]
    assert "(default: 2.0)" in simulate["--step"]


async def _task_ids(command: tuple[str, ...]) -> dict[str, set[str]]:
    """Start `command --port 0 --seed 1`, read every store's task ids, stop it."""
    proc = await asyncio.create_subprocess_exec(
        *command, "--port", "0", "--seed", "1", stdout=asyncio.subprocess.PIPE
    )
    assert proc.stdout is not None
    try:
        async with asyncio.timeout(20):
            first = (await proc.stdout.readline()).decode()
        url = first.rsplit(" ", 1)[-1].strip()
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{url}/_sim/config") as resp:
                names = [store["name"] for store in await resp.json()]
            ids = {}
            for name in names:
                async with session.get(f"{url}/_sim/stores/{name}/tasks") as resp:
                    ids[name] = {task["id"] for task in await resp.json()}
    finally:
        proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(20):
            await proc.communicate()
    return ids


async def test_task_ids_never_repeat_across_runs_with_the_same_seed() -> None:
    first = await _task_ids(COMMANDS["bulkwatch-simulate"])
    again = await _task_ids(COMMANDS["bulkwatch-simulate"])
    other = await _task_ids(COMMANDS["python-m-simulator"])

    # The same defaults on both command lines: the same four stores, each with its history.
    assert set(first) == set(again) == set(other) == {"lazza-1", "lazza-2", "line-1", "line-2"}
    for name in first:
        assert first[name], name
        assert not first[name] & again[name], name
        assert not (first[name] | again[name]) & other[name], name
