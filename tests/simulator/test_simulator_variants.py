"""The simulator disagrees with the client where the platforms' docs are silent: each variant,
answered over real HTTP, and both command lines taking the same variant options."""

from __future__ import annotations

import asyncio
import json
import sys

import aiohttp
import pytest

from bulkwatch.model import Platform, TaskStatus
from bulkwatch.simulator import SINGLE_VARIANTS, Simulator, StoreSpec, Variants, run_simulator

LAZZA = "/openapi/2022-01/data/tasks"
LINE = "/admin/openapi/v20260301/current_bulk_operation.json"
STORES = [
    StoreSpec("lazza-1", Platform.SHOPLAZZA),
    StoreSpec("line-1", Platform.SHOPLINE, operation_types=("QUERY",)),
]


async def get(
    session: aiohttp.ClientSession,
    url: str,
    token: str | None = None,
    *,
    follow: bool = False,
    bearer: bool = False,
) -> tuple[int, bytes, aiohttp.ClientResponse]:
    headers = {}
    if token is not None:
        headers = {"Authorization": f"Bearer {token}"} if bearer else {"Access-Token": token}
    async with session.get(url, headers=headers, allow_redirects=follow) as resp:
        return resp.status, await resp.read(), resp


async def lazza_page(
    session: aiohttp.ClientSession, sim: Simulator, page: int, limit: int = 2
) -> tuple[int, bytes]:
    url = f"{sim.base_url('lazza-1')}{LAZZA}?page={page}&limit={limit}"
    status, body, _ = await get(session, url, "sim-lazza-1")
    return status, body


@pytest.mark.parametrize(("order", "first"), [("newest", "c"), ("oldest", "a")])
async def test_list_order(session: aiohttp.ClientSession, order: str, first: str) -> None:
    async with run_simulator(stores=STORES, variants=Variants(list_order=order)) as sim:  # type: ignore[arg-type]
        for task_id in "abc":
            sim.create_task("lazza-1", task_id)
        _, body = await lazza_page(session, sim, 1, limit=3)
        ids = [t["query_id"] for t in json.loads(body)["tasks"]]
        assert ids[0] == first
        assert sorted(ids) == ["a", "b", "c"]


@pytest.mark.parametrize(
    ("past_end", "status", "body"),
    [
        ("empty", 200, {"tasks": []}),
        ("404", 404, {"error": "page not found"}),
        ("400", 400, {"error": "page out of range"}),
    ],
)
async def test_the_page_after_the_last(
    session: aiohttp.ClientSession, past_end: str, status: int, body: object
) -> None:
    async with run_simulator(stores=STORES, variants=Variants(past_end=past_end)) as sim:  # type: ignore[arg-type]
        # An empty list is page 1 of nothing: always an empty 200.
        assert await lazza_page(session, sim, 1) == (200, b'{"tasks":[]}')
        sim.create_task("lazza-1", "a")
        sim.create_task("lazza-1", "b")
        assert (await lazza_page(session, sim, 1))[0] == 200
        got_status, got_body = await lazza_page(session, sim, 2)
        assert (got_status, json.loads(got_body)) == (status, body)


@pytest.mark.parametrize(
    ("style", "status", "body"),
    [
        ("object", 200, b"{}"),
        ("null", 200, b"null"),
        ("empty", 200, b""),
        ("data_null", 200, b'{"data":null}'),
        ("id_null", 200, b'{"id":null,"status":null,"type":null}'),
        ("id_empty", 200, b'{"id":"","status":"","type":""}'),
        ("404", 404, b'{"errors": "Not Found"}'),
    ],
)
async def test_shopline_no_task_shapes(
    session: aiohttp.ClientSession, style: str, status: int, body: bytes
) -> None:
    async with run_simulator(stores=STORES, variants=Variants(no_task=style)) as sim:  # type: ignore[arg-type]
        url = f"{sim.base_url('line-1')}{LINE}?type=QUERY"
        got_status, got_body, resp = await get(session, url, "sim-line-1", bearer=True)
        assert (got_status, got_body) == (status, body)
        assert "traceId" in resp.headers
        sim.create_task("line-1", "t1", TaskStatus.RUNNING)
        got_status, got_body, _ = await get(session, url, "sim-line-1", bearer=True)
        assert got_status == 200
        assert json.loads(got_body)["id"] == "t1"


