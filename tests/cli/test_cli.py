"""The real `bulkwatch` command, run as a subprocess against the simulator and a webhook receiver.

The simulator and the receiver serve from this test process on 127.0.0.1, so every subprocess is
started with `asyncio.create_subprocess_exec` and awaited: the event loop keeps answering the
subprocess's requests while the test waits for it.
"""

from __future__ import annotations

import asyncio
import base64
import json
import signal
import socket
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from cloudevents.core.bindings.http import HTTPMessage, from_http_event
from prometheus_client.parser import text_string_to_metric_families

from bulkwatch import __version__
from bulkwatch.config import load_settings
from bulkwatch.model import Platform, TaskStatus
from bulkwatch.simulator import Simulator, make_stores, run_simulator
from helpers.cli import CLI, Finished, clean_env
from helpers.cli import run_cli as bulkwatch
from helpers.support import free_port
from helpers.webhook_receiver import Receiver, Reply, running_receiver

SECRET = "whsec_" + base64.b64encode(b"cli-test-signing-key-0123456789").decode()
HEADER_TOKEN = "Bearer hdr-secret-5f1e"  # a fake credential the output must never show
LAZZA_PATH = "/openapi/2022-01/data/tasks"
LINE_PATH = "/admin/openapi/v20260301/current_bulk_operation.json"
STOP_WITHIN = 10.0  # seconds a stopping daemon gets before the test fails


# --- running the command ---------------------------------------------------------------------


class Daemon:
    """A long-running `bulkwatch` subprocess whose output is collected while it runs."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdout is not None
        assert proc.stderr is not None
        self.proc = proc
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        self._changed = asyncio.Condition()
        self.readers = [
            asyncio.create_task(self._read(proc.stdout, self.stdout)),
            asyncio.create_task(self._read(proc.stderr, self.stderr)),
        ]

    async def _read(self, stream: asyncio.StreamReader, into: list[str]) -> None:
        # Reading all the time also keeps a chatty daemon from blocking on a full pipe.
        while line := await stream.readline():
            async with self._changed:
                into.append(line.decode())
                self._changed.notify_all()

    async def wait_for_stdout(self, predicate: Callable[[str], bool], within: float = 20.0) -> str:
        """The first stdout line that satisfies `predicate`, waiting up to `within` seconds."""

        def found() -> str | None:
            return next((line for line in self.stdout if predicate(line)), None)

        async with asyncio.timeout(within), self._changed:
            await self._changed.wait_for(lambda: found() is not None or self.readers[0].done())
        line = found()
        assert line is not None, f"no such line; stdout: {''.join(self.stdout)!r}"
        return line

    async def stop(self, sig: signal.Signals = signal.SIGTERM) -> Finished:
        """Send `sig`; the daemon must exit within STOP_WITHIN seconds."""
        self.proc.send_signal(sig)
        async with asyncio.timeout(STOP_WITHIN):
            code = await self.proc.wait()
            await asyncio.gather(*self.readers)
        return Finished(code, "".join(self.stdout), "".join(self.stderr))


@asynccontextmanager
async def daemon(*args: str | Path) -> AsyncIterator[Daemon]:
    """Start `bulkwatch ARGS`; killed on exit if the test did not stop it."""
    proc = await asyncio.create_subprocess_exec(
        *CLI,
        *map(str, args),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=clean_env(),
    )
    running = Daemon(proc)
    try:
        yield running
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        await asyncio.gather(*running.readers)


# --- the world around it ---------------------------------------------------------------------


@dataclass(frozen=True)
class Seen:
    """One CloudEvent the receiver got, parsed with the `cloudevents` SDK."""

    id: str
    type: str
    source: str
    subject: str
    data: dict[str, Any]


def parse(body: bytes, headers: dict[str, str]) -> Seen:
    event = from_http_event(HTTPMessage(headers=headers, body=body))
    data = event.get_data()
    assert isinstance(data, dict)
    return Seen(
        id=str(event.get_id()),
        type=str(event.get_type()),
        source=str(event.get_source()),
        subject=str(event.get_subject()),
        data=data,
    )


def events(receiver: Receiver, since: int = 0) -> list[Seen]:
    """Every event the receiver was sent (accepted or not), from request number `since`."""
    return [parse(r.body, r.headers) for r in receiver.requests[since:]]


def kinds(seen: list[Seen]) -> set[tuple[str, str]]:
    return {(e.type, e.subject) for e in seen}


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    """One Shoplazza store (`lazza-1`) and one Shopline store (`line-1`), moved by hand."""
    async with run_simulator(stores=make_stores(1, 1), seed=7) as simulator:
        yield simulator


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async with running_receiver() as rec:
        rec.default = Reply(204)
        yield rec


def write_config(tmp_path: Path, sim: Simulator, receiver: Receiver, **extra: Any) -> Path:
    """A config watching every simulated store, delivering to `receiver`, state in tmp_path."""
    data: dict[str, Any] = {
        "instance": "cli-test",
        "state": {"url": f"sqlite:///{tmp_path / 'state.db'}"},
        "server": {"enabled": False},
        "defaults": {"interval": 0.25},
        "retry": {"initial": 0.05, "max_delay": 0.2},
        "delivery": {"idle_interval": 0.05},
        "log": {"level": "info", "format": "json"},
        "shutdown_grace": 3,
        "stores": sim.store_configs(),
        "notifiers": [
            {
                "name": "hook",
                "type": "webhook",
                "url": receiver.url,
                "secret": SECRET,
                "headers": {"Authorization": HEADER_TOKEN},
            }
        ],
    }
    data.update(extra)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def seed_tasks(sim: Simulator) -> None:
    """Before the first poll: one finished and one running Shoplazza task, a running Shopline
    query. Expected at the first poll: two `task.running` events and nothing for the finished."""
    sim.create_task("lazza-1", "lz-done", TaskStatus.COMPLETED)
    sim.create_task("lazza-1", "lz-run", TaskStatus.RUNNING)
    sim.create_task("line-1", "9001", TaskStatus.RUNNING, operation_type="QUERY")


FIRST_EVENTS = {
    ("bulkwatch.task.running", "lazza-1/lz-run"),
    ("bulkwatch.task.running", "line-1/9001"),
}


def endpoints_of(sim: Simulator, store: str) -> tuple[str, ...]:
    """The endpoints bulkwatch polls for a simulated store, as the simulator counts them."""
    st = sim.store(store)
    return ("tasks",) if st.platform is Platform.SHOPLAZZA else st.operation_types


def assert_no_secrets(sim: Simulator, result: Finished) -> None:
    """No store token, webhook secret or notifier header value in the command's output."""
    for secret in [st.token for st in sim.stores.values()] + [SECRET, HEADER_TOKEN]:
        assert secret not in result.output


