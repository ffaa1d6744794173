"""A new operator's first mistakes, through the real `bulkwatch` command (a subprocess): no
config, a config that watches nothing, reading commands before any state exists.

Every command runs in its own empty working directory, so `./bulkwatch.yaml` and the default
`./bulkwatch.db` are the test's own.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from bulkwatch.config.discovery import SEARCHED
from bulkwatch.model import TaskStatus
from bulkwatch.simulator import Simulator, make_stores, run_simulator
from bulkwatch.store.sqlite.store import SqliteStore
from helpers.cli import CLI, Finished
from helpers.cli import run_cli as bulkwatch
from helpers.webhook_receiver import Receiver, Reply, running_receiver

STORE = {
    "name": "lazza-main",
    "platform": "shoplazza",
    "domain": "mystore",
    "access_token": "tok-first-contact",
    "base_url": "http://127.0.0.1:9",  # nobody answers: these tests never need a poll to work
}


def write(path: Path, **fields: Any) -> Path:
    path.write_text(yaml.safe_dump(fields, sort_keys=False), encoding="utf-8")
    return path


def names(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


@pytest.fixture
def nowhere(tmp_path: Path) -> Path:
    """An empty working directory; no config in the system-wide place either."""
    system_wide = SEARCHED[-1]
    assert system_wide.is_absolute()
    assert not system_wide.exists(), f"this machine has a {system_wide}: the test needs none"
    work = tmp_path / "work"
    work.mkdir()
    return work


WATCHING = ("run", "once", "check-config", "status")  # the commands that need a store


async def test_without_any_config_file_a_command_that_watches_stores_exits_2_with_one_line(
    nowhere: Path,
) -> None:
    results = await asyncio.gather(*(bulkwatch(command, cwd=nowhere) for command in WATCHING))

    for result in results:
        assert result.code == 2, result
        [line] = result.stderr.splitlines()
        assert line.startswith("config error: no config file: give --config FILE")
        assert "$BULKWATCH_CONFIG" in line
        assert "./bulkwatch.yaml" in line
        assert "/etc/bulkwatch/config.yaml" in line
        assert result.stdout == ""
    assert names(nowhere) == []  # no ./bulkwatch.db, nothing else


async def test_a_bulkwatch_yaml_in_the_working_directory_is_found_and_named(
    nowhere: Path,
) -> None:
    write(nowhere / "bulkwatch.yaml", stores=[STORE], server={"enabled": False})

    result = await bulkwatch("check-config", cwd=nowhere)

    assert result.code == 0, result
    assert result.stdout.splitlines()[0] == (
        "config OK: bulkwatch.yaml (found in the working directory)"
    )
    assert "lazza-main" in result.stdout


async def test_the_config_flag_and_variable_come_before_the_working_directory(
    nowhere: Path, tmp_path: Path
) -> None:
    write(nowhere / "bulkwatch.yaml", stores=[])  # would fail: must not be read
    named = write(tmp_path / "named.yaml", stores=[STORE])

    by_flag, by_variable = await asyncio.gather(
        bulkwatch("check-config", "--config", named, cwd=nowhere),
        bulkwatch("check-config", cwd=nowhere, env={"BULKWATCH_CONFIG": str(named)}),
    )

    assert by_flag.code == 0, by_flag
    assert by_flag.stdout.splitlines()[0] == f"config OK: {named} (from --config)"
    assert by_variable.code == 0, by_variable
    assert by_variable.stdout.splitlines()[0] == f"config OK: {named} (from $BULKWATCH_CONFIG)"


@pytest.mark.parametrize(
    ("stores", "message", "commands"),
    [
        pytest.param([], "configures no store", WATCHING, id="no-store"),
        pytest.param(
            [{**STORE, "enabled": False}], "every store", ("check-config", "run"), id="all-disabled"
        ),
    ],
)
async def test_a_config_that_watches_nothing_exits_2_with_one_line_and_creates_nothing(
    nowhere: Path, stores: list[dict[str, Any]], message: str, commands: tuple[str, ...]
) -> None:
    write(nowhere / "bulkwatch.yaml", stores=stores, server={"enabled": True, "port": 0})

    results = await asyncio.gather(*(bulkwatch(command, cwd=nowhere) for command in commands))

    for result in results:
        assert result.code == 2, result
        [line] = result.stderr.splitlines()
        assert line.startswith("config error: stores: ")
        assert message in line
        assert "bulkwatch.yaml" in line
    assert names(nowhere) == ["bulkwatch.yaml"]


async def test_reading_commands_never_create_the_state_database(nowhere: Path) -> None:
    write(nowhere / "bulkwatch.yaml", stores=[STORE])
    reading = [("status",), ("status", "--json"), ("deliveries", "list"), ("deliveries", "retry")]

    results = await asyncio.gather(*(bulkwatch(*args, cwd=nowhere) for args in reading))

    for result in results:
        assert result.code == 1, result
        assert result.stdout == ""
        note, line = result.stderr.splitlines()
        assert note == "bulkwatch: using bulkwatch.yaml (found in the working directory)"
        assert line == (
            f"bulkwatch: state.url: no state database at {nowhere / 'bulkwatch.db'} yet "
            "(`bulkwatch run` or `bulkwatch once` with this config creates it)"
        )
    assert names(nowhere) == ["bulkwatch.yaml"]


async def test_commands_that_need_no_store_work_with_a_config_that_watches_nothing(
    nowhere: Path,
) -> None:
    db = nowhere / "kept.db"
    store = SqliteStore(db)  # a state database left from when the stores were configured
    await store.open()
    await store.close()
    config = write(
        nowhere / "c.yaml",
        stores=[],
        state={"url": f"sqlite:///{db}"},
        notifiers=[{"name": "console", "type": "log"}],
    )

    dead, retried, sample = await asyncio.gather(
        bulkwatch("deliveries", "list", "-c", config, cwd=nowhere),
        bulkwatch("deliveries", "retry", "-c", config, cwd=nowhere),
        bulkwatch("notify-test", "console", "-c", config, cwd=nowhere),
    )

    assert (dead.code, dead.stdout) == (0, "no dead deliveries\n"), dead
    assert (retried.code, retried.stdout) == (0, "queued 0 dead deliveries again\n"), retried
    assert sample.code == 0, sample
    assert sample.stdout.startswith("delivered (event ")


async def test_notifier_filters_that_can_never_match_are_errors_with_a_suggestion(
    nowhere: Path,
) -> None:
    hook = {"name": "ops", "type": "webhook", "url": "https://hooks.example.com/bulkwatch"}
    config = write(
        nowhere / "c.yaml",
        stores=[STORE, {**STORE, "name": "lazza-2"}],
        notifiers=[
            {**hook, "events": ["bulkwatch.task.complete", "bulkwatch.store.*"]},
            {**hook, "name": "other", "stores": ["lazza-9"], "events": ["bulkwatch.tasks.*"]},
            {**hook, "name": "fine", "stores": ["lazza-*"], "events": ["*.failed"]},
            {**hook, "name": "far", "stores": ["zz"], "events": ["xyz"]},
        ],
    )

    result = await bulkwatch("check-config", "--config", config, cwd=nowhere)

    assert result.code == 2, result
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        "config error: notifiers[0].events[0]: 'bulkwatch.task.complete' matches no event type, "
        "so notifier 'ops' would never get it (did you mean 'bulkwatch.task.completed'?)",
        "config error: notifiers[1].events[0]: 'bulkwatch.tasks.*' matches no event type, "
        "so notifier 'other' would never get it (did you mean 'bulkwatch.task.*'?)",
        "config error: notifiers[1].stores[0]: 'lazza-9' matches no configured store, "
        "so notifier 'other' would never hear of it (did you mean 'lazza-2'?)",
        "config error: notifiers[3].events[0]: 'xyz' matches no event type, so notifier 'far' "
        "would never get it (known: bulkwatch.store.*, bulkwatch.task.*)",
        "config error: notifiers[3].stores[0]: 'zz' matches no configured store, so notifier "
        "'far' would never hear of it (configured: lazza-main, lazza-2)",
    ]


# --- what the config needs from this machine ---------------------------------------------------


async def test_a_state_directory_that_cannot_exist_stops_run_and_once_with_exit_2(
    nowhere: Path,
) -> None:
    blocker = nowhere / "a-file"
    blocker.write_text("not a directory\n", encoding="utf-8")
    db = blocker / "state" / "bulkwatch.db"
    config = write(nowhere / "c.yaml", stores=[STORE], state={"url": f"sqlite:///{db}"})

    results = await asyncio.gather(
        bulkwatch("run", "-c", config, cwd=nowhere),
        bulkwatch("once", "-c", config, cwd=nowhere),
        bulkwatch("check-config", "--machine", "-c", config, cwd=nowhere),
    )

    for result in results:
        assert result.code == 2, result
        assert result.stderr.splitlines() == [
            f"config error: state.url: cannot create {db}: {blocker} is not a directory"
        ]
    assert names(nowhere) == ["a-file", "c.yaml"]


async def test_a_command_notifier_whose_program_cannot_run_stops_run_with_exit_2(
    nowhere: Path,
) -> None:
    not_executable = nowhere / "hook.sh"
    not_executable.write_text("#!/bin/sh\nexit 0\n", encoding="utf-8")
    not_executable.chmod(0o644)
    config = write(
        nowhere / "c.yaml",
        stores=[STORE],
        server={"enabled": False},
        notifiers=[
            {"name": "gone", "type": "command", "argv": [str(nowhere / "missing"), "--x"]},
            {"name": "plain", "type": "command", "argv": [str(not_executable)]},
            {"name": "unknown", "type": "command", "argv": ["bw-no-such-program"]},
            {"name": "fine", "type": "command", "argv": ["true"]},
        ],
    )

    run, machine, plain = await asyncio.gather(
        bulkwatch("run", "-c", config, cwd=nowhere),
        bulkwatch("check-config", "--machine", "-c", config, cwd=nowhere),
        bulkwatch("check-config", "-c", config, cwd=nowhere),
    )

    for result in (run, machine):
        assert result.code == 2, result
        lines = result.stderr.splitlines()
        assert lines[:2] == [
            f"config error: notifiers[0].argv[0]: {nowhere / 'missing'} does not exist",
            f"config error: notifiers[1].argv[0]: {not_executable} is not an executable file",
        ]
        assert lines[2].startswith(
            "config error: notifiers[2].argv[0]: program 'bw-no-such-program' not found on PATH"
        )
        assert len(lines) == 3
    # Without --machine, check-config judges the file only, and says so.
    assert plain.code == 0, plain
    assert plain.stdout.splitlines()[-1].startswith("machine: not checked (--machine checks")
    assert names(nowhere) == ["c.yaml", "hook.sh"]


async def test_a_taken_server_port_is_found_before_anything_is_created(nowhere: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        config = write(
            nowhere / "c.yaml", stores=[STORE], server={"host": "127.0.0.1", "port": port}
        )
        run, machine = await asyncio.gather(
            bulkwatch("run", "-c", config, cwd=nowhere),
            bulkwatch("check-config", "--machine", "-c", config, cwd=nowhere),
        )

    assert run.code == 1, run  # the port may be free again soon: a restart may help
    assert run.stderr.splitlines() == [
        f"bulkwatch: server: cannot listen on 127.0.0.1:{port}: Address already in use"
    ]
    assert machine.code == 2, machine
    assert machine.stderr.splitlines() == [
        f"config error: server: cannot listen on 127.0.0.1:{port}: Address already in use"
    ]
    assert names(nowhere) == ["c.yaml"]  # no bulkwatch.db, no lock file


async def test_a_running_daemon_is_named_as_the_holder_not_as_a_taken_port(
    nowhere: Path,
) -> None:
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    config = write(
        nowhere / "c.yaml",
        stores=[STORE],
        server={"host": "127.0.0.1", "port": port},
        log={"format": "json"},
    )
    first = await asyncio.create_subprocess_exec(
        *CLI, "run", "-c", str(config),
        cwd=nowhere,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert first.stderr is not None
    try:
        async with asyncio.timeout(30):
            while b"bulkwatch started" not in (line := await first.stderr.readline()):
                assert line, "the first daemon exited before it started"
        second, machine = await asyncio.gather(
            bulkwatch("run", "-c", config, cwd=nowhere),
            bulkwatch("check-config", "--machine", "-c", config, cwd=nowhere),
        )
    finally:
        first.terminate()
        await first.wait()

    held = f"is in use by another bulkwatch (pid {first.pid} on {socket.gethostname()})"
    assert second.code == 3, second
    [refusal] = second.stderr.splitlines()
    assert refusal.startswith("bulkwatch: state.url: ")
    assert held in refusal
    assert machine.code == 0, machine
    assert machine.stdout.splitlines()[-1].startswith(
        "machine: OK (state directory writable; port not checked: state.url: "
    )
    assert held in machine.stdout


# --- a console that shows the daemon working ---------------------------------------------------


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    async with run_simulator(stores=make_stores(1, 1), seed=7) as simulator:
        yield simulator


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async with running_receiver() as rec:
        rec.default = Reply(204)
        yield rec


def console_config(tmp_path: Path, sim: Simulator, receiver: Receiver, **log: Any) -> Path:
    return write(
        tmp_path / "console.yaml",
        state={"url": f"sqlite:///{tmp_path / 'state.db'}"},
        server={"enabled": False},
        log={"format": "json", **log},
        stores=sim.store_configs(),
        notifiers=[{"name": "hook", "type": "webhook", "url": receiver.url}],
    )


def messages(result: Finished) -> list[str]:
    """The `event` of each JSON log line on stderr."""
    return [json.loads(line)["event"] for line in result.stderr.splitlines()]


async def test_once_logs_each_event_and_each_delivery_in_one_line(
    nowhere: Path, sim: Simulator, receiver: Receiver
) -> None:
    sim.create_task("lazza-1", "lz-run", TaskStatus.RUNNING)
    sim.create_task("line-1", "9001", TaskStatus.RUNNING, operation_type="QUERY")
    config = console_config(nowhere, sim, receiver)

    first = await bulkwatch("once", "-c", config, cwd=nowhere)
    sim.set_status("line-1", "9001", TaskStatus.COMPLETED)
    second = await bulkwatch("once", "-c", config, cwd=nowhere)

    assert first.code == 0, first
    assert sorted(messages(first)) == [
        "delivered lazza-1/lz-run task.running to hook",
        "delivered line-1/9001 task.running to hook",
        "lazza-1/lz-run → RUNNING",
        "line-1/9001 → RUNNING",
    ]
    assert second.code == 0, second
    done, delivered = messages(second)
    url = sim.current("line-1", "QUERY").url  # type: ignore[union-attr]
    assert url
    # Shopline repeats the result URL as partial_data_url when COMPLETED: shown once.
    assert done == f"line-1/9001 RUNNING → COMPLETED  url={url}"
    assert delivered == "delivered line-1/9001 task.completed to hook"
    logged = [json.loads(line) for line in (first.stderr + second.stderr).splitlines()]
    assert {entry["level"] for entry in logged} == {"info"}
    assert {entry["event_id"] for entry in logged} == {
        json.loads(r.body)["id"] for r in receiver.requests
    }


async def test_log_events_and_deliveries_can_be_turned_off(
    nowhere: Path, sim: Simulator, receiver: Receiver
) -> None:
    sim.create_task("lazza-1", "lz-run", TaskStatus.RUNNING)
    config = console_config(nowhere, sim, receiver, events=False, deliveries=False)

    result = await bulkwatch("once", "-c", config, cwd=nowhere)

    assert result.code == 0, result
    assert len(receiver.requests) == 1  # the event went out, quietly
    assert result.stderr == ""


# --- what the commands show ----------------------------------------------------------------


async def test_check_config_shows_where_each_notifier_sends_without_its_secrets(
    nowhere: Path,
) -> None:
    config = write(
        nowhere / "c.yaml",
        stores=[STORE],
        notifiers=[
            {"name": "local", "type": "webhook", "url": "http://127.0.0.1:8080/hooks/bulkwatch"},
            {
                "name": "keyed",
                "type": "webhook",
                "url": "https://bot:pa55-f1rst@hooks.example.com/in?key=q-secret-4d#frag",
            },
            {"name": "script", "type": "command", "argv": ["/usr/bin/curl", "-H", "tok-arg-9"]},
        ],
    )

    result = await bulkwatch("check-config", "-c", config, cwd=nowhere)

    assert result.code == 0, result
    lines = result.stdout.splitlines()
    assert "  - local: webhook -> http://127.0.0.1:8080/hooks/bulkwatch events=* stores=*" in lines
    assert "  - keyed: webhook -> https://hooks.example.com/in?… events=* stores=*" in lines
    assert "  - script: command -> /usr/bin/curl events=* stores=*" in lines
    for secret in ("pa55-f1rst", "bot", "q-secret-4d", "frag", "tok-arg-9"):
        assert secret not in result.stdout


async def test_deliveries_list_shows_each_rows_task_and_time(
    nowhere: Path, sim: Simulator, receiver: Receiver
) -> None:
    receiver.default = Reply(400)  # refused for good: dead at once
    sim.create_task("lazza-1", "lz-run", TaskStatus.RUNNING)
    config = console_config(nowhere, sim, receiver)
    assert (await bulkwatch("once", "-c", config, cwd=nowhere)).code == 0

    plain, as_json = await asyncio.gather(
        bulkwatch("deliveries", "list", "-c", config, cwd=nowhere),
        bulkwatch("deliveries", "list", "--json", "-c", config, cwd=nowhere),
    )

    assert plain.code == 0, plain
    [row] = json.loads(as_json.stdout)
    assert row["subject"] == "lazza-1/lz-run"
    [line] = plain.stdout.splitlines()
    number, time, notifier, kind, subject, *rest = line.split()
    assert (int(number), notifier, kind, subject) == (
        row["id"],
        "hook",
        "bulkwatch.task.running",
        "lazza-1/lz-run",
    )
    assert time == row["created_at"]
    assert time.endswith("Z")
    assert rest[0] == "attempts=1"
