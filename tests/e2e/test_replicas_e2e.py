"""Three real `bulkwatch run` replicas share 30 simulated stores through leases in PostgreSQL.

Each replica reaches the simulator through a port of its own, so every platform request names
its sender (`helpers.sim_fronts`), and PostgreSQL through a proxy of its own, which the test
can cut (`helpers.pg_proxy`). Tasks move through short lifecycles, each step only once the
shared state shows the last one (`helpers.replica_plan`), so every transition is an event the
webhook receiver must get, whoever polled the store.

What is checked, from the platform's side (the requests) and the replicas' (/metrics, the
lease table): every store is polled by exactly one replica; a replica killed with `kill -9`
has its stores taken over within the bound below; a replica cut off from PostgreSQL stops
polling its stores before any other starts, goes not ready, and gets a share again once
healed; the receiver gets every expected event, repeats only under the same id; and no two
replicas' turns at one store ever overlap in time.

The takeover bound, from the design (docs/scaling.md, daemon/leases.py): a dead or cut-off
replica's leases, and its place among the live replicas, end at most `lease_ttl` after its
last renewal, which it sent before it died (the database stamps `now() + ttl` after
receiving it); each survivor counts the live replicas at every round of its keeper (every
TTL/3) and at once claims up to its new, larger share; the first polls of the stores it
claims are spread over at most one `interval`. So: TTL + TTL/3 + interval, plus `SLACK` for a
loaded 2-core machine running three daemons, PostgreSQL and this test.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from pathlib import Path

import pytest

from bulkwatch.simulator import make_stores
from helpers.pg_support import require_postgres, run_sql
from helpers.replica_checks import duplicate_ids, overlaps, received, turns
from helpers.replica_plan import driving
from helpers.replicas import Cluster, Timing, eventually, running_cluster, watching_readyz
from helpers.task_plan import Plan

pytestmark = pytest.mark.timeout(150)

SEED = 20261201
STORES = make_stores(15, 15)
NAMES = {s.name for s in STORES}
TIMING = Timing(lease_ttl=4.0, interval=1.0, claim_timeout=5.0)
SLACK = 2.0
STEADY = 3.0  # seconds of the steady window: three polls of every store


def takeover_bound(t: Timing) -> float:
    return t.lease_ttl + t.round_every + t.interval + SLACK


async def start_and_settle(c: Cluster) -> tuple[dict[int, set[str]], float]:
    """Start every replica; once the leases are split, watch a steady window and check it:
    every store polled by exactly one replica, the one holding its lease. Returns each
    replica's stores, and when the steady window began."""
    for replica in c.replicas:
        await replica.start()

    share = math.ceil(len(NAMES) / len(c.replicas))

    async def split() -> bool:
        owned = [n or 0 for n in await c.owned()]
        return sum(owned) == len(NAMES) and all(n <= share for n in owned)

    await eventually(split, within=40, what="the stores split into fair shares")
    await asyncio.sleep(c.timing.interval)  # past the polls that were due at the split
    since = time.monotonic()
    await asyncio.sleep(STEADY)
    owners = c.fronts.owners(since, time.monotonic())
    assert set(owners) == NAMES, f"not polled in the steady window: {NAMES - set(owners)}"
    polled_by_two = {s: r for s, r in owners.items() if len(r) != 1}
    assert not polled_by_two, polled_by_two
    shares: dict[int, set[str]] = {r.index: set() for r in c.replicas}
    for store, (sender,) in owners.items():
        shares[sender].add(store)
    leases = await run_sql(c.database, "SELECT store, owner FROM leases WHERE expires_at > now()")
    assert {row["store"]: row["owner"] for row in leases} == {
        store: c[i].replica_id for i, stores in shares.items() for store in stores
    }
    owned = await c.owned()
    assert owned == [len(shares[r.index]) for r in c.replicas], (owned, shares)
    print(f"\nsplit: {[len(shares[i]) for i in sorted(shares)]} stores per replica")
    return shares, since


async def taken_over(c: Cluster, gone: int, stores: set[str], since: float) -> dict[str, float]:
    """Wait until every one of `stores` was polled by a replica other than `gone` after
    `since`; return when each first was, in seconds after `since`."""
    firsts: dict[str, float] = {}

    async def all_taken() -> bool:
        for r in c.fronts.since(since):
            if r.replica != gone and r.store in stores:
                firsts.setdefault(r.store, r.started - since)
        return set(firsts) == stores

    await eventually(all_taken, within=takeover_bound(c.timing) + 10, what="the takeover")
    return firsts


async def finish(c: Cluster, plan: Plan) -> None:
    """No new tasks; wait until every lane ended and every event was delivered."""
    plan.finish()

    async def ended() -> bool:
        return plan.done

    await eventually(ended, within=40, what="every lifecycle ended")

    async def delivered() -> bool:
        return received(c.receiver) >= plan.expected and await c.outbox_left() == 0

    await eventually(delivered, within=30, what="every event delivered")