async def get_when_up(
    session: aiohttp.ClientSession, url: str, within: float = 15.0
) -> tuple[int, str]:
    """GET `url`, retrying while the server is not listening yet; (status, body)."""
    async with asyncio.timeout(within):
        while True:
            try:
                async with session.get(url) as resp:
                    return resp.status, await resp.text()
            except aiohttp.ClientConnectorError:
                await asyncio.sleep(0.05)  # the server is still starting: try again shortly


# --- --version, --help -------------------------------------------------------------------------


async def test_version_prints_the_package_version_and_exits_0() -> None:
    result = await bulkwatch("--version")
    assert result.code == 0
    assert result.stdout.strip() == f"bulkwatch {__version__}"


async def test_help_lists_every_command_and_exits_0() -> None:
    result = await bulkwatch("--help")
    assert result.code == 0
    listed = {line.split()[0] for line in result.stdout.splitlines() if line.startswith("    ")}
    assert listed >= {"run", "once", "check-config", "status", "deliveries", "simulate", "demo"}


# --- check-config ------------------------------------------------------------------------------


async def test_check_config_summarises_a_valid_config_without_any_secret(tmp_path: Path) -> None:
    token_file = tmp_path / "line-token"
    token_file.write_text("tok-from-file-77c1\n", encoding="utf-8")
    config = tmp_path / "config.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "instance": "cli-test",
                "state": {"url": f"sqlite:///{tmp_path / 'state.db'}"},
                "server": {"enabled": False},
                "stores": [
                    {
                        "name": "lazza-main",
                        "platform": "shoplazza",
                        "domain": "mystore",
                        "access_token": "tok-inline-3b9a",
                    },
                    {
                        "name": "line-main",
                        "platform": "shopline",
                        "handle": "open001",
                        "access_token_file": str(token_file),
                    },
                ],
                "notifiers": [
                    {
                        "name": "ops-webhook",
                        "type": "webhook",
                        "url": "https://hooks.example.com/bulkwatch?key=url-secret-91",
                        "secret": SECRET,
                        "headers": {"Authorization": HEADER_TOKEN},
                    }
                ],
            }
        ),
        encoding="utf-8",
    )
    result = await bulkwatch("check-config", "--config", config)
    assert result.code == 0, result.output
    assert "lazza-main" in result.stdout
    assert "line-main" in result.stdout
    assert "ops-webhook" in result.stdout
    for secret in (
        "tok-inline-3b9a",
        "tok-from-file-77c1",
        SECRET,
        SECRET.removeprefix("whsec_"),
        "hdr-secret-5f1e",
        "url-secret-91",
    ):
        assert secret not in result.output


