"""One daemon per state file: real `bulkwatch` processes on one SQLite database."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from helpers.cli import CLI


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BULKWATCH_")}
    env["PYTHONUNBUFFERED"] = "1"
    return env


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(
        # A store nobody answers for: the daemon needs one to watch; its polls just fail.
        "stores: [{name: s, platform: shoplazza, domain: s, access_token: t,"
        " base_url: 'http://127.0.0.1:9'}]\n"
        f"state: {{url: 'sqlite:///{tmp_path / 'state.db'}'}}\n"
        "server: {enabled: false}\n"
        "log: {format: json}\n"
    )
    return path


@asynccontextmanager
async def running(config: Path) -> AsyncIterator[asyncio.subprocess.Process]:
    """`bulkwatch run`, once it has started; killed at the end unless the test stopped it."""
    proc = await asyncio.create_subprocess_exec(
        *CLI, "run", "--config", str(config),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
        env=_env(),
    )  # fmt: skip
    assert proc.stderr is not None
    try:
        async with asyncio.timeout(30):
            while b"bulkwatch started" not in (line := await proc.stderr.readline()):
                assert line, "the daemon exited before it started"
        yield proc
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()


async def second(command: str, config: Path) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        *CLI, command, "--config", str(config),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=_env(),
    )  # fmt: skip
    try:
        async with asyncio.timeout(30):
            out, err = await proc.communicate()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode is not None
    return proc.returncode, (out + err).decode()


async def test_a_second_daemon_on_the_same_state_file_refuses_to_start(
    config: Path, tmp_path: Path
) -> None:
    db = tmp_path / "state.db"
    async with running(config) as first:
        for command in ("run", "once"):
            code, output = await second(command, config)
            assert code == 3, output
            assert output == (
                f"bulkwatch: state.url: {db} is in use by another bulkwatch "
                f"(pid {first.pid} on {socket.gethostname()}); one daemon per state file\n"
            )
        first.send_signal(signal.SIGTERM)
        assert await first.wait() == 0
    # Released at exit, and by the kernel when the holder is killed: no stale lock.
    async with running(config) as again:
        again.kill()
    async with running(config) as after_kill:
        after_kill.send_signal(signal.SIGTERM)
        assert await after_kill.wait() == 0
