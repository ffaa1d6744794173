"""Replicas sharing the stores through leases (`state.replicas`), engines in one process on
one PostgreSQL schema, against the simulator: the fair split as replicas join and leave, a
replica that cannot renew stopping its polls by TTL/2 and the others taking its stores over,
a fenced write, readiness. Skipped, saying so, without PostgreSQL."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bulkwatch.daemon.engine import Engine
from bulkwatch.daemon.health import readiness
from bulkwatch.daemon.web import start_web
from bulkwatch.model import TaskStatus
from bulkwatch.simulator import Simulator, make_stores, run_simulator
from helpers.pg_support import run_sql
from helpers.replica_support import (
    TTL,
    keeper,
    replica_settings,
    sample,
    scheduled,
    serving,
    until,
)
from helpers.support import bound_port

STORES = 5


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    async with run_simulator(stores=make_stores(STORES, 0)) as simulator:
        yield simulator


def _split(*engines: Engine) -> list[int]:
    return sorted(len(keeper(e).held) for e in engines)


def _disjoint_and_whole(*engines: Engine) -> bool:
    held = [keeper(e).held for e in engines]
    every = [store for h in held for store in h]
    return len(every) == len(set(every)) == STORES


async def _holders(url: str) -> dict[str, str]:
    rows = await run_sql(url, "SELECT store, owner FROM leases WHERE expires_at >= now()")
    return {r[0]: r[1] for r in rows}


async def _ready(engine: Engine) -> dict[str, Any]:
    now = datetime.now(UTC)
    return (await readiness(engine.status, now, now)).body


async def test_replicas_split_the_stores_fairly_as_they_join_and_leave(
    tmp_path: Path, sim: Simulator, pg_url: str
) -> None:
    stores = sim.store_configs()
    async with serving(replica_settings(tmp_path, stores, pg_url, "a")) as a:
        await until(lambda: len(keeper(a).held) == STORES, "a alone holds every store")
        assert scheduled(a) == keeper(a).held
        async with serving(replica_settings(tmp_path, stores, pg_url, "b")) as b:
            # Two live: a share of 3; a gives up 2, which b claims (and waits for a third).
            await until(lambda: _split(a, b) == [2, 3], "a 3/2 split")
            assert _disjoint_and_whole(a, b)
            async with serving(replica_settings(tmp_path, stores, pg_url, "c")) as c:
                await until(lambda: _split(a, b, c) == [1, 2, 2], "a 2/2/1 split")
                assert _disjoint_and_whole(a, b, c)
                for engine in (a, b, c):
                    assert scheduled(engine) == keeper(engine).held
                    assert engine.status.replica is not None
                    assert (engine.status.replica.share, engine.status.replica.live) == (2, 3)
                    body = await _ready(engine)
                    assert body["status"] == "ready", body
                    assert body["checks"]["replica"]["ok"]
                waiting = [e for e in (a, b, c) if len(keeper(e).held) == 1]
                assert [e.status.replica.waiting for e in waiting if e.status.replica] == [True]
                holders = await _holders(pg_url)
                for engine in (a, b, c):
                    mine = {s for s, owner in holders.items() if owner == engine.replica}
                    assert mine == keeper(engine).held
            # c stopped and released its leases: a and b take its stores over, 3 and 2.
            assert sample(c, "bulkwatch_lease_releases_total") >= 1
            assert "c" not in (await _holders(pg_url)).values()
            await until(lambda: _split(a, b) == [2, 3], "a 3/2 split again")
            assert _disjoint_and_whole(a, b)
            # Released stores are free, not expired: claiming them is no takeover.
            assert sample(a, "bulkwatch_lease_takeovers_total") == 0
            assert sample(b, "bulkwatch_lease_takeovers_total") == 0
    assert await _holders(pg_url) == {}  # every replica released its leases on stop


async def test_a_replica_that_cannot_renew_stops_polling_by_half_the_ttl_and_loses_its_stores(
    tmp_path: Path, sim: Simulator, pg_url: str
) -> None:
    stores = sim.store_configs()
    async with (
        serving(replica_settings(tmp_path, stores, pg_url, "a")) as a,
        serving(replica_settings(tmp_path, stores, pg_url, "b")) as b,
    ):
        await until(lambda: _split(a, b) == [2, 3] and _disjoint_and_whole(a, b), "a split")
        lost = set(keeper(a).held)
        # a's connections go: every renewal (and poll) fails from now on, for real.
        await a.store.close()
        failed = {"result": "failed"}
        await until(lambda: sample(a, "bulkwatch_lease_renewals_total", **failed) > 0, "failing")
        status = a.status.replica
        assert status is not None
        assert status.renewed_at is not None
        last = status.renewed_at  # the last success: renewals run one after the other
        # Sleep past the deadline: the keeper's timer, due at the deadline, runs first.
        await asyncio.sleep(max(last + TTL / 2 - time.monotonic(), 0) + 0.01)
        assert status.renewed_at == last  # no renewal succeeded since: the pool is closed
        assert keeper(a).held == set()
        assert scheduled(a) == set()
        assert a.status.owned == set()
        assert sample(a, "bulkwatch_lease_lost_total", reason="unrenewed") == len(lost)
        body = await _ready(a)
        assert body["status"] == "not ready"
        assert not body["checks"]["replica"]["renewing"]
        assert any(p.startswith("replica: no lease renewal succeeded") for p in body["problems"])
        # b takes a's stores over once their leases expire (TTL after a's last renewal).
        await until(lambda: len(keeper(b).held) == STORES, "b holds every store")
        assert sample(b, "bulkwatch_lease_takeovers_total") == len(lost)
        assert scheduled(b) == keeper(b).held
        assert set((await _holders(pg_url)).values()) == {"b"}


async def test_a_poll_write_after_the_lease_passed_to_another_replica_is_refused(
    tmp_path: Path, sim: Simulator, pg_url: str
) -> None:
    # A long TTL: no renewal notices the loss before the poll does.
    settings = replica_settings(tmp_path, sim.store_configs(), pg_url, "a", ttl=60)
    async with serving(settings) as a:
        await until(lambda: len(keeper(a).held) == STORES, "a holds every store")
        source, key = next((s, k) for s, k in a.endpoints if k.store == "lazza-1")
        sim.create_task("lazza-1", "t1", TaskStatus.RUNNING)
        await run_sql(pg_url, "UPDATE leases SET owner = 'intruder' WHERE store = 'lazza-1'")
        assert not await a.poller.poll(source, key)
        assert "lazza-1" not in keeper(a).held
        assert "lazza-1" not in scheduled(a)
        assert sample(a, "bulkwatch_lease_lost_total", reason="fenced") == 1
        assert await a.store.list_tasks("lazza-1") == []  # nothing of the poll was written
        other, other_key = next((s, k) for s, k in a.endpoints if k.store == "lazza-2")
        assert await a.poller.poll(other, other_key)  # its other stores poll on


async def test_a_reload_releases_removed_stores_and_claims_added_ones(
    tmp_path: Path, pg_url: str
) -> None:
    async with run_simulator(stores=make_stores(3, 0)) as sim:
        first, second, third = sim.store_configs()
        async with serving(replica_settings(tmp_path, [first, second], pg_url, "a")) as a:
            await until(lambda: keeper(a).held == {"lazza-1", "lazza-2"}, "a holds both")
            await a.reload(replica_settings(tmp_path, [first, third], pg_url, "a"))
            await until(lambda: keeper(a).held == {"lazza-1", "lazza-3"}, "a holds the new set")
            assert scheduled(a) == {"lazza-1", "lazza-3"}
            assert await _holders(pg_url) == {"lazza-1": "a", "lazza-3": "a"}
            assert sample(a, "bulkwatch_lease_releases_total") == 1


async def test_the_api_and_the_status_page_name_the_owner_of_each_store(
    tmp_path: Path, sim: Simulator, pg_url: str
) -> None:
    stores = sim.store_configs()
    async with (
        serving(replica_settings(tmp_path, stores, pg_url, "a")) as a,
        serving(replica_settings(tmp_path, stores, pg_url, "b")) as b,
        aiohttp.ClientSession() as http,
    ):
        await until(lambda: _split(a, b) == [2, 3] and _disjoint_and_whole(a, b), "a split")
        runner = await start_web(a, "127.0.0.1", 0)
        try:
            url = f"http://127.0.0.1:{bound_port(runner)}"
            async with http.get(f"{url}/api/v1/stores") as resp:
                listed = await resp.json()
            async with http.get(f"{url}/api/v1/summary") as resp:
                summary = await resp.json()
            async with http.get(url + "/") as resp:
                page = await resp.text()
        finally:
            await runner.cleanup()
        expected = dict.fromkeys(keeper(a).held, "a") | dict.fromkeys(keeper(b).held, "b")
        mine = len(keeper(a).held)
    assert {s["name"]: s["owner"] for s in listed["stores"]} == expected
    replica = summary["replica"]
    assert (replica["id"], replica["share"], replica["live_replicas"]) == ("a", 3, 2)
    assert replica["stores_owned"] == mine
    assert '<th scope="col">Owner</th>' in page
    assert f"replica a polls {mine} (share 3, 2 replicas live)" in page


async def test_giving_a_store_up_cancels_its_poll_in_flight(
    tmp_path: Path, sim: Simulator, pg_url: str
) -> None:
    settings = replica_settings(tmp_path, sim.store_configs(), pg_url, "a", ttl=60)
    async with serving(settings) as a:
        await until(lambda: len(keeper(a).held) == STORES, "a holds every store")
        assert a.scheduler is not None
        job = a.scheduler.get_job("lazza-1/tasks")
        sim.inject("slow", store="lazza-1", delay=30)  # answers long after the poll's timeout
        before = sim.request_count("lazza-1")
        running = asyncio.create_task(job.func())  # the job as the scheduler runs it
        await until(lambda: sim.request_count("lazza-1") > before, "the poll's request sent")
        a.fleet.disown(["lazza-1"])
        await running  # returns: its poll was cancelled, not failed
        assert a.scheduler.get_job("lazza-1/tasks") is None
        polls = {"platform": "shoplazza", "store": "lazza-1"}
        assert sample(a, "bulkwatch_polls_total", **polls, outcome="error") == 0


def _store_series(engine: Engine) -> set[str]:
    """The stores this engine exports a `bulkwatch_store_up` series for."""
    families = engine.metrics.registry.collect()
    return {
        s.labels["store"]
        for family in families
        if family.name == "bulkwatch_store_up"
        for s in family.samples
    }


async def test_a_replica_exports_the_series_of_the_stores_it_holds_only(
    tmp_path: Path, sim: Simulator, pg_url: str
) -> None:
    stores = sim.store_configs()
    async with serving(replica_settings(tmp_path, stores, pg_url, "a")) as a:
        await until(lambda: len(keeper(a).held) == STORES, "a alone holds every store")
        assert _store_series(a) == keeper(a).held
        async with serving(replica_settings(tmp_path, stores, pg_url, "b")) as b:
            await until(lambda: _split(a, b) == [2, 3], "a 3/2 split")
            # What a gave up is b's now: a no longer exports a value it stopped updating
            # (a store-down alert would read it forever), b exports what it took.
            assert _store_series(a) == keeper(a).held
            assert _store_series(b) == keeper(b).held
        await until(lambda: len(keeper(a).held) == STORES, "a holds every store again")
        assert _store_series(a) == keeper(a).held


async def test_readiness_gives_a_store_taken_over_the_grace_of_a_store_at_start(
    tmp_path: Path, sim: Simulator, pg_url: str
) -> None:
    stores = sim.store_configs()
    async with serving(replica_settings(tmp_path, stores, pg_url, "a")) as a:
        await until(lambda: len(keeper(a).held) == STORES, "a holds every store")
        status = a.status
        # Pretend a took one store back a minute ago, after polling it long before: the old
        # poll does not count, and the store is due no sooner than a store at start would be.
        store = min(keeper(a).held)
        keys = [key for key in status.staleness if key.store == store]
        taken = datetime.now(UTC)
        since = taken - timedelta(hours=2)
        status.owned_at[store] = taken
        for key in keys:
            status.last_poll[key] = taken - timedelta(hours=1)
        deadline = status.staleness[keys[0]]
        early = await readiness(status, since, taken + timedelta(seconds=deadline / 2))
        assert not any(store in k for k in early.body["checks"]["polls"]["never_polled"])
        assert not any(store in k for k in early.body["checks"]["polls"]["stale"])
        late = await readiness(status, since, taken + timedelta(seconds=deadline + 1))
        assert [k for k in late.body["checks"]["polls"]["never_polled"] if store in k]