async def test_check_config_reports_each_problem_on_one_line_naming_its_field(
    tmp_path: Path,
) -> None:
    config = tmp_path / "bad.yaml"
    bad_secret = "whsec_!!!not-base64-c0ffee"
    config.write_text(
        yaml.safe_dump(
            {
                "server": {"enabled": False},
                "defaults": {"interval": -1},
                "stores": [
                    {
                        "name": "lazza-1",
                        "platform": "shoplazza",
                        "domain": "shop1",
                        "access_token": "tok-a",
                    },
                    {"name": "line-1", "platform": "shopline", "access_token": "tok-b"},
                ],
                "notifiers": [{"name": "hook", "type": "webhook", "secret": bad_secret}],
            }
        ),
        encoding="utf-8",
    )
    result = await bulkwatch("check-config", "--config", config)
    assert result.code == 2
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert all(line.startswith("config error: ") for line in lines), lines
    fields = sorted(line.removeprefix("config error: ").split(":", 1)[0] for line in lines)
    assert fields == [
        "defaults.interval",
        "notifiers[0].secret",
        "notifiers[0].url",
        "stores[1].handle",
    ]
    assert "config error: stores[1].handle: field required" in lines
    assert "Traceback" not in result.stderr
    assert bad_secret not in result.stderr


@pytest.mark.parametrize(
    ("content", "message"),
    [
        pytest.param(None, "config file not found", id="missing-file"),
        pytest.param("stores: [\n  - {name: x\n", "invalid YAML", id="invalid-yaml"),
    ],
)
async def test_check_config_exits_2_with_one_line_for_an_unreadable_file(
    tmp_path: Path, content: str | None, message: str
) -> None:
    config = tmp_path / "config.yaml"
    if content is not None:
        config.write_text(content, encoding="utf-8")
    result = await bulkwatch("check-config", "--config", config)
    assert result.code == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"config error: {config}")
    assert message in lines[0]


# --- once --------------------------------------------------------------------------------------


async def test_once_exits_0_and_delivers_the_baseline_events_of_unfinished_tasks(
    tmp_path: Path, sim: Simulator, receiver: Receiver
) -> None:
    seed_tasks(sim)
    config = write_config(tmp_path, sim, receiver)

    result = await bulkwatch("once", "--config", config)

    assert result.code == 0, result.output
    seen = events(receiver)
    assert kinds(seen) == FIRST_EVENTS  # nothing for lz-done, finished before the first poll
    assert len(seen) == len(FIRST_EVENTS)
    for event in seen:
        assert event.data["status"] == "RUNNING"
        assert event.data["previous_status"] is None
    assert {e.source for e in seen} == {"bulkwatch/cli-test"}
    assert_no_secrets(sim, result)
    assert {r.headers["webhook-id"] for r in receiver.requests} == {e.id for e in seen}
    assert "Traceback" not in result.stderr


async def test_a_second_once_delivers_only_the_transition_with_its_previous_status(
    tmp_path: Path, sim: Simulator, receiver: Receiver
) -> None:
    seed_tasks(sim)
    config = write_config(tmp_path, sim, receiver)
    assert (await bulkwatch("once", "--config", config)).code == 0
    first = events(receiver)
    assert kinds(first) == FIRST_EVENTS

    sim.set_status("lazza-1", "lz-run", TaskStatus.COMPLETED)
    result = await bulkwatch("once", "--config", config)

    assert result.code == 0, result.output
    new = events(receiver, since=len(first))
    assert [(e.type, e.subject) for e in new] == [("bulkwatch.task.completed", "lazza-1/lz-run")]
    assert new[0].data["previous_status"] == "RUNNING"
    assert new[0].data["status"] == "COMPLETED"
    assert new[0].id not in {e.id for e in first}