def check_events_and_turns(c: Cluster, plan: Plan, since: float) -> dict[str, int]:
    """Every expected event and nothing else, one id per event, no overlapping turns from
    the first start on; returns how many times each store changed hands after `since`."""
    assert received(c.receiver) == plan.expected
    assert not duplicate_ids(c.receiver)
    by_store = turns(c.fronts.requests)
    assert not overlaps(by_store), overlaps(by_store)[:5]
    for replica in c.replicas:
        assert "Traceback" not in replica.log.read_text(encoding="utf-8"), replica.log
    return {store: len(ts) - 1 for store, ts in turns(c.fronts.since(since)).items()}


async def test_a_killed_replica_s_stores_are_taken_over_and_nothing_is_lost(
    tmp_path: Path,
) -> None:
    require_postgres()
    async with running_cluster(tmp_path, STORES, timing=TIMING) as c:
        plan = Plan(c.fronts.sim, random.Random(SEED))
        async with driving(plan, c.database):
            shares, steady = await start_and_settle(c)
            victim = 1
            killed_at = time.monotonic()
            await c[victim].kill()
            firsts = await taken_over(c, victim, shares[victim], killed_at)
            slowest = max(firsts.values())
            assert slowest <= takeover_bound(c.timing), firsts
            await eventually(
                lambda: _own_all(c, [0, 2]), within=10, what="the survivors own every store"
            )
            await finish(c, plan)
            codes = [await c[i].terminate() for i in (0, 2)]
        assert codes == [0, 0]
        changes = check_events_and_turns(c, plan, steady)
        moved = {s for s, n in changes.items() if n}
        assert moved == shares[victim], moved ^ shares[victim]
        assert all(changes[s] == 1 for s in moved)
        print(
            f"takeover after kill -9: first {min(firsts.values()):.2f} s, all {slowest:.2f} s "
            f"(bound {takeover_bound(c.timing):.1f} s); {len(plan.expected)} events, "
            f"{len(c.receiver.requests)} deliveries"
        )


async def _own_all(c: Cluster, replicas: list[int]) -> bool:
    owned = [await c[i].owned(c.session) for i in replicas]
    return sum(n or 0 for n in owned) == len(NAMES)


async def test_a_replica_cut_off_from_postgresql_stops_before_another_polls_its_stores(
    tmp_path: Path,
) -> None:
    require_postgres()
    async with running_cluster(tmp_path, STORES, timing=TIMING) as c:
        plan = Plan(c.fronts.sim, random.Random(SEED))
        async with driving(plan, c.database):
            shares, steady = await start_and_settle(c)
            cut = 2
            async with watching_readyz(c[cut], c.session) as answers:
                await eventually(lambda: _answered(answers, 0, 200), 10, "ready before the cut")
                cut_at = time.monotonic()
                c[cut].proxy.blackhole()
                firsts = await taken_over(c, cut, shares[cut], cut_at)
                assert max(firsts.values()) <= takeover_bound(c.timing), firsts
                # Its last request to each of its stores came before anyone else's first.
                last = {
                    r.store: r.ended - cut_at
                    for r in c.fronts.since(cut_at - 10)
                    if r.replica == cut and r.store in shares[cut]
                }
                assert all(last[s] < firsts[s] for s in shares[cut]), (last, firsts)
                await eventually(
                    lambda: _answered(answers, cut_at, 503),
                    within=2 * c.timing.lease_ttl,
                    what="the cut-off replica's /readyz says not ready",
                )

                c[cut].proxy.heal()
                healed_at = time.monotonic()
                await eventually(
                    lambda: _rejoined(c, cut, healed_at), within=30, what="it rejoins with a share"
                )
                rejoined = time.monotonic() - healed_at
                await eventually(
                    lambda: _answered(answers, healed_at, 200), within=10, what="ready again"
                )
            first_503 = min(at for at, status in answers if at >= cut_at and status == 503)
            await finish(c, plan)
            codes = [await r.terminate() for r in c.replicas]
        assert codes == [0, 0, 0]
        check_events_and_turns(c, plan, steady)
        print(
            f"cut off at 0: its last requests {max(last.values()):.2f} s, others' first "
            f"{min(firsts.values()):.2f} s, all taken over {max(firsts.values()):.2f} s; its "
            f"/readyz answered 503 from the question asked at {first_503 - cut_at:.2f} s; "
            f"healed: a share again after {rejoined:.2f} s"
        )


async def _answered(answers: list[tuple[float, int | None]], since: float, status: int) -> bool:
    """`status` is among the /readyz answers to the questions asked since `since`."""
    return any(at >= since and got == status for at, got in answers)


async def _rejoined(c: Cluster, index: int, since: float) -> bool:
    owned = await c[index].owned(c.session)
    polled = any(r.replica == index for r in c.fronts.since(since))
    return bool(owned) and polled
