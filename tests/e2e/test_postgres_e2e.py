"""bulkwatch with its state in PostgreSQL, end to end: the engine against the simulator and a
webhook receiver (real HTTP, the local PostgreSQL), and the real `bulkwatch` command.
Skipped, saying so, without a PostgreSQL on 127.0.0.1:5432."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from bulkwatch.daemon.engine import Engine
from bulkwatch.model import TaskStatus
from bulkwatch.simulator import make_stores, run_simulator
from bulkwatch.store.postgres.store import PostgresStore
from bulkwatch.telemetry.metrics import Metrics
from helpers.pg_support import fresh_schema, run_sql
from helpers.support import settings_for, write_config
from helpers.webhook_receiver import Reply, running_receiver

CLI = (sys.executable, "-m", "bulkwatch")


@pytest.fixture
async def pg_url() -> AsyncIterator[str]:
    """A state URL naming a fresh schema of the local PostgreSQL."""
    async with fresh_schema() as (url, _):
        yield url


async def test_transitions_are_delivered_once_and_survive_a_restart(
    tmp_path: Path, pg_url: str
) -> None:
    async with run_simulator(stores=make_stores(1, 1)) as sim, running_receiver() as receiver:
        settings = settings_for(
            tmp_path, sim.store_configs(), receiver.url, state={"url": pg_url, "pool_size": 3}
        )
        sim.create_task("lazza-1", "a", TaskStatus.CREATED)
        sim.create_task("line-1", "b", TaskStatus.RUNNING)
        # The first attempt fails: a row stays pending over the restart.
        receiver.script = [Reply(503)]
        async with Engine(settings, metrics=Metrics(CollectorRegistry())) as engine:
            assert isinstance(engine.store, PostgresStore)
            assert engine.store.pool_size == 3
            assert await engine.poll_all_once()
            await engine.deliver_due_once()
        sim.advance("lazza-1", "a")
        async with Engine(settings, metrics=Metrics(CollectorRegistry())) as engine:
            await asyncio.sleep(0.25)  # the retry backoff (at most 0.2 s here) falls due
            assert await engine.poll_all_once()
            await engine.deliver_due_once()
            assert await engine.poll_all_once()  # nothing changed: nothing new
            await engine.deliver_due_once()
            await engine.store.ping()
        seen = sorted((e["subject"], e["type"]) for e in receiver.events)
        assert seen == [
            ("lazza-1/a", "bulkwatch.task.created"),
            ("lazza-1/a", "bulkwatch.task.running"),
            ("line-1/b", "bulkwatch.task.running"),
        ]
        assert len({e["id"] for e in receiver.events}) == 3
    rows = await run_sql(pg_url, "SELECT status, count(*) FROM outbox GROUP BY status")
    assert [tuple(r) for r in rows] == [("delivered", 3)]


async def _bulkwatch(*args: str | Path) -> tuple[int, str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BULKWATCH_")}
    proc = await asyncio.create_subprocess_exec(
        *CLI,
        *map(str, args),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_the_commands_run_on_postgresql_state(tmp_path: Path, pg_url: str) -> None:
    async with run_simulator(stores=make_stores(1, 0)) as sim, running_receiver() as receiver:
        sim.create_task("lazza-1", "a", TaskStatus.RUNNING)
        config = write_config(
            tmp_path / "c.yaml",
            {
                "instance": "pg-test",
                "state": {"url": pg_url},
                "server": {"enabled": False},
                "stores": sim.store_configs(),
                "defaults": {"rate_limit": 1000},
                "notifiers": [{"name": "hook", "type": "webhook", "url": receiver.url}],
            },
        )
        code, out, err = await _bulkwatch("once", "--config", config)
        assert code == 0, out + err
        code, out, err = await _bulkwatch("status", "--json", "--config", config)
        assert code == 0, out + err
        (task,) = json.loads(out)["tasks"]
        assert (task["store"], task["task_id"], task["status"]) == ("lazza-1", "a", "RUNNING")
        code, out, err = await _bulkwatch(
            "deliveries", "list", "--status", "delivered", "--config", config
        )
        assert code == 0, out + err
        assert "lazza-1" in out
    assert [e["subject"] for e in receiver.events] == ["lazza-1/a"]


async def test_a_password_in_the_state_url_is_never_shown(tmp_path: Path) -> None:
    url = "postgresql://bw:hunter2@127.0.0.1:1/bulkwatch?search_path=bw"
    nobody = {  # a store nobody answers for: the commands fail on the state URL first
        "name": "lazza-1",
        "platform": "shoplazza",
        "domain": "shop1",
        "access_token": "tok-1",
        "base_url": "http://127.0.0.1:9",
    }
    config = write_config(
        tmp_path / "c.yaml",
        {"state": {"url": url}, "server": {"enabled": False}, "stores": [nobody]},
    )
    code, out, err = await _bulkwatch("check-config", "--config", config)
    assert code == 0, out + err
    assert "state: postgresql://bw:***@127.0.0.1:1/bulkwatch?search_path=bw" in out
    for command in (("run",), ("once",), ("status",)):
        code, out, err = await _bulkwatch(*command, "--config", config)
        assert code == 1, (command, out, err)
        assert "hunter2" not in out + err
        assert "Traceback" not in err
        assert err.startswith("bulkwatch: state.url: ")
        assert "postgresql://bw:***@127.0.0.1:1/bulkwatch" in err