@pytest.mark.parametrize("http_status", [503, 401])
async def test_once_exits_1_when_a_store_fails_and_still_delivers_the_other_stores_events(
    tmp_path: Path, sim: Simulator, receiver: Receiver, http_status: int
) -> None:
    seed_tasks(sim)
    sim.inject(http_status, store="line-1", times=None)
    config = write_config(tmp_path, sim, receiver)

    result = await bulkwatch("once", "--config", config)

    assert result.code == 1, result.output
    seen = events(receiver)
    task_events = {k for k in kinds(seen) if k[0].startswith("bulkwatch.task.")}
    assert task_events == {("bulkwatch.task.running", "lazza-1/lz-run")}
    # The failing store may be reported down, but it never changes a task.
    assert {e.data["store"] for e in seen if e.type.startswith("bulkwatch.store.")} <= {"line-1"}
    failing = [log for log in result.logs() if log.get("event") == "poll failing"]
    assert {log["store"] for log in failing} == {"line-1"}
    assert {log["http_status"] for log in failing} == {http_status}
    assert "Traceback" not in result.stderr
    assert_no_secrets(sim, result)


async def test_once_and_run_exit_2_on_a_bad_config_without_polling(
    tmp_path: Path, sim: Simulator, receiver: Receiver
) -> None:
    stores = sim.store_configs()
    del stores[1]["handle"]
    config = write_config(tmp_path, sim, receiver, stores=stores)

    results = await asyncio.gather(
        bulkwatch("once", "--config", config), bulkwatch("run", "--config", config)
    )

    for result in results:
        assert result.code == 2
        assert result.stderr.splitlines() == ["config error: stores[1].handle: field required"]
        assert "Traceback" not in result.stderr
    assert sim.stats()["total_requests"] == 0
    assert not (tmp_path / "state.db").exists()


# --- status ------------------------------------------------------------------------------------


async def test_status_lists_the_tracked_tasks_of_each_store(
    tmp_path: Path, sim: Simulator, receiver: Receiver
) -> None:
    seed_tasks(sim)
    config = write_config(tmp_path, sim, receiver)
    assert (await bulkwatch("once", "--config", config)).code == 0

    plain, as_json = await asyncio.gather(
        bulkwatch("status", "--config", config),
        bulkwatch("status", "--config", config, "--json"),
    )

    assert plain.code == 0, plain.output
    assert as_json.code == 0, as_json.output
    lines = plain.stdout.splitlines()
    assert "lazza-1 (up): 2 tracked task(s)" in lines
    assert "line-1 (up): 1 tracked task(s)" in lines
    by_id = {line.split()[1]: line.split()[2] for line in lines if line.startswith("  ")}
    assert by_id == {"lz-done": "COMPLETED", "lz-run": "RUNNING", "9001": "RUNNING"}
    doc = json.loads(as_json.stdout)
    assert doc["down"] == []
    rows = {(t["store"], t["task_id"]): t for t in doc["tasks"]}
    assert {key: row["status"] for key, row in rows.items()} == {
        ("lazza-1", "lz-done"): "COMPLETED",
        ("lazza-1", "lz-run"): "RUNNING",
        ("line-1", "9001"): "RUNNING",
    }
    assert rows["line-1", "9001"]["endpoint"] == "QUERY"
    assert rows["lazza-1", "lz-run"]["platform"] == "shoplazza"


# --- deliveries --------------------------------------------------------------------------------


async def test_rejected_deliveries_are_listed_dead_and_retry_resends_them_with_the_same_ids(
    tmp_path: Path, sim: Simulator, receiver: Receiver
) -> None:
    seed_tasks(sim)
    config = write_config(tmp_path, sim, receiver)
    receiver.default = Reply(400)  # a permanent refusal: dead at the first attempt

    first = await bulkwatch("once", "--config", config)

    assert first.code == 0, first.output  # delivery failures do not fail `once`
    rejected = events(receiver)
    assert kinds(rejected) == FIRST_EVENTS
    assert len(rejected) == len(FIRST_EVENTS)  # no second attempt after a 400
    plain, as_json = await asyncio.gather(
        bulkwatch("deliveries", "list", "--config", config),
        bulkwatch("deliveries", "list", "--config", config, "--json"),
    )
    assert plain.code == 0, plain.output
    assert as_json.code == 0, as_json.output
    dead = json.loads(as_json.stdout)
    assert {(d["type"], d["event_id"]) for d in dead} == {(e.type, e.id) for e in rejected}
    assert {d["notifier"] for d in dead} == {"hook"}
    assert {d["attempts"] for d in dead} == {1}
    assert all("400" in d["last_error"] for d in dead)
    plain_lines = plain.stdout.splitlines()
    assert len(plain_lines) == len(dead)
    for row in dead:
        assert any(
            line.split()[0] == str(row["id"]) and row["type"] in line and "hook" in line
            for line in plain_lines
        )

    receiver.default = Reply(204)
    retry = await bulkwatch("deliveries", "retry", "--config", config)
    assert retry.code == 0, retry.output
    assert retry.stdout.strip() == "queued 2 dead deliveries again"
    again = await bulkwatch("once", "--config", config)

    assert again.code == 0, again.output
    resent = events(receiver, since=len(rejected))
    assert sorted(e.id for e in resent) == sorted(e.id for e in rejected)
    assert kinds(resent) == FIRST_EVENTS