async def test_shopline_no_task_as_a_gateway_html_404(session: aiohttp.ClientSession) -> None:
    async with run_simulator(stores=STORES, variants=Variants(no_task="404_html")) as sim:
        url = f"{sim.base_url('line-1')}{LINE}?type=QUERY"
        status, body, resp = await get(session, url, "sim-line-1", bearer=True)
        assert status == 404
        assert body.startswith(b"<!DOCTYPE html>")
        assert resp.content_type == "text/html"
        assert "traceId" not in resp.headers


@pytest.mark.parametrize("code", [3, -1, 9])
async def test_a_failed_shoplazza_task_has_the_variants_code(
    session: aiohttp.ClientSession, code: int
) -> None:
    async with run_simulator(stores=STORES, variants=Variants(failed_code=code)) as sim:
        sim.create_task("lazza-1", "a", TaskStatus.RUNNING)
        sim.advance("lazza-1", "a", fail=True)
        sim.create_task("lazza-1", "b", "FAILED")
        _, body = await lazza_page(session, sim, 1)
        assert [t["query_status"] for t in json.loads(body)["tasks"]] == [code, code]


@pytest.mark.parametrize(
    ("auth", "status", "body"),
    [("401", 401, b'{"error": "Unauthorized"}'), ("400", 400, b"Bad Request")],
)
async def test_a_wrong_shoplazza_token(
    session: aiohttp.ClientSession, auth: str, status: int, body: bytes
) -> None:
    async with run_simulator(stores=STORES, variants=Variants(auth_failure=auth)) as sim:  # type: ignore[arg-type]
        url = f"{sim.base_url('lazza-1')}{LAZZA}"
        assert (await get(session, url, "wrong"))[:2] == (status, body)
        # Shopline documents its 401 and keeps it under every variant.
        url = f"{sim.base_url('line-1')}{LINE}"
        assert (await get(session, url, "wrong", bearer=True))[0] == 401


async def test_a_same_host_redirect_leads_to_the_normal_answer(
    session: aiohttp.ClientSession,
) -> None:
    async with run_simulator(stores=STORES, variants=Variants(redirect="same-host")) as sim:
        sim.create_task("lazza-1", "a")
        url = f"{sim.base_url('lazza-1')}{LAZZA}?page=1&limit=2"
        status, _, resp = await get(session, url, "sim-lazza-1")
        assert status == 301
        assert resp.headers["Location"] == (
            f"{sim.base_url('lazza-1')}/moved{LAZZA}?page=1&limit=2"
        )
        status, body, _ = await get(session, url, "sim-lazza-1", follow=True)
        assert (status, json.loads(body)["tasks"][0]["query_id"]) == (200, "a")
        assert sim.leaked_tokens == 0


async def test_a_cross_host_redirect_counts_tokens_that_followed_it(
    session: aiohttp.ClientSession,
) -> None:
    async with run_simulator(stores=STORES, variants=Variants(redirect="cross-host")) as sim:
        url = f"{sim.base_url('line-1')}{LINE}?type=QUERY"
        status, _, resp = await get(session, url, "sim-line-1", bearer=True)
        assert status == 301
        location = resp.headers["Location"]
        assert location.startswith("http://localhost:")
        assert location.endswith(f"/line-1/moved{LINE}?type=QUERY")
        # aiohttp drops `Authorization` on its way to another host, but not Shoplazza's
        # `Access-Token`: following it sends the token there, which a client must never do.
        status, _, _ = await get(session, url, "sim-line-1", bearer=True, follow=True)
        assert (status, sim.leaked_tokens) == (401, 0)
        url = f"{sim.base_url('lazza-1')}{LAZZA}"
        status, _, _ = await get(session, url, "sim-lazza-1", follow=True)
        assert (status, sim.leaked_tokens) == (200, 1)


