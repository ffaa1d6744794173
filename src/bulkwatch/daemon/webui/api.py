"""The JSON API under /api/v1/: its operations, their handlers, and the OpenAPI document
generated from the same table."""

from __future__ import annotations

import hmac
import json
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from bulkwatch.daemon.webui import outbox_views, views
from bulkwatch.daemon.webui.context import BadParamError, WebContext
from bulkwatch.daemon.webui.models import (
    DeadList,
    DeadQuery,
    EventList,
    EventQuery,
    InvalidParam,
    RequeueRequest,
    RequeueResult,
    StoreList,
    StoreOut,
    StoreQuery,
    Summary,
    TaskList,
    TaskQueryParams,
)
from bulkwatch.daemon.webui.openapi import Operation, openapi_document
from bulkwatch.daemon.webui.problems import ProblemError, invalid

__all__ = ["OPERATIONS", "add_api_routes", "parse_query"]

M = TypeVar("M", bound=BaseModel)
PREFIX = "/api/v1"
OPERATIONS = (
    Operation("GET", f"{PREFIX}/summary", "summary", "Is everything fine?", Summary, errors=()),
    Operation("GET", f"{PREFIX}/stores", "listStores", "Configured stores", StoreList, StoreQuery),
    Operation("GET", f"{PREFIX}/stores/{{name}}", "getStore", "One store", StoreOut, errors=(404,)),
    Operation(
        "GET", f"{PREFIX}/tasks", "listTasks", "Tasks, newest first", TaskList, TaskQueryParams
    ),
    Operation(
        "GET",
        f"{PREFIX}/events",
        "listEvents",
        "Recent events and deliveries",
        EventList,
        EventQuery,
    ),
    Operation(
        "GET", f"{PREFIX}/deliveries/dead", "listDead", "Dead deliveries", DeadList, DeadQuery
    ),
    Operation(
        "POST",
        f"{PREFIX}/deliveries/dead/requeue",
        "requeueDead",
        "Send dead deliveries again",
        RequeueResult,
        body=RequeueRequest,
        errors=(400, 401, 403),
        auth=True,
    ),
)


def parse_query(request: web.Request, model: type[M]) -> M:
    """The query string as `model`; a 400 naming each bad or repeated parameter."""
    repeated = sorted({k for k in request.query if len(request.query.getall(k)) > 1})
    if repeated:
        params = [InvalidParam(name=k, reason="given more than once") for k in repeated]
        raise ProblemError(400, f"invalid {', '.join(repeated)}", params=params)
    try:
        return model.model_validate(dict(request.query))
    except ValidationError as exc:
        raise invalid(exc) from None


def _json(model: BaseModel) -> web.Response:
    return web.Response(text=model.model_dump_json(by_alias=True), content_type="application/json")


def _authorise(ctx: WebContext, request: web.Request) -> None:
    if ctx.api_token is None:
        raise ProblemError(
            403, "writes are turned off: set server.api_token (or api_token_file) to allow them"
        )
    header = request.headers.get("Authorization", "")
    scheme, _, given = header.partition(" ")
    expected = ctx.api_token.get_secret_value().encode()
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), expected):
        raise ProblemError(
            401,
            "send the configured server.api_token as `Authorization: Bearer <token>`",
            headers={"WWW-Authenticate": 'Bearer realm="bulkwatch"'},
        )


async def _body(request: web.Request, model: type[M]) -> M:
    raw = await request.read()
    try:
        data: Any = json.loads(raw)
    except ValueError:
        reason = "a JSON object is required ({} re-queues every dead delivery)"
        raise ProblemError(
            400, f"body: {reason}", params=[InvalidParam(name="body", reason=reason)]
        ) from None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise invalid(exc, "body.") from None


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _handlers(ctx: WebContext) -> dict[str, Handler]:
    async def summary(_: web.Request) -> web.Response:
        return _json(await views.summary(ctx))

    async def list_stores(request: web.Request) -> web.Response:
        return _json(await views.stores(ctx, parse_query(request, StoreQuery)))

    async def get_store(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        found = await views.store(ctx, name)
        if found is None:
            raise ProblemError(404, f"no store named {name!r} is configured")
        return _json(found)

    async def list_tasks(request: web.Request) -> web.Response:
        return _json(await views.tasks(ctx, parse_query(request, TaskQueryParams)))

    async def list_events(request: web.Request) -> web.Response:
        return _json(await outbox_views.events(ctx, parse_query(request, EventQuery)))

    async def list_dead(request: web.Request) -> web.Response:
        return _json(await outbox_views.dead(ctx, parse_query(request, DeadQuery)))

    async def requeue_dead(request: web.Request) -> web.Response:
        _authorise(ctx, request)
        body = await _body(request, RequeueRequest)
        count = await ctx.state.outbox.requeue_dead(
            ctx.clock(), ids=body.ids, notifier=body.notifier
        )
        if count:
            ctx.wake_dispatcher()
        return _json(RequeueResult(requeued=count))

    return {
        "summary": summary,
        "listStores": list_stores,
        "getStore": get_store,
        "listTasks": list_tasks,
        "listEvents": list_events,
        "listDead": list_dead,
        "requeueDead": requeue_dead,
    }


def add_api_routes(app: web.Application, ctx: WebContext) -> None:
    """Every operation of `OPERATIONS`, and `/api/v1/openapi.json`."""
    handlers = _handlers(ctx)

    def checked(handler: Handler) -> Handler:
        async def run(request: web.Request) -> web.StreamResponse:
            try:
                return await handler(request)
            except BadParamError as exc:
                param = InvalidParam(name=exc.name, reason=exc.reason)
                raise ProblemError(400, str(exc), params=[param]) from None

        return run

    for op in OPERATIONS:
        app.router.add_route(op.method, op.path, checked(handlers[op.operation_id]))
    document = json.dumps(openapi_document(OPERATIONS))

    async def openapi(_: web.Request) -> web.Response:
        return web.Response(text=document, content_type="application/json")

    app.router.add_get(f"{PREFIX}/openapi.json", openapi)
