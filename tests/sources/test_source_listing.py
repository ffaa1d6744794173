"""Reading a Shoplazza list of unknown order and end (`sources.listing`), against a scripted
platform on 127.0.0.1 that honours `page` and `limit`."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest

from bulkwatch.model import EndpointKey, Platform, PollError
from bulkwatch.sources.listing import MAX_LENGTH, NEWEST_FIRST, OLDEST_FIRST
from bulkwatch.sources.shoplazza import ShoplazzaSource
from helpers.platform_stub import PlatformStub, Reply, Seen, json_reply
from helpers.source_support import build_source, poll

KEY = EndpointKey("lazza-main", Platform.SHOPLAZZA, "tasks")
NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)


def source(session: aiohttp.ClientSession, url: str, **fields: Any) -> ShoplazzaSource:
    store = {
        "name": "lazza-main",
        "platform": "shoplazza",
        "domain": "mystore",
        "access_token": "tok",
        "base_url": url,
        "rate_limit": 1000,
        **fields,
    }
    built = build_source(session, store)
    assert isinstance(built, ShoplazzaSource)
    return built


def serve(stub: PlatformStub, entries: list[dict[str, Any]], past_end: int = 200) -> None:
    def respond(seen: Seen) -> Reply:
        page, limit = int(seen.query["page"]), int(seen.query["limit"])
        start = (page - 1) * limit
        if page > 1 and start >= len(entries) and past_end != 200:
            return Reply(status=past_end, body=json.dumps({"error": "page not found"}).encode())
        return json_reply({"tasks": entries[start : start + limit]})

    stub.respond = respond


def entry(n: int, **extra: Any) -> dict[str, Any]:
    return {"query_id": f"t{n}", "query_status": 2, **extra}


async def test_created_times_tell_the_order_at_the_first_poll(
    platform_stub: PlatformStub, session: aiohttp.ClientSession
) -> None:
    times = [(NOW + timedelta(minutes=n)).isoformat() for n in range(12)]
    entries = [entry(n, created_at=times[n]) for n in range(12)]  # oldest first
    serve(platform_stub, entries)
    lazza = source(session, platform_stub.url, page_limit=2, max_pages=2)

    first = await poll(lazza, KEY, NOW)
    assert first.listing is not None
    assert first.listing.order == OLDEST_FIRST
    platform_stub.seen.clear()
    second = await poll(lazza, KEY, NOW)

    # Page 1, the length (two one-entry pages from the known length), the last two pages.
    asked = [(s.query["page"], s.query["limit"]) for s in platform_stub.seen]
    assert asked == [("1", "2"), ("12", "1"), ("13", "1"), ("6", "2"), ("5", "2")]
    assert [t.task_id for t in second.tasks] == ["t0", "t1", "t8", "t9", "t10", "t11"]
    assert second.listing is not None
    assert (second.listing.order, second.listing.length, second.listing.read) == (
        OLDEST_FIRST,
        12,
        6,
    )
    assert first.listing.read == 8  # the first poll read both ends: the order was not known yet


async def test_new_ids_at_the_front_mean_newest_first(
    platform_stub: PlatformStub, session: aiohttp.ClientSession
) -> None:
    entries = [entry(n) for n in range(10, 0, -1)]  # newest first, no times
    serve(platform_stub, entries)
    lazza = source(session, platform_stub.url, page_limit=2, max_pages=2)
    first = await poll(lazza, KEY, NOW)
    assert first.listing is not None
    assert first.listing.order == "unknown"
    entries.insert(0, entry(11))

    second = await poll(lazza, KEY, NOW)

    assert second.listing is not None
    assert second.listing.order == NEWEST_FIRST
    assert "t11" in {t.task_id for t in second.tasks}
    platform_stub.seen.clear()
    third = await poll(lazza, KEY, NOW)
    # Newest first: the head, and one one-entry page saying more tasks exist.
    asked = [(s.query["page"], s.query["limit"]) for s in platform_stub.seen]
    assert asked == [("1", "2"), ("2", "2"), ("5", "1")]
    assert third.listing is not None
    assert (third.listing.read, third.listing.length, third.listing.complete) == (4, None, False)


async def test_a_list_of_exactly_max_pages_with_a_404_past_the_end_is_complete(
    platform_stub: PlatformStub, session: aiohttp.ClientSession
) -> None:
    serve(platform_stub, [entry(n) for n in range(4)], past_end=404)
    lazza = source(session, platform_stub.url, page_limit=2, max_pages=2)

    result = await poll(lazza, KEY, NOW)

    assert result.listing is not None
    assert (result.listing.read, result.listing.length, result.listing.past_end) == (4, 4, "404")
    assert result.listing.complete


async def test_a_server_that_ignores_page_costs_a_bounded_number_of_requests(
    platform_stub: PlatformStub, session: aiohttp.ClientSession
) -> None:
    # It honours `limit` but not `page`: every page starts at the first task.
    def respond(seen: Seen) -> Reply:
        return json_reply({"tasks": [entry(1), entry(2)][: int(seen.query["limit"])]})

    platform_stub.respond = respond
    lazza = source(session, platform_stub.url, page_limit=2, max_pages=2)

    result = await poll(lazza, KEY, NOW)

    assert len(platform_stub.seen) <= 2 + MAX_LENGTH.bit_length() + 1
    assert result.listing is not None
    assert not result.listing.complete
    assert [t.task_id for t in result.tasks] == ["t1", "t2"]


async def test_a_server_that_ignores_the_page_size_fails_the_poll_at_a_bounded_cost(
    platform_stub: PlatformStub, session: aiohttp.ClientSession
) -> None:
    platform_stub.script(json_reply({"tasks": [entry(n) for n in range(1, 4)]}))
    lazza = source(session, platform_stub.url, page_limit=2, max_pages=2)

    with pytest.raises(PollError, match="lists 3 tasks, more than the 2 asked for"):
        await poll(lazza, KEY, NOW)
    assert len(platform_stub.seen) == 1
