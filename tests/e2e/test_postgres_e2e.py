"""bulkwatch with its state in PostgreSQL, end to end: the engine against the simulator and a
webhook receiver (real HTTP, the local PostgreSQL), and the real `bulkwatch` command.
Skipped, saying so, without a PostgreSQL on 127.0.0.1:5432."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from prometheus_client import CollectorRegistry

from bulkwatch.daemon.engine import Engine
from bulkwatch.model import TaskStatus
from bulkwatch.simulator import make_stores, run_simulator
from bulkwatch.store.postgres.store import PostgresStore
from bulkwatch.telemetry.metrics import Metrics
from helpers.cli import run_cli
from helpers.pg_support import run_sql
from helpers.support import settings_for, write_config
from helpers.webhook_receiver import Reply, running_receiver


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
        done = await run_cli("once", "--config", config)
        assert done.code == 0, done.output
        done = await run_cli("status", "--json", "--config", config)
        assert done.code == 0, done.output
        (task,) = json.loads(done.stdout)["tasks"]
        assert (task["store"], task["task_id"], task["status"]) == ("lazza-1", "a", "RUNNING")
        done = await run_cli("deliveries", "list", "--status", "delivered", "--config", config)
        assert done.code == 0, done.output
        assert "lazza-1" in done.stdout
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
    done = await run_cli("check-config", "--config", config)
    assert done.code == 0, done.output
    assert "state: postgresql://bw:***@127.0.0.1:1/bulkwatch?search_path=bw" in done.stdout
    for command in (("run",), ("once",), ("status",)):
        done = await run_cli(*command, "--config", config)
        assert done.code == 1, (command, done.output)
        assert "hunter2" not in done.output
        assert "Traceback" not in done.stderr
        assert done.stderr.startswith("bulkwatch: state.url: ")
        assert "postgresql://bw:***@127.0.0.1:1/bulkwatch" in done.stderr
