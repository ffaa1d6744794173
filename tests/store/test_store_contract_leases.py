"""Store leases (`Leases`): on every backend (`store` from store_fixtures.py) one owner per
store, claims up to a limit, release frees at once, renew answers only for the owner's own
leases; on PostgreSQL, between replicas (separate pools on one schema, as separate processes
would be): expiry by the database's clock, takeover, and claims racing each other."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest

from bulkwatch.store.base import StateStore
from helpers.lease_support import age, claim, shared_schema
from helpers.pg_support import run_sql
from helpers.store_support import PostgresBackend

TTL = timedelta(seconds=30)
STORES = [f"store-{i:03d}" for i in range(10)]


async def test_two_owners_never_hold_one_store(store: StateStore) -> None:
    leases = store.leases
    first = await claim(leases, "replica-a", STORES, 4, TTL)
    assert len(first) == 4
    assert set(first) <= set(STORES)
    second = await claim(leases, "replica-b", STORES, 100, TTL)
    assert sorted(first + second) == STORES  # the rest, and none of replica-a's
    assert await claim(leases, "replica-a", STORES, 100, TTL) == []
    assert await claim(leases, "replica-c", STORES, 100, TTL) == []
    assert await leases.renew("replica-a", TTL) == sorted(first)
    assert await leases.renew("replica-b", TTL) == sorted(second)
    assert await leases.owners() == ["replica-a", "replica-b", "replica-c"]


async def test_release_frees_a_store_at_once_and_a_full_release_leaves(
    store: StateStore,
) -> None:
    leases = store.leases
    held = await claim(leases, "replica-a", STORES, 100, TTL)
    assert held == STORES
    await leases.release("replica-a", [STORES[0], STORES[1]])
    assert await leases.renew("replica-a", TTL) == STORES[2:]
    assert await claim(leases, "replica-b", STORES, 100, TTL) == STORES[:2]
    await leases.release("replica-b", [STORES[5]])  # not its own: nothing happens
    assert await leases.renew("replica-a", TTL) == STORES[2:]
    await leases.release("replica-a")
    assert await leases.renew("replica-b", TTL) == STORES[:2]
    assert await claim(leases, "replica-b", STORES, 100, TTL) == STORES[2:]
    assert await leases.owners() == ["replica-b"]


async def test_a_claim_asks_only_for_the_stores_it_names(store: StateStore) -> None:
    assert await claim(store.leases, "replica-a", STORES[:3], 100, TTL) == STORES[:3]
    assert await claim(store.leases, "replica-a", [], 100, TTL) == []
    assert await claim(store.leases, "replica-b", STORES, 0, TTL) == []
    assert await store.leases.renew("replica-b", TTL) == []
    assert await store.leases.owners() == ["replica-a", "replica-b"]


@pytest.fixture
async def replicas() -> AsyncIterator[tuple[PostgresBackend, list[StateStore]]]:
    """Three stores on one fresh PostgreSQL schema, each with its own pool."""
    async with shared_schema(3) as opened:
        yield opened


async def _expiry(url: str, owner: str) -> dict[str, timedelta]:
    """How long each of `owner`'s leases has left, by the database's clock."""
    rows = await run_sql(
        url, "SELECT store, expires_at - now() FROM leases WHERE owner = $1", owner
    )
    return {r[0]: r[1] for r in rows}


async def test_a_lease_lasts_its_ttl_by_the_database_clock(
    replicas: tuple[PostgresBackend, list[StateStore]],
) -> None:
    backend, (a, _, _) = replicas
    await claim(a.leases, "replica-a", STORES, 100, TTL)
    left = await _expiry(backend.url, "replica-a")
    assert sorted(left) == STORES
    assert all(TTL - timedelta(seconds=5) < t <= TTL for t in left.values())


async def test_an_expired_lease_is_taken_over_and_its_owner_is_no_longer_live(
    replicas: tuple[PostgresBackend, list[StateStore]],
) -> None:
    backend, (a, b, _) = replicas
    assert await claim(a.leases, "replica-a", STORES, 100, TTL) == STORES
    await age(backend.url, "replica-a", 29)  # one second left: still held
    assert await claim(b.leases, "replica-b", STORES, 100, TTL) == []
    assert await b.leases.owners() == ["replica-a", "replica-b"]
    await age(backend.url, "replica-a", 2)  # now expired
    assert await b.leases.owners() == ["replica-b"]
    assert await claim(b.leases, "replica-b", STORES, 100, TTL) == STORES
    assert await a.leases.renew("replica-a", TTL) == []  # taken: not renewed, not stolen back
    assert await b.leases.renew("replica-b", TTL) == STORES


async def test_renew_extends_only_the_owners_own_unexpired_leases(
    replicas: tuple[PostgresBackend, list[StateStore]],
) -> None:
    backend, (a, b, _) = replicas
    mine = await claim(a.leases, "replica-a", STORES, 5, TTL)
    theirs = await claim(b.leases, "replica-b", STORES, 100, TTL)
    await age(backend.url, "replica-a", 20)
    await age(backend.url, "replica-b", 20)
    # One of replica-a's leases expired unnoticed: renew must not bring it back.
    await run_sql(
        backend.url,
        "UPDATE leases SET expires_at = now() - interval '1 s' WHERE store = $1",
        mine[0],
    )
    assert await a.leases.renew("replica-a", TTL) == mine[1:]
    renewed, untouched = (
        await _expiry(backend.url, "replica-a"),
        await _expiry(backend.url, "replica-b"),
    )
    assert all(t > timedelta(seconds=25) for s, t in renewed.items() if s != mine[0])
    assert renewed[mine[0]] < timedelta(0)
    assert sorted(untouched) == theirs
    assert all(t < timedelta(seconds=11) for t in untouched.values())
    # The expired one is free to claim, by anyone (here its old owner, first).
    assert await claim(a.leases, "replica-a", STORES, 100, TTL) == [mine[0]]


async def test_racing_claims_never_give_one_store_to_two_replicas(
    replicas: tuple[PostgresBackend, list[StateStore]],
) -> None:
    backend, stores = replicas
    names = [f"race-{i:04d}" for i in range(300)]

    async def claim_all(owner: str, s: StateStore) -> list[str]:
        got: list[str] = []
        for _ in range(6):
            got += await claim(s.leases, owner, names, 40, TTL)
        return got

    for round_ in range(2):  # free stores, then stores whose leases all expired
        owners = [f"r{round_}-{i}" for i in range(len(stores))]
        claims = (claim_all(o, s) for o, s in zip(owners, stores, strict=True))
        results = list(await asyncio.gather(*claims))
        # A claim may come back short when another took its candidates first: sweep the rest.
        owners.append(f"r{round_}-sweep")
        results.append(await claim(stores[0].leases, owners[-1], names, len(names), TTL))
        every = [name for got in results for name in got]
        assert len(every) == len(set(every)) == len(names)
        for owner, got in zip(owners, results, strict=True):
            assert sorted(got) == sorted(await _expiry(backend.url, owner))
            await age(backend.url, owner, 60)
