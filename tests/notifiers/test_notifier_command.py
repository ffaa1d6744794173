"""The command notifier with real processes: stdin, environment, exit status, timeout, kill."""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from pydantic import ValidationError

from bulkwatch.model import TaskStatus
from bulkwatch.notifiers import registry
from bulkwatch.notifiers.base import DeliveryError, OutgoingEvent
from bulkwatch.notifiers.command import CommandNotifier, CommandNotifierConfig
from bulkwatch.store.base import DeliveryStatus
from helpers.notifier_support import (
    RESULT_URL,
    delivery_harness,
    outgoing,
    store_change,
    task_change,
)

PY = sys.executable
BASE_ENV = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}


def command(
    argv: list[str], environ: dict[str, str] | None = None, **fields: object
) -> CommandNotifier:
    config = CommandNotifierConfig.model_validate({"name": "cmd", "argv": argv, **fields})
    return CommandNotifier(config, BASE_ENV if environ is None else environ)


def python(code: str, *args: str) -> list[str]:
    return [PY, "-c", code, *args]


async def exits(pid: int, within: float = 5.0) -> None:
    """Wait until the process `pid` has ended (exited, or a zombie nobody reaps yet).

    A pidfd becomes readable when its process ends: this waits on the event itself. The
    grandchild is not ours to reap, and a SIGKILLed process still has to be scheduled to die.
    """
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    loop = asyncio.get_running_loop()
    ended = asyncio.Event()
    loop.add_reader(fd, ended.set)
    try:
        async with asyncio.timeout(within):
            await ended.wait()
    finally:
        loop.remove_reader(fd)
        os.close(fd)


@dataclass
class PidReports:
    """Where a test program reports its pids once it runs: `port` on 127.0.0.1."""

    port: int = 0
    pids: asyncio.Queue[list[int]] = field(default_factory=asyncio.Queue)

    async def next(self) -> list[int]:
        async with asyncio.timeout(10):
            return await self.pids.get()


@asynccontextmanager
async def pid_listener() -> AsyncIterator[PidReports]:
    reports = PidReports()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        line = await reader.readline()
        await reports.pids.put([int(p) for p in line.split()])
        writer.close()
        await writer.wait_closed()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    reports.port = server.sockets[0].getsockname()[1]
    try:
        yield reports
    finally:
        server.close()
        await server.wait_closed()


# A program that starts a grandchild, reports both pids, then hangs.
HANG = """
import os, socket, subprocess, sys, time
child = subprocess.Popen(["sleep", "60"])
with socket.create_connection(("127.0.0.1", int(sys.argv[1]))) as s:
    s.sendall(f"{os.getpid()} {child.pid}\\n".encode())
time.sleep(60)
"""


async def test_event_json_arrives_on_stdin_and_key_fields_in_the_environment(
    tmp_path: Path,
) -> None:
    out = tmp_path / "out.json"
    dump = (
        "import json, os, sys; "
        "json.dump({'stdin': sys.stdin.read(), 'env': dict(os.environ)}, open(sys.argv[1], 'w'))"
    )
    environ = {**BASE_ENV, "BULKWATCH_STORES__0__ACCESS_TOKEN": "leak-me-not", "KEEP": "yes"}
    notifier = command(python(dump, str(out)), environ, env={"EXTRA": "1"})
    event = outgoing(attempt=2)

    await notifier.send(event)

    seen = json.loads(out.read_text())
    assert seen["stdin"].encode() == event.body
    env = seen["env"]
    assert {k: v for k, v in env.items() if k.startswith("BULKWATCH_")} == {
        "BULKWATCH_EVENT_ID": event.id,
        "BULKWATCH_EVENT_TYPE": "bulkwatch.task.completed",
        "BULKWATCH_EVENT_TIME": "2026-11-23T10:00:00Z",
        "BULKWATCH_SUBJECT": "lazza-main/d6ca13c4",
        "BULKWATCH_STORE": "lazza-main",
        "BULKWATCH_PLATFORM": "shoplazza",
        "BULKWATCH_TASK_ID": "d6ca13c4",
        "BULKWATCH_OPERATION_TYPE": "DATA_QUERY",
        "BULKWATCH_STATUS": "COMPLETED",
        "BULKWATCH_PREVIOUS_STATUS": "RUNNING",
        "BULKWATCH_URL": RESULT_URL,
        "BULKWATCH_PARTIAL_DATA_URL": "",
        "BULKWATCH_ATTEMPT": "2",
        "BULKWATCH_NOTIFIER": "cmd",
    }
    assert (env["KEEP"], env["EXTRA"]) == ("yes", "1")


async def test_store_events_leave_task_fields_empty(tmp_path: Path) -> None:
    out = tmp_path / "env.json"
    dump = "import json, os, sys; json.dump(dict(os.environ), open(sys.argv[1], 'w'))"
    await command(python(dump, str(out))).send(outgoing(store_change()))
    env = json.loads(out.read_text())
    assert env["BULKWATCH_EVENT_TYPE"] == "bulkwatch.store.down"
    assert env["BULKWATCH_STORE"] == "lazza-main"
    assert env["BULKWATCH_TASK_ID"] == env["BULKWATCH_STATUS"] == ""


async def test_nonzero_exit_is_a_retryable_failure_with_the_last_stderr_line() -> None:
    code = (
        "import sys; print('working'); "
        "sys.stderr.write('step 1\\nupload refused: 403\\n'); sys.exit(3)"
    )
    with pytest.raises(DeliveryError) as caught:
        await command(python(code)).send(outgoing())
    assert str(caught.value) == "exit status 3: upload refused: 403"
    assert not caught.value.permanent


