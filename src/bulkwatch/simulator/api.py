"""The fake platform APIs: one catch-all route, a dict lookup by store name, then the endpoint.

Per request: latency (if set), count, injected fault (if any), auth, parameters, body.
"""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timedelta, timezone
from itertools import islice
from typing import Any, Final

from aiohttp import web

from bulkwatch.model import Platform
from bulkwatch.simulator.control import SIMULATOR_KEY, control_app
from bulkwatch.simulator.core import Simulator
from bulkwatch.simulator.faults import FaultKind, error_body, fault_response, reason_phrase
from bulkwatch.simulator.model import SimStore, SimTask

__all__ = ["SIMULATOR_KEY", "make_app", "shoplazza_item", "shopline_body"]

_CST: Final = timezone(timedelta(hours=8))  # the seed page's offset: 2023-04-06T10:48:29+08:00
_MAX_LIMIT: Final = 250
_DEFAULT_LIMIT: Final = 20
_SHOPLINE_TYPES: Final = ("QUERY", "MUTATION")
_EMPTY_BODIES: Final = {
    "object": b"{}",
    "null": b"null",
    "empty": b"",
    "data_null": b'{"data":null}',
}


def _json(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def _iso(ts: float | None) -> str | None:
    return None if ts is None else datetime.fromtimestamp(ts, _CST).isoformat(timespec="seconds")


def shoplazza_item(task: SimTask) -> dict[str, Any]:
    """One entry of the Shoplazza task list."""
    return {"query_id": task.id, "query_status": task.status, "query": {"url": task.url or ""}}


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


def _shoplazza(st: SimStore, request: web.Request) -> tuple[int, bytes]:
    try:
        page = int(request.query.get("page", "1"))
        limit = int(request.query.get("limit", str(_DEFAULT_LIMIT)))
    except ValueError:
        return 400, _json({"error": "page and limit must be integers"})
    if page < 1 or not 1 <= limit <= _MAX_LIMIT:
        return 400, _json({"error": f"page must be >= 1 and limit between 1 and {_MAX_LIMIT}"})
    start = (page - 1) * limit
    items = [shoplazza_item(t) for t in islice(reversed(st.tasks.values()), start, start + limit)]
    if st.body_style == "querys":
        body: dict[str, Any] = {"querys": items}
    elif st.body_style == "wrapped":
        body = {"code": "Success", "data": {"tasks": items}}
    else:
        body = {"tasks": items}
    return 200, _json(body)


def _shopline(st: SimStore, endpoint: str) -> tuple[int, bytes]:
    if endpoint == "invalid":
        return 400, _json({"errors": "type must be QUERY or MUTATION"})
    task = st.current.get(endpoint)
    if task is not None:
        body = shopline_body(st, task)
        return 200, _json({"data": body} if st.body_style == "wrapped" else body)
    if st.empty_style == "404":
        return 404, error_body(Platform.SHOPLINE, 404)
    return 200, _EMPTY_BODIES[st.empty_style]


def _authorised(st: SimStore, request: web.Request) -> bool:
    if st.platform is Platform.SHOPLAZZA:
        return request.headers.get("Access-Token") == st.token
    return request.headers.get("Authorization") == st.bearer


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
    endpoint = _endpoint(st, request.match_info["tail"], request.query)
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
            _status, normal = _answer(st, endpoint, request)
            return fault_response(fault, st.platform, normal, headers)
    if not _authorised(st, request):
        st.stats.unauthorized += 1
        return _response(401, error_body(st.platform, 401), headers)
    if st.require_content_type and not request.headers.get("Content-Type", "").startswith(
        "application/json"
    ):
        return _response(400, error_body(st.platform, 400), headers)
    status, body = _answer(st, endpoint, request)
    return _response(status, body, headers)


def _answer(st: SimStore, endpoint: str, request: web.Request) -> tuple[int, bytes]:
    if st.platform is Platform.SHOPLAZZA:
        return _shoplazza(st, request)
    return _shopline(st, endpoint)


def make_app(sim: Simulator) -> web.Application:
    """The aiohttp application serving every store's API and the `/_sim` control routes."""
    app = web.Application()
    app[SIMULATOR_KEY] = sim
    # A sub-app is one prefix check, so control routes add nothing to API request routing.
    app.add_subapp("/_sim", control_app(sim))
    app.router.add_route("*", "/{store}/{tail:.+}", _handle)
    return app