# --- run ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
async def test_run_delivers_events_and_stops_cleanly_on_a_signal(
    tmp_path: Path, sim: Simulator, receiver: Receiver, sig: signal.Signals
) -> None:
    seed_tasks(sim)
    config = write_config(tmp_path, sim, receiver)

    async with daemon("run", "--config", config) as running:
        await receiver.wait_for_requests(len(FIRST_EVENTS), within=15)
        result = await running.stop(sig)

    assert result.code == 0, result.output
    assert kinds(events(receiver)) == FIRST_EVENTS
    messages = [log["event"] for log in result.logs()]
    assert "bulkwatch started" in messages
    assert messages[-1] == "bulkwatch stopped"
    assert "Traceback" not in result.stderr
    assert_no_secrets(sim, result)


async def test_run_exits_0_within_the_grace_period_while_a_poll_hangs(
    tmp_path: Path, receiver: Receiver
) -> None:
    # A short simulator shutdown: its hung handlers would otherwise hold the teardown.
    async with run_simulator(stores=make_stores(1, 1), shutdown_timeout=0.1) as sim:
        seed_tasks(sim)
        sim.inject("slow", store="line-1", delay=60, times=None)
        # Without the grace period the stop would wait for the 60 s request timeout.
        config = write_config(
            tmp_path, sim, receiver, shutdown_grace=1, defaults={"interval": 0.25, "timeout": 60}
        )
        async with daemon("run", "--config", config) as running:
            await receiver.wait_for_requests(1, within=15)  # the hung store delays no other
            async with asyncio.timeout(15):
                await sim.wait_for_requests("line-1", len(endpoints_of(sim, "line-1")))
            result = await running.stop()

    assert result.code == 0, result.output
    assert kinds(events(receiver)) == {("bulkwatch.task.running", "lazza-1/lz-run")}
    assert [log["event"] for log in result.logs()][-1] == "bulkwatch stopped"


async def test_run_serves_metrics_and_health_while_it_runs(
    tmp_path: Path, sim: Simulator, receiver: Receiver, session: aiohttp.ClientSession
) -> None:
    seed_tasks(sim)
    port = free_port()
    config = write_config(
        tmp_path, sim, receiver, server={"enabled": True, "host": "127.0.0.1", "port": port}
    )

    async with daemon("run", "--config", config) as running:
        health_status, health = await get_when_up(session, f"http://127.0.0.1:{port}/healthz")
        await receiver.wait_for_requests(len(FIRST_EVENTS), within=15)
        metrics_status, metrics = await get_when_up(session, f"http://127.0.0.1:{port}/metrics")
        result = await running.stop()

    assert health_status == 200, health
    assert metrics_status == 200, metrics
    assert "bulkwatch_polls_total" in metrics
    samples = [s for f in text_string_to_metric_families(metrics) for s in f.samples]
    ok_polls = {
        s.labels["store"]: s.value
        for s in samples
        if s.name == "bulkwatch_polls_total" and s.labels.get("outcome") == "ok"
    }
    assert ok_polls.keys() == {"lazza-1", "line-1"}
    assert all(count >= 1 for count in ok_polls.values())
    running_events = [
        s.value
        for s in samples
        if s.name == "bulkwatch_events_total" and s.labels == {"type": "bulkwatch.task.running"}
    ]
    assert running_events == [2.0]
    assert "lz-run" not in metrics  # never a task id as a label
    assert result.code == 0, result.output


