"""The fake platform APIs: one catch-all route, a dict lookup by store name, then the endpoint.

Per request: latency (if set), count, injected fault (if any), auth, parameters, body.
"""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timedelta, timezone
from typing import Any, Final

from aiohttp import web

from bulkwatch.model import Platform
from bulkwatch.simulator.control import SIMULATOR_KEY, control_app
from bulkwatch.simulator.core import Simulator
from bulkwatch.simulator.faults import FaultKind, error_body, fault_response, reason_phrase
from bulkwatch.simulator.model import SimStore, SimTask
from bulkwatch.simulator.oauth import REFRESH_PATH, authorised, refresh
from bulkwatch.simulator.variants import (
    MOVED_PREFIX,
    arrived_elsewhere,
    auth_failure,
    list_page,
    no_task_answer,
    redirect,
)

__all__ = ["SIMULATOR_KEY", "make_app", "shoplazza_item", "shopline_body"]

_CST: Final = timezone(timedelta(hours=8))  # the seed page's offset: 2023-04-06T10:48:29+08:00
_MAX_LIMIT: Final = 250
_DEFAULT_LIMIT: Final = 20
_SHOPLINE_TYPES: Final = ("QUERY", "MUTATION")


def _json(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def _iso(ts: float | None) -> str | None:
    return None if ts is None else datetime.fromtimestamp(ts, _CST).isoformat(timespec="seconds")


def shoplazza_item(task: SimTask, *, created: bool = False) -> dict[str, Any]:
    """One entry of the Shoplazza task list (with `created_at` under that variant)."""
    item: dict[str, Any] = {
        "query_id": task.id,
        "query_status": task.status,
        "query": {"url": task.url or ""},
    }
    if created:
        item["created_at"] = _iso(task.created_at)
    return item


def shopline_body(st: SimStore, task: SimTask) -> dict[str, Any]:
    """The Shopline current bulk operation, as the seed page lists its fields."""
    return {
        "id": task.id,
        "status": task.status,
        "type": task.type,
        "createdAt": _iso(task.created_at),
        "completedAt": _iso(task.completed_at),
        "expiredAt": _iso(task.expired_at),
        "completedCount": task.completed_count,
        "errorCode": task.error_code,
        "reason": task.reason,
        "url": task.url,
        "partialDataUrl": task.partial_data_url,
        "storeId": st.store_id,
    }


def _response(status: int, body: bytes, headers: dict[str, str]) -> web.Response:
    return web.Response(
        status=status,
        reason=reason_phrase(status),
        body=body,
        headers=headers,
        content_type="application/json",
    )


def _endpoint(st: SimStore, tail: str, query: Any) -> str | None:
    """`tasks`, `QUERY`, `MUTATION`, `invalid` (bad type) or None (no such path)."""
    parts = tail.split("/")
    if st.platform is Platform.SHOPLAZZA:
        ok = len(parts) == 4 and parts[0] == "openapi" and parts[2:] == ["data", "tasks"]
        return "tasks" if ok else None
    if len(parts) != 4 or parts[:2] != ["admin", "openapi"]:
        return None
    if parts[3] != "current_bulk_operation.json":
        return None
    kind = query.get("type", "QUERY")
    return kind if kind in _SHOPLINE_TYPES else "invalid"


def _shoplazza(sim: Simulator, st: SimStore, request: web.Request) -> tuple[int, bytes]:
    try:
        page = int(request.query.get("page", "1"))
        limit = int(request.query.get("limit", str(_DEFAULT_LIMIT)))
    except ValueError:
        return 400, _json({"error": "page and limit must be integers"})
    if page < 1 or not 1 <= limit <= _MAX_LIMIT:
        return 400, _json({"error": f"page must be >= 1 and limit between 1 and {_MAX_LIMIT}"})
    status, page_tasks = list_page(st, page, limit, sim.variants)
    if isinstance(page_tasks, bytes):
        return status, page_tasks  # past the end, under a variant that answers an error
    created = sim.variants.created_times == "present"
    items = [shoplazza_item(t, created=created) for t in page_tasks]
    if st.body_style == "querys":
        body: dict[str, Any] = {"querys": items}
    elif st.body_style == "wrapped":
        body = {"code": "Success", "data": {"tasks": items}}
    else:
        body = {"tasks": items}
    return 200, _json(body)


def _shopline(st: SimStore, endpoint: str) -> tuple[int, bytes] | None:
    """The answer, or None when there is no current task (the variant decides that one)."""
    if endpoint == "invalid":
        return 400, _json({"errors": "type must be QUERY or MUTATION"})
    task = st.current.get(endpoint)
    if task is None:
        return None
    body = shopline_body(st, task)
    return 200, _json({"data": body} if st.body_style == "wrapped" else body)


def _authorised(sim: Simulator, st: SimStore, request: web.Request) -> bool:
    if st.platform is Platform.SHOPLAZZA:
        return request.headers.get("Access-Token") == st.token
    header = request.headers.get("Authorization")
    if header == st.bearer and sim.variants.token_lifetime is None:
        return True  # the common case, without a look at the clock
    return authorised(st, header, sim.clock(), sim.variants.token_lifetime)


async def _handle(request: web.Request) -> web.StreamResponse:
    sim = request.app[SIMULATOR_KEY]
    if sim.latency > 0:
        await asyncio.sleep(sim.latency)
    st = sim.stores.get(request.match_info["store"])
    if st is None:
        sim.unknown_requests += 1
        return _response(404, _json({"error": "unknown store"}), {})
    id_header = "Request-Id" if st.platform is Platform.SHOPLAZZA else "traceId"
    headers = {id_header: sim.next_response_id()}
    tail = request.match_info["tail"]
    moved = redirect(request, tail, sim.variants)
    if moved is not None:
        return moved
    if sim.variants.redirect != "none":
        tail = tail.removeprefix(MOVED_PREFIX)
        if arrived_elsewhere(request) and _carries_token(request):
            sim.leaked_tokens += 1  # a client followed a redirect to another host, token and all
    if tail == REFRESH_PATH:
        return await refresh(st, request, sim.clock(), sim.variants.token_lifetime, headers)
    endpoint = _endpoint(st, tail, request.query)
    if endpoint is None:
        return _response(404, error_body(st.platform, 404), headers)
    if request.method != "GET":
        return _response(405, error_body(st.platform, 405), headers)
    sim.record_request(st, endpoint)
    fault = sim.faults.pick(st.name, endpoint)
    if fault is not None:
        st.stats.faults += 1
        if fault.kind is FaultKind.SLOW:
            await asyncio.sleep(fault.delay)
        else:
            _status, normal = _answer(sim, st, endpoint, request) or (200, b"{}")
            return fault_response(fault, st.platform, normal, headers)
    if not _authorised(sim, st, request):
        st.stats.unauthorized += 1
        return auth_failure(st.platform, sim.variants, headers)
    if st.require_content_type and not request.headers.get("Content-Type", "").startswith(
        "application/json"
    ):
        return _response(400, error_body(st.platform, 400), headers)
    answer = _answer(sim, st, endpoint, request)
    if answer is None:
        return no_task_answer(st, sim.variants, headers)
    return _response(*answer, headers)


def _answer(
    sim: Simulator, st: SimStore, endpoint: str, request: web.Request
) -> tuple[int, bytes] | None:
    if st.platform is Platform.SHOPLAZZA:
        return _shoplazza(sim, st, request)
    return _shopline(st, endpoint)


def _carries_token(request: web.Request) -> bool:
    return "Access-Token" in request.headers or "Authorization" in request.headers


def make_app(sim: Simulator) -> web.Application:
    """The aiohttp application serving every store's API and the `/_sim` control routes."""
    app = web.Application()
    app[SIMULATOR_KEY] = sim
    # A sub-app is one prefix check, so control routes add nothing to API request routing.
    app.add_subapp("/_sim", control_app(sim))
    app.router.add_route("*", "/{store}/{tail:.+}", _handle)
    return app
