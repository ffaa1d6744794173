"""The rig of the replica tests does what they rely on: the proxy really cuts a client off
PostgreSQL (silence under a blackhole, refusal under a drop) and lets it back after healing;
the simulator's doors name the sender of every request."""

from __future__ import annotations

import asyncio

import aiohttp
import asyncpg
import pytest

from bulkwatch.simulator import make_stores
from helpers.pg_proxy import running_proxy
from helpers.pg_support import fresh_database, require_postgres
from helpers.sim_fronts import running_fronts


async def test_the_proxy_forwards_blackholes_drops_and_heals() -> None:
    require_postgres()
    async with fresh_database() as url, running_proxy(("127.0.0.1", 5432)) as proxy:
        through = url.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}")
        conn = await asyncpg.connect(through)
        assert await conn.fetchval("SELECT 1") == 1

        proxy.blackhole()
        with pytest.raises(TimeoutError):  # silence: no answer, no error
            await conn.fetchval("SELECT 2", timeout=0.5)
        with pytest.raises(TimeoutError):  # a new connection hangs the same way
            await asyncpg.connect(through, timeout=0.5)

        proxy.heal()
        conn.terminate()
        conn = await asyncpg.connect(through)
        assert await conn.fetchval("SELECT 3") == 3

        proxy.drop()
        with pytest.raises((OSError, asyncpg.InterfaceError, asyncpg.ConnectionDoesNotExistError)):
            await conn.fetchval("SELECT 4", timeout=2)
        with pytest.raises((OSError, asyncpg.ConnectionDoesNotExistError)):
            await asyncpg.connect(through, timeout=2)
        conn.terminate()

        proxy.heal()
        conn = await asyncpg.connect(through)
        assert await conn.fetchval("SELECT 5") == 5
        await conn.close()


async def test_each_door_names_its_sender() -> None:
    async with (
        running_fronts(make_stores(1, 1), replicas=3) as fronts,
        aiohttp.ClientSession() as session,
    ):
        for replica in (2, 0):
            for conf in fronts.store_configs(replica):
                path = (
                    "openapi/2022-01/data/tasks"
                    if conf["platform"] == "shoplazza"
                    else ("admin/openapi/v20251201/current_bulk_operation.json")
                )
                async with session.get(f"{conf['base_url']}/{path}") as resp:
                    await resp.read()
        await asyncio.sleep(0)
    assert [(r.store, r.replica) for r in fronts.requests] == [
        ("lazza-1", 2),
        ("line-1", 2),
        ("lazza-1", 0),
        ("line-1", 0),
    ]
    assert all(r.started <= r.ended for r in fronts.requests)
