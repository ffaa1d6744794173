"""The real `bulkwatch` command with replicas on PostgreSQL: `status` names the live replicas
and which one polls each store (without taking any lock), a daemon the database's daemon lock
excludes exits 3 with one line, and `state.replicas` on a SQLite state is a config error.
The replicas themselves are engines in this process (helpers/replica_support.py)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bulkwatch.simulator import Simulator, make_stores, run_simulator
from helpers.cli import run_cli
from helpers.replica_support import keeper, replica_settings, serving, until
from helpers.support import write_config


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    async with run_simulator(stores=make_stores(3, 0)) as simulator:
        yield simulator


def _config(tmp_path: Path, name: str) -> Path:
    return tmp_path / name / "config.yaml"  # where replica_settings wrote it


async def test_status_names_the_live_replicas_and_the_owner_of_each_store(
    tmp_path: Path, sim: Simulator, pg_url: str
) -> None:
    stores = sim.store_configs()
    async with (
        serving(replica_settings(tmp_path, stores, pg_url, "a")) as a,
        serving(replica_settings(tmp_path, stores, pg_url, "b")) as b,
    ):
        await until(
            lambda: (
                sorted([len(keeper(a).held), len(keeper(b).held)]) == [1, 2]
                and len(keeper(a).held | keeper(b).held) == 3
            ),
            "a 2/1 split",
        )
        owner = dict.fromkeys(keeper(a).held, "a") | dict.fromkeys(keeper(b).held, "b")
        done = await run_cli("status", "--config", _config(tmp_path, "a"))
        assert done.code == 0, done.output
        lines = done.stdout.splitlines()
        assert lines[0] == "replicas live: a, b"
        for name in ("lazza-1", "lazza-2", "lazza-3"):
            assert f"{name} (up): 0 tracked task(s), polled by {owner[name]}" in lines
        done = await run_cli("status", "--json", "--config", _config(tmp_path, "b"))
        assert done.code == 0, done.output
        found = json.loads(done.stdout)
        assert (found["owners"], found["replicas"]) == (owner, ["a", "b"])


async def test_a_daemon_without_replicas_is_refused_beside_replicas_and_the_other_way(
    tmp_path: Path, sim: Simulator, pg_url: str
) -> None:
    stores = sim.store_configs()
    single = replica_settings(tmp_path, stores, pg_url, "single", replicas=False)
    replica = replica_settings(tmp_path, stores, pg_url, "a")
    async with serving(replica):
        for command in ("run", "once"):
            done = await run_cli(command, "--config", _config(tmp_path, "single"))
            assert done.code == 3, done.output
            (line,) = done.stderr.splitlines()
            assert line.startswith("bulkwatch: state.url: bulkwatch replicas run against schema")
            assert line.endswith("set state.replicas: true to run beside them")
    async with serving(single):
        done = await run_cli("run", "--config", _config(tmp_path, "a"))
        assert done.code == 3, done.output
        (line,) = done.stderr.splitlines()
        assert line.startswith(
            "bulkwatch: state.url: a bulkwatch daemon without state.replicas uses schema"
        )
        done = await run_cli("status", "--config", _config(tmp_path, "single"))
        assert done.code == 0, done.output  # reading takes no lock
        assert "polled by" not in done.stdout  # no replicas, no owners


async def test_replicas_on_a_sqlite_state_are_a_config_error(tmp_path: Path) -> None:
    config = write_config(
        tmp_path / "c.yaml",
        {
            "state": {"url": f"sqlite:///{tmp_path / 'state.db'}", "replicas": True},
            "stores": [{"name": "s", "platform": "shoplazza", "domain": "d", "access_token": "t"}],
        },
    )
    for command in ("check-config", "run"):
        done = await run_cli(command, "--config", config)
        assert done.code == 2, done.output
        assert "state.replicas: replicas share the stores through PostgreSQL" in done.stderr