async def test_a_chatty_program_is_reported_by_a_truncated_last_line() -> None:
    code = "import sys; sys.stderr.write('x' * 2_000_000 + '\\n' + 'y' * 500); sys.exit(1)"
    with pytest.raises(DeliveryError) as caught:
        await command(python(code)).send(outgoing())
    message = str(caught.value)
    assert message.startswith("exit status 1: yyy")
    assert len(message) < 250


async def test_a_program_killed_by_a_signal_is_a_retryable_failure() -> None:
    code = "import os, signal; os.kill(os.getpid(), signal.SIGTERM)"
    with pytest.raises(DeliveryError, match=r"^killed by SIGTERM$") as caught:
        await command(python(code)).send(outgoing())
    assert not caught.value.permanent


async def test_a_program_that_ignores_a_large_stdin_still_succeeds() -> None:
    big = outgoing()
    big = OutgoingEvent(
        id=big.id,
        type=big.type,
        store=big.store,
        body=b"{" + b" " * 1_000_000 + b"}",
        cloudevent=big.cloudevent,
        attempt=1,
    )
    await command(["true"]).send(big)


@pytest.mark.parametrize(
    ("argv", "reason"),
    [
        (["/nonexistent/bulkwatch-hook"], "No such file or directory"),
        (["no-such-program-on-path-7f3a"], "No such file or directory"),
        ([str(Path(__file__))], "Permission denied"),  # a file without the execute bit
    ],
)
async def test_a_program_that_cannot_start_is_a_permanent_failure(
    argv: list[str], reason: str
) -> None:
    with pytest.raises(DeliveryError) as caught:
        await command(argv).send(outgoing())
    assert str(caught.value) == f"cannot run {argv[0]}: {reason}"
    assert caught.value.permanent


async def test_timeout_kills_the_program_and_its_children() -> None:
    async with pid_listener() as reports:
        # The timeout only has to outlast the program's start-up; the test waits on its report.
        notifier = command(python(HANG, str(reports.port)), timeout=1.0)
        send = asyncio.create_task(notifier.send(outgoing()))
        pids = await reports.next()
        with pytest.raises(DeliveryError, match=r"^timed out after 1s; killed$") as caught:
            await send
    assert not caught.value.permanent
    child, grandchild = pids
    with pytest.raises(ProcessLookupError):
        os.kill(child, 0)  # already reaped: no zombie left behind
    await exits(grandchild)


async def test_cancelling_a_delivery_kills_the_program_and_propagates() -> None:
    async with pid_listener() as reports:
        notifier = command(python(HANG, str(reports.port)), timeout=30)
        send = asyncio.create_task(notifier.send(outgoing()))
        child, grandchild = await reports.next()
        send.cancel()
        with pytest.raises(asyncio.CancelledError):
            await send
    with pytest.raises(ProcessLookupError):
        os.kill(child, 0)
    await exits(grandchild)


async def test_failure_then_success_goes_through_the_dispatcher(tmp_path: Path) -> None:
    # Fails until a flag file exists (it creates it), then succeeds: one retry.
    script = (
        "import pathlib, sys\n"
        "flag = pathlib.Path(sys.argv[1])\n"
        "if not flag.exists():\n"
        "    flag.touch(); sys.stderr.write('not ready yet\\n'); sys.exit(75)\n"
        "pathlib.Path(sys.argv[2]).write_bytes(sys.stdin.buffer.read())\n"
    )
    out = tmp_path / "delivered.json"
    notifier = command(python(script, str(tmp_path / "flag"), str(out)))
    async with delivery_harness(tmp_path) as h:
        event = task_change(TaskStatus.FAILED, error_code="E1", reason="bad filter")
        await h.enqueue(event, "cmd")
        failed = await h.retry_then_deliver(h.dispatcher(notifier))
        assert failed.last_error == "exit status 75: not ready yet"
        assert json.loads(out.read_text())["id"] == event.id
        assert (h.count("cmd", "retry"), h.count("cmd", "delivered")) == (1, 1)


async def test_a_missing_program_is_dead_lettered_at_once(tmp_path: Path) -> None:
    async with delivery_harness(tmp_path) as h:
        await h.enqueue(task_change(), "cmd")
        assert await h.dispatcher(command(["/nonexistent/hook"])).run_once() == 1
        row = await h.only(DeliveryStatus.DEAD)
        assert (row.attempts, row.last_error) == (
            1,
            "cannot run /nonexistent/hook: No such file or directory",
        )
        assert h.count("cmd", "dead") == 1


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"argv": []}, "at least 1 item"),
        ({"argv": [""]}, "the program (argv[0]) must not be empty"),
        ({"argv": ["x"], "timeout": 0}, "greater than 0"),
        ({"argv": ["x"], "env": {"BULKWATCH_X": "1"}}, "names starting with BULKWATCH_"),
        ({"argv": ["x"], "env": {"1BAD": "1"}}, "not a valid environment variable name"),
        ({"argv": ["x"], "shell": True}, "Extra inputs are not permitted"),
    ],
)
def test_config_rejects_bad_fields(fields: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(message)):
        CommandNotifierConfig.model_validate({"name": "cmd", **fields})


def test_config_defaults_and_secrets_stay_out_of_repr() -> None:
    kind = registry.get("command")
    assert kind is not None
    config = kind.config_model.model_validate(
        {
            "name": "cmd",
            "type": "command",
            "argv": ["curl", "-H", "Bearer s3cr3t"],
            "env": {"T": "s3cr3t"},
        }
    )
    assert isinstance(config, CommandNotifierConfig)
    assert config.timeout == 30.0
    assert "s3cr3t" not in repr(config)
