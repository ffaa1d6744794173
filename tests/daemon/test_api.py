"""The JSON API over a real socket, on an engine polling the simulator: every list page by
page, every filter, problem details for each bad parameter, and re-queueing behind the token."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from bulkwatch.model import TaskStatus
from helpers.webui_support import TOKEN, Site, site

PROBLEM = "application/problem+json"


async def walk(s: Site, path: str, key: str) -> list[list[Any]]:
    """Every page of a list, following `next_cursor`."""
    pages: list[list[Any]] = []
    cursor = ""
    while True:
        status, _, body = await s.get(path + cursor)
        assert status == 200, body
        pages.append(body[key])
        if body["next_cursor"] is None:
            return pages
        cursor = f"&cursor={body['next_cursor']}"


async def busy(s: Site) -> None:
    """Six tasks created a minute apart over three stores, polled after each."""
    for i, (store, status) in enumerate(
        [
            ("lazza-1", TaskStatus.RUNNING),
            ("lazza-2", TaskStatus.COMPLETED),
            ("line-1", TaskStatus.RUNNING),
            ("line-1", TaskStatus.FAILED),
            ("lazza-2", TaskStatus.RUNNING),
            ("lazza-1", TaskStatus.COMPLETED),
        ]
    ):
        if store == "line-1":
            kind = "QUERY" if status is TaskStatus.RUNNING else "MUTATION"
            s.sim.create_task(store, f"t{i}", status, operation_type=kind)
        else:
            s.sim.create_task(store, f"t{i}", status)
        await s.poll()


async def test_stores_page_by_page_with_health_and_schedule(tmp_path: Path) -> None:
    async with site(tmp_path) as s:
        await s.poll()
        s.sim.inject(503, store="lazza-2", times=None)
        await s.poll()
        pages = await walk(s, "/api/v1/stores?limit=1", "stores")
        _, _, lazza = await s.get("/api/v1/stores?platform=shoplazza")
        _, _, one = await s.get("/api/v1/stores/lazza-2")

    assert [[st["name"] for st in page] for page in pages] == [["lazza-1"], ["lazza-2"], ["line-1"]]
    by_name = {p[0]["name"]: p[0] for p in pages}
    assert by_name["lazza-1"]["state"] == "up"
    assert by_name["lazza-2"]["state"] == "down"
    assert by_name["lazza-2"]["up"] is False
    assert (
        "503" in by_name["lazza-2"]["last_error"]
        or "Service Unavailable" in (by_name["lazza-2"]["last_error"])
    )
    assert by_name["lazza-2"]["backoff_until"] is not None
    assert [e["endpoint"] for e in by_name["line-1"]["endpoints"]] == ["QUERY", "MUTATION"]
    assert by_name["lazza-1"]["last_poll_at"] == "2026-11-23T10:00:30Z"
    assert [st["name"] for st in lazza["stores"]] == ["lazza-1", "lazza-2"]
    assert lazza["total"] == 2
    assert one == by_name["lazza-2"]


async def test_a_store_never_polled_is_pending(tmp_path: Path) -> None:
    async with site(tmp_path) as s:
        _, _, body = await s.get("/api/v1/stores/line-1")
    assert body["state"] == "pending"
    assert body["last_poll_at"] is None


async def test_tasks_newest_first_across_pages_and_filters(tmp_path: Path) -> None:
    async with site(tmp_path) as s:
        await busy(s)
        pages = await walk(s, "/api/v1/tasks?limit=2", "tasks")
        by_store = await walk(s, "/api/v1/tasks?limit=1&store=lazza-1", "tasks")
        _, _, running = await s.get("/api/v1/tasks?status=RUNNING")
        _, _, line = await s.get("/api/v1/tasks?platform=shopline")
        since = (s.clock.now - timedelta(seconds=70)).isoformat()
        _, _, recent = await s.get("/api/v1/tasks", params={"since": since})

    assert [[t["task_id"] for t in page] for page in pages] == [
        ["t5", "t4"],
        ["t3", "t2"],
        ["t1", "t0"],
    ]
    assert [t["task_id"] for page in by_store for t in page] == ["t5", "t0"]
    assert [t["task_id"] for t in running["tasks"]] == ["t4", "t2", "t0"]
    assert [t["task_id"] for t in line["tasks"]] == ["t3", "t2"]
    assert [t["task_id"] for t in recent["tasks"]] == ["t5", "t4"]
    done = next(t for page in pages for t in page if t["task_id"] == "t5")
    assert done["result_url"].startswith("https://")
    in_progress = next(t for page in pages for t in page if t["task_id"] == "t4")
    assert in_progress["result_url"] is None


async def test_the_result_link_is_gone_once_the_file_expired(tmp_path: Path) -> None:
    async with site(tmp_path) as s:
        s.sim.create_task("line-1", "t0", TaskStatus.COMPLETED, operation_type="QUERY")
        await s.poll()
        _, _, fresh = await s.get("/api/v1/tasks")
        expires = fresh["tasks"][0]["expires_at"]
        assert expires is not None
        s.clock.advance(30 * 86400)
        _, _, late = await s.get("/api/v1/tasks")
    assert fresh["tasks"][0]["result_url"]
    assert fresh["tasks"][0]["completed_count"] > 0
    assert late["tasks"][0]["result_url"] is None


@pytest.mark.parametrize(
    ("query", "names"),
    [
        ("limit=0", ["limit"]),
        ("limit=501", ["limit"]),
        ("limit=ten", ["limit"]),
        ("status=DONE", ["status"]),
        ("platform=shopify", ["platform"]),
        ("since=yesterday", ["since"]),
        ("since=2026-11-23T10:00:00", ["since"]),  # no offset: ambiguous
        ("since=0.5", ["since"]),  # not read as seconds since 1970
        ("cursor=abc", ["cursor"]),
        ("cursor=%25%25", ["cursor"]),
        ("colour=red", ["colour"]),
        ("limit=1&limit=2", ["limit"]),
        ("limit=0&status=x", ["limit", "status"]),
    ],
)
async def test_bad_task_parameters_are_400_problems_naming_them(
    tmp_path: Path, query: str, names: list[str]
) -> None:
    async with site(tmp_path) as s:
        status, content_type, body = await s.get(f"/api/v1/tasks?{query}")
    assert status == 400
    assert content_type == PROBLEM
    assert body["status"] == 400
    assert body["title"] == "Bad Request"
    assert body["instance"] == "/api/v1/tasks"
    assert sorted(p["name"] for p in body["invalid-params"]) == sorted(names)
    for name in names:
        assert name in body["detail"]


async def test_a_cursor_of_another_list_is_refused(tmp_path: Path) -> None:
    async with site(tmp_path) as s:
        await busy(s)
        _, _, stores = await s.get("/api/v1/stores?limit=1")
        status, _, body = await s.get(f"/api/v1/tasks?cursor={stores['next_cursor']}")
    assert status == 400
    assert body["invalid-params"] == [{"name": "cursor", "reason": "not a cursor of this list"}]


async def test_unknown_paths_and_methods_are_problems_and_counted(tmp_path: Path) -> None:
    async with site(tmp_path) as s:
        missing = await s.get("/api/v1/nothing")
        store = await s.get("/api/v1/stores/nope")
        async with s.http.delete(s.url + "/api/v1/stores") as resp:
            wrong = (resp.status, resp.headers["Allow"], await resp.json(content_type=None))
        await s.get("/api/v1/tasks?limit=0")
        _, _, metrics = await s.get("/metrics")
    assert missing[0] == 404
    assert missing[1] == PROBLEM
    assert missing[2]["detail"] == "nothing at /api/v1/nothing"
    assert store[0] == 404
    assert store[2]["detail"] == "no store named 'nope' is configured"
    assert wrong[0] == 405
    assert wrong[1] == "GET"
    assert wrong[2]["status"] == 405
    samples = {
        s.labels["status"]: s.value
        for f in text_string_to_metric_families(metrics)
        if f.name == "bulkwatch_api_rejected_requests"
        for s in f.samples
        if s.name.endswith("_total")
    }
    assert samples == {"400": 1, "401": 0, "403": 0, "404": 2, "405": 1}


async def test_events_show_each_notifiers_delivery_page_by_page(tmp_path: Path) -> None:
    async with site(tmp_path, dead_hook=True) as s:
        await busy(s)
        pages = await walk(s, "/api/v1/events?limit=4", "events")
    events = [e for page in pages for e in page]
    assert [len(page) for page in pages] == [4, 2]
    assert [e["subject"] for e in events] == [
        "lazza-1/t5",
        "lazza-2/t4",
        "line-1/t3",
        "line-1/t2",
        "lazza-2/t1",
        "lazza-1/t0",
    ]
    for event in events:
        assert event["type"].startswith("bulkwatch.task.")
        assert event["data"]["task_id"] == event["subject"].split("/")[1]
        states = {d["notifier"]: d["status"] for d in event["deliveries"]}
        assert states == {"console": "delivered", "hook": "dead"}


async def test_dead_deliveries_page_and_requeue_behind_the_token(tmp_path: Path) -> None:
    async with site(tmp_path, dead_hook=True) as s:
        await busy(s)
        pages = await walk(s, "/api/v1/deliveries/dead?limit=4", "deliveries")
        _, _, console = await s.get("/api/v1/deliveries/dead?notifier=console")
        url = "/api/v1/deliveries/dead/requeue"
        anonymous = await s.post(url, {})
        wrong = await s.post(url, {}, headers={"Authorization": "Bearer not-the-token"})
        auth = {"Authorization": f"Bearer {TOKEN}"}
        bad_body = await s.post(url, {"ids": ["x"]}, headers=auth)
        not_json = await s.post(url, None, headers=auth)
        first_id = pages[0][0]["id"]
        one = await s.post(url, {"ids": [first_id]}, headers=auth)
        rest = await s.post(url, {"notifier": "hook"}, headers=auth)
        _, _, after = await s.get("/api/v1/deliveries/dead")

    dead = [d for page in pages for d in page]
    assert [len(page) for page in pages] == [4, 2]
    assert {d["notifier"] for d in dead} == {"hook"}
    assert [d["id"] for d in dead] == sorted(d["id"] for d in dead)
    assert console == {"deliveries": [], "total": 0, "next_cursor": None}
    assert anonymous[0] == 401
    assert anonymous[1]["WWW-Authenticate"] == 'Bearer realm="bulkwatch"'
    assert wrong[0] == 401
    assert TOKEN not in str(wrong[2])
    assert bad_body[0] == 400
    assert bad_body[2]["invalid-params"][0]["name"] == "body.ids.0"
    assert not_json[0] == 400
    assert not_json[2]["invalid-params"][0]["name"] == "body"
    assert one[:1] == (200,)
    assert one[2] == {"requeued": 1}
    assert rest[2] == {"requeued": 5}
    assert after["total"] == 0


async def test_requeue_is_forbidden_without_a_configured_token(tmp_path: Path) -> None:
    async with site(tmp_path, token=None, dead_hook=True) as s:
        await busy(s)
        status, _, body = await s.post(
            "/api/v1/deliveries/dead/requeue", {}, headers={"Authorization": f"Bearer {TOKEN}"}
        )
        _, _, dead = await s.get("/api/v1/deliveries/dead")
    assert status == 403
    assert "server.api_token" in body["detail"]
    assert dead["total"] == 6


async def test_summary_says_whether_everything_is_fine(tmp_path: Path) -> None:
    async with site(tmp_path) as s:
        await s.poll()
        _, _, fine = await s.get("/api/v1/summary")
        s.sim.inject(503, store="line-1", endpoint="QUERY", times=None)
        await s.poll()
        _, _, broken = await s.get("/api/v1/summary")
    assert fine["ok"] is True
    assert fine["troubled"] == []
    assert broken["ok"] is False
    assert broken["troubled"] == ["line-1"]
    assert broken["down"] + broken["failing"] == 1


async def test_openapi_document_describes_every_route(tmp_path: Path) -> None:
    async with site(tmp_path) as s:
        status, _, doc = await s.get("/api/v1/openapi.json")
    assert status == 200
    assert doc["openapi"] == "3.1.0"
    assert set(doc["paths"]) == {
        "/api/v1/summary",
        "/api/v1/stores",
        "/api/v1/stores/{name}",
        "/api/v1/tasks",
        "/api/v1/events",
        "/api/v1/deliveries/dead",
        "/api/v1/deliveries/dead/requeue",
    }
    tasks = doc["paths"]["/api/v1/tasks"]["get"]
    params = {p["name"]: p for p in tasks["parameters"]}
    assert set(params) == {"store", "status", "platform", "since", "limit", "cursor"}
    assert params["limit"]["schema"] == {
        "default": 50,
        "maximum": 500,
        "minimum": 1,
        "title": "Limit",
        "type": "integer",
    }
    assert params["since"]["schema"]["format"] == "date-time"
    requeue = doc["paths"]["/api/v1/deliveries/dead/requeue"]["post"]
    assert requeue["security"] == [{"bearer": []}]
    assert set(requeue["responses"]) == {"200", "400", "401", "403"}
    assert "Problem" in doc["components"]["schemas"]