def test_single_variants_name_every_choice_and_change_one_at_most() -> None:
    for name, variants in SINGLE_VARIANTS.items():
        assert variants.describe().count("--") <= 1, name
    assert {v.list_order for v in SINGLE_VARIANTS.values()} == {"newest", "oldest"}
    assert {v.past_end for v in SINGLE_VARIANTS.values()} == {"empty", "404", "400"}
    assert len({v.no_task for v in SINGLE_VARIANTS.values()}) == 9  # 8 shapes and the default
    assert {v.redirect for v in SINGLE_VARIANTS.values()} == {"none", "same-host", "cross-host"}
    assert {v.created_times for v in SINGLE_VARIANTS.values()} == {"absent", "present"}


COMMANDS = {
    "bulkwatch-simulate": (sys.executable, "-m", "bulkwatch", "simulate"),
    "python-m-simulator": (sys.executable, "-m", "bulkwatch.simulator"),
}
OPTIONS = [
    "--list-order",
    "oldest",
    "--past-end",
    "404",
    "--no-task",
    "id_empty",
    "--failed-code",
    "-1",
    "--auth-failure",
    "400",
    "--redirect",
    "same-host",
    "--created-times",
    "present",
    "--token-lifetime",
    "36000",
]


@pytest.mark.parametrize("command", COMMANDS.values(), ids=COMMANDS.keys())
async def test_both_command_lines_take_the_same_variant_options(
    command: tuple[str, ...], session: aiohttp.ClientSession
) -> None:
    proc = await asyncio.create_subprocess_exec(
        *command,
        "--port",
        "0",
        *OPTIONS,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    try:
        async with asyncio.timeout(20):
            first = (await proc.stdout.readline()).decode()
            await proc.stdout.readline()
            described = (await proc.stdout.readline()).decode()
        url = first.rsplit(" ", 1)[1].strip()
        async with session.get(f"{url}/_sim/variants") as resp:
            variants = await resp.json()
    finally:
        proc.terminate()
        async with asyncio.timeout(20):
            await proc.communicate()
    assert variants == {
        "list_order": "oldest",
        "past_end": "404",
        "no_task": "id_empty",
        "failed_code": -1,
        "auth_failure": "400",
        "redirect": "same-host",
        "created_times": "present",
        "token_lifetime": 36000.0,
    }
    assert described.strip() == "platform variants: " + " ".join(OPTIONS)


@pytest.mark.parametrize("command", COMMANDS.values(), ids=COMMANDS.keys())
async def test_both_command_lines_document_the_variants_in_help(command: tuple[str, ...]) -> None:
    proc = await asyncio.create_subprocess_exec(*command, "--help", stdout=asyncio.subprocess.PIPE)
    out, _ = await proc.communicate()
    for option in ("--list-order", "--past-end", "--no-task", "--failed-code", "--auth-failure"):
        assert option in out.decode()
    assert "same-host" in out.decode()


async def test_the_control_route_changes_variants_while_running(
    session: aiohttp.ClientSession,
) -> None:
    async with run_simulator(stores=STORES) as sim:
        async with session.patch(f"{sim.url}/_sim/variants", json={"past_end": "400"}) as resp:
            assert resp.status == 200
            assert (await resp.json())["past_end"] == "400"
        assert sim.variants == Variants(past_end="400")
        async with session.patch(f"{sim.url}/_sim/variants", json={"past_end": "500"}) as resp:
            assert resp.status == 400
        assert sim.variants == Variants(past_end="400")