async def test_run_after_a_restart_delivers_only_the_new_transition(
    tmp_path: Path, sim: Simulator, receiver: Receiver
) -> None:
    seed_tasks(sim)
    config = write_config(tmp_path, sim, receiver)
    async with daemon("run", "--config", config) as first_run:
        await receiver.wait_for_requests(len(FIRST_EVENTS), within=15)
        assert (await first_run.stop()).code == 0
    first = events(receiver)
    assert kinds(first) == FIRST_EVENTS

    sim.set_status("lazza-1", "lz-run", TaskStatus.COMPLETED)
    before = {name: Counter(sim.store(name).stats.endpoints) for name in sim.stores}
    async with daemon("run", "--config", config) as second_run:
        await receiver.wait_for_requests(len(first) + 1, within=15)
        # Every endpoint polled twice in this run: a re-emitted old state would be in the outbox.
        async with asyncio.timeout(15):
            for name, counts in before.items():
                await sim.wait_for_requests(name, counts.total() + 2 * len(endpoints_of(sim, name)))
        result = await second_run.stop()
    for name, counts in before.items():
        now = sim.store(name).stats.endpoints
        assert all(now[endpoint] > counts[endpoint] for endpoint in endpoints_of(sim, name))

    assert result.code == 0, result.output
    new = events(receiver, since=len(first))
    assert [(e.type, e.subject) for e in new] == [("bulkwatch.task.completed", "lazza-1/lz-run")]
    assert new[0].data["previous_status"] == "RUNNING"
    # Nothing is left in the outbox that could still go out as a duplicate later.
    pending = await bulkwatch("deliveries", "list", "--status", "pending", "--json", "-c", config)
    assert json.loads(pending.stdout) == []


# --- simulate, demo ----------------------------------------------------------------------------


async def test_simulate_on_port_0_announces_its_url_serves_the_api_and_stops_on_sigterm(
    tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    written = tmp_path / "sim.yaml"
    async with daemon("simulate", "--port", "0", "--write-config", written) as running:
        first = await running.wait_for_stdout(lambda line: True)
        assert first.startswith("bulkwatch simulator listening on http://127.0.0.1:")
        url = first.rsplit(" ", 1)[-1].strip()
        assert not url.endswith(":0")
        await running.wait_for_stdout(lambda line: "config written to" in line)

        async with session.get(
            f"{url}/lazza-1{LAZZA_PATH}", headers={"Access-Token": "sim-lazza-1"}
        ) as resp:
            assert resp.status == 200
            assert isinstance((await resp.json())["tasks"], list)
        async with session.get(
            f"{url}/line-1{LINE_PATH}?type=QUERY", headers={"Authorization": "Bearer sim-line-1"}
        ) as resp:
            assert resp.status == 200
            assert isinstance(await resp.json(), dict)
        async with session.get(
            f"{url}/lazza-1{LAZZA_PATH}", headers={"Access-Token": "wrong"}
        ) as resp:
            assert resp.status == 401

        result = await running.stop()

    assert result.code == 0, result.output
    settings = load_settings(written, environ={})
    assert {s.base_url for s in settings.stores} == {
        f"{url}/lazza-1",
        f"{url}/lazza-2",
        f"{url}/line-1",
        f"{url}/line-2",
    }


async def test_demo_shows_transitions_on_the_console_and_exits_0() -> None:
    result = await bulkwatch("demo", "--duration", "6")
    assert result.code == 0, result.output
    assert "bulkwatch demo: watching 4 simulated stores" in result.stdout
    assert "→" in result.output
    assert "bulkwatch stopped" in result.output
    assert "Traceback" not in result.output


async def test_run_with_a_taken_metrics_port_exits_1_with_one_line(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        config = tmp_path / "c.yaml"
        config.write_text(
            "stores: [{name: s, platform: shoplazza, domain: s, access_token: t,"
            " base_url: 'http://127.0.0.1:9'}]\n"
            f"state: {{url: 'sqlite:///{tmp_path}/s.db'}}\n"
            f"server: {{host: 127.0.0.1, port: {port}}}\n"
        )
        proc = await asyncio.create_subprocess_exec(
            *CLI,
            "run",
            "--config",
            str(config),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 1
    assert f"bulkwatch: server: cannot listen on 127.0.0.1:{port}" in err.decode()
    assert "Traceback" not in err.decode()
    assert not (tmp_path / "s.db").exists()  # found before the state database was created
