"""Per-store rate limits: the token bucket on a fake clock, then the real sources on 127.0.0.1."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Any

import aiohttp
import pytest

from bulkwatch.config import Settings, resolve_stores
from bulkwatch.sources.base import Source
from bulkwatch.sources.http.ratelimit import RateLimiter
from helpers.platform_stub import PlatformStub, Reply, Seen, json_reply
from helpers.source_support import build_source, poll

NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)


class FakeTime:
    """A monotonic clock that only moves when something sleeps on it."""

    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        await asyncio.sleep(0)  # yield like a real sleep, so others can reserve meanwhile
        self.now += seconds


def limiter(rate: float, burst: int, t: FakeTime) -> RateLimiter:
    return RateLimiter(rate, burst, clock=t.clock, sleep=t.sleep)


def test_a_full_bucket_lets_the_burst_through_then_spaces_requests_by_the_rate() -> None:
    t = FakeTime()
    bucket = limiter(2.0, 3, t)
    assert [bucket.reserve() for _ in range(6)] == [0.0, 0.0, 0.0, 0.5, 1.0, 1.5]


def test_the_bucket_refills_at_the_rate_and_never_above_the_burst() -> None:
    t = FakeTime()
    bucket = limiter(4.0, 2, t)
    assert [bucket.reserve() for _ in range(3)] == [0.0, 0.0, 0.25]
    t.now += 0.5  # the third slot (due at +0.25) is used; one more token has come back
    assert bucket.reserve() == 0.0
    assert bucket.reserve() == 0.25
    t.now += 3600  # a long idle time refills the bucket only up to `burst`
    assert [bucket.reserve() for _ in range(3)] == [0.0, 0.0, 0.25]


async def test_callers_arriving_together_are_served_in_order_one_interval_apart() -> None:
    t = FakeTime()
    bucket = limiter(10.0, 1, t)
    waits = await asyncio.gather(*(bucket.acquire() for _ in range(4)))
    assert waits == pytest.approx([0.0, 0.1, 0.2, 0.3])


async def test_a_cancelled_wait_gives_its_slot_back() -> None:
    bucket = RateLimiter(1.0, 1)  # real clock: the second caller waits a whole second
    assert await bucket.acquire() == 0.0
    waiting = asyncio.create_task(bucket.acquire())
    await asyncio.sleep(0)  # let it reserve its slot and start sleeping
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert bucket.reserve() == pytest.approx(1.0, abs=0.05)  # the same slot, not the one after


@pytest.mark.parametrize(("rate", "burst"), [(0, 1), (-1, 1), (float("inf"), 1), (1, 0)])
def test_nonsense_limits_are_refused(rate: float, burst: int) -> None:
    with pytest.raises(ValueError, match=r"rate|burst"):
        RateLimiter(rate, burst)


def test_a_limiter_costs_a_few_dozen_bytes_per_store() -> None:
    # 10,000 stores: no task, timer or lock each, only these slots.
    assert not hasattr(RateLimiter(2.0, 5), "__dict__")


# --- the sources -------------------------------------------------------------------------------


def source(session: aiohttp.ClientSession, base_url: str, platform: str, **store: Any) -> Source:
    fields: dict[str, Any] = {
        "name": "s1",
        "platform": platform,
        "access_token": "tok-1",
        "base_url": base_url,
        **store,
    }
    fields.setdefault("domain" if platform == "shoplazza" else "handle", "shop1")
    return build_source(session, fields)


@pytest.mark.parametrize(
    ("platform", "store", "defaults", "expected"),
    [
        ("shoplazza", {}, {}, (2.0, 5)),
        ("shopline", {}, {}, (4.0, 5)),
        ("shopline", {}, {"rate_limit": 1.5, "burst": 2}, (1.5, 2)),
        ("shoplazza", {"rate_limit": 0.5, "burst": 1}, {"rate_limit": 3}, (0.5, 1)),
    ],
)
def test_each_store_gets_its_own_limit_from_store_defaults_or_platform(
    platform: str, store: dict[str, Any], defaults: dict[str, Any], expected: tuple[float, int]
) -> None:
    fields = {"name": "s1", "platform": platform, "access_token": "t", **store}
    fields["domain" if platform == "shoplazza" else "handle"] = "shop1"
    settings = Settings.model_validate({"defaults": defaults, "stores": [fields]})
    [resolved] = resolve_stores(settings)
    assert (resolved.rate_limit, resolved.burst) == expected


async def test_every_page_of_a_shoplazza_poll_takes_a_slot(
    platform_stub: PlatformStub, session: aiohttp.ClientSession
) -> None:
    def respond(seen: Seen) -> Reply:  # four tasks, one a page: paging runs to max_pages
        page = int(seen.query["page"])
        tasks = [{"query_id": f"q{page}", "query_status": 1}] if page <= 4 else []
        return json_reply({"tasks": tasks})

    platform_stub.respond = respond
    lazza = source(
        session,
        platform_stub.url,
        "shoplazza",
        rate_limit=20,
        burst=1,
        page_limit=1,
        max_pages=4,
    )
    started = time.monotonic()
    await poll(lazza, lazza.endpoints[0], NOW)
    # Four pages, and one one-entry page asking whether a fifth task exists.
    assert len(platform_stub.seen) == 5
    assert time.monotonic() - started >= 4 * 0.05 * 0.9  # four waits of 1/20 s after the first


async def test_the_endpoints_of_one_store_share_its_bucket_and_other_stores_do_not(
    platform_stub: PlatformStub, session: aiohttp.ClientSession
) -> None:
    platform_stub.script(json_reply({}))
    slow = {"rate_limit": 2, "burst": 1}
    one = source(session, platform_stub.url, "shopline", **slow)
    other = source(session, platform_stub.url, "shopline", **slow)
    query, mutation = one.endpoints

    started = time.monotonic()
    await asyncio.gather(poll(one, query, NOW), poll(other, other.endpoints[0], NOW))
    assert time.monotonic() - started < 0.4  # different stores: both at once
    await poll(one, mutation, NOW)  # same store, right after its QUERY: waits for a slot
    assert time.monotonic() - started >= 0.45
