"""The `/_sim` control routes: drive the simulator over HTTP from another process.

Bodies are JSON; tasks and fields are snake_case with epoch-second times (see the package
docstring for the route list). Unknown store or task: 404; invalid input: 400 `{"error"}`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from typing import Final, TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from bulkwatch.simulator.control_bodies import (
    Advance,
    FaultBody,
    Latency,
    StoreCreate,
    StorePatch,
    TaskCreate,
    TaskUpdate,
    VariantsPatch,
)
from bulkwatch.simulator.core import Simulator
from bulkwatch.simulator.model import (
    BODY_STYLES,
    NotFoundError,
    StoreSpec,
)
from bulkwatch.simulator.variants import with_changes

__all__ = ["SIMULATOR_KEY", "control_app"]

SIMULATOR_KEY: Final = web.AppKey("simulator", Simulator)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_M = TypeVar("_M", bound=BaseModel)


@web.middleware
async def _errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except NotFoundError as exc:
        return web.json_response({"error": str(exc)}, status=404)
    except ValidationError as exc:
        problems = [
            f"{'.'.join(map(str, err['loc'])) or 'body'}: {err['msg']}"
            for err in exc.errors(include_url=False, include_input=False)
        ]
        return web.json_response({"error": "; ".join(problems)}, status=400)
    except ValueError as exc:  # also pydantic's ValidationError and bad JSON
        return web.json_response({"error": str(exc)}, status=400)


async def _read(request: web.Request, model: type[_M]) -> _M:
    raw = await request.read()
    return model.model_validate_json(raw or b"{}")


def _sim(request: web.Request) -> Simulator:
    return request.app[SIMULATOR_KEY]


async def _health(request: web.Request) -> web.Response:
    return web.json_response({"ok": True, "stores": len(_sim(request).stores)})


async def _config(request: web.Request) -> web.Response:
    return web.json_response(_sim(request).store_configs())


async def _stats(request: web.Request) -> web.Response:
    return web.json_response(_sim(request).stats(request.query.get("store")))


async def _reset_stats(request: web.Request) -> web.Response:
    _sim(request).reset_stats()
    return web.json_response({"ok": True})


async def _latency(request: web.Request) -> web.Response:
    body = await _read(request, Latency)
    _sim(request).latency = body.seconds
    return web.json_response({"latency": body.seconds})


async def _variants(request: web.Request) -> web.Response:
    return web.json_response(dataclasses.asdict(_sim(request).variants))


async def _patch_variants(request: web.Request) -> web.Response:
    b = await _read(request, VariantsPatch)
    sim = _sim(request)
    sim.variants = with_changes(sim.variants, **b.model_dump(exclude_unset=True))
    return web.json_response(dataclasses.asdict(sim.variants))


async def _faults(request: web.Request) -> web.Response:
    return web.json_response([rule.as_dict() for rule in _sim(request).faults.rules()])


async def _add_fault(request: web.Request) -> web.Response:
    rule = _sim(request).inject(**(await _read(request, FaultBody)).model_dump())
    return web.json_response(rule.as_dict(), status=201)


async def _clear_faults(request: web.Request) -> web.Response:
    _sim(request).clear_faults(request.query.get("store"))
    return web.json_response({"ok": True})


async def _remove_fault(request: web.Request) -> web.Response:
    try:
        rule_id = int(request.match_info["rule"])
    except ValueError:
        raise NotFoundError("no such fault rule") from None
    if not _sim(request).faults.remove(rule_id):
        raise NotFoundError(f"no fault rule {rule_id}")
    return web.json_response({"ok": True})


async def _add_store(request: web.Request) -> web.Response:
    spec = StoreSpec(**(await _read(request, StoreCreate)).model_dump())
    sim = _sim(request)
    st = sim.add_store(spec)
    return web.json_response(st.config(sim.base_url(st.name)), status=201)


async def _store(request: web.Request) -> web.Response:
    sim = _sim(request)
    st = sim.store(request.match_info["store"])
    info = st.config(sim.base_url(st.name))
    info["body_style"], info["empty_style"] = st.body_style, st.empty_style
    info["tasks"] = [t.as_dict() for t in st.all_tasks()]
    return web.json_response(info)


async def _patch_store(request: web.Request) -> web.Response:
    st = _sim(request).store(request.match_info["store"])
    b = await _read(request, StorePatch)
    if b.body_style is not None and b.body_style not in BODY_STYLES[st.platform]:
        raise ValueError(f"body_style must be one of {', '.join(BODY_STYLES[st.platform])}")
    if b.token is not None:
        st.set_token(b.token)
    st.body_style = b.body_style or st.body_style
    st.empty_style = b.empty_style or st.empty_style
    if b.require_content_type is not None:
        st.require_content_type = b.require_content_type
    return web.json_response({"ok": True})


async def _tasks(request: web.Request) -> web.Response:
    tasks = _sim(request).tasks(request.match_info["store"])
    return web.json_response([t.as_dict() for t in tasks])


async def _create_task(request: web.Request) -> web.Response:
    b = await _read(request, TaskCreate)
    task = _sim(request).create_task(
        request.match_info["store"],
        b.id,
        "CREATED" if b.status is None else b.status,
        operation_type=b.type,
        **b.fields(),
    )
    return web.json_response(task.as_dict(), status=201)


async def _task(request: web.Request) -> web.Response:
    task = _sim(request).task(request.match_info["store"], request.match_info["task"])
    return web.json_response(task.as_dict())


async def _update_task(request: web.Request) -> web.Response:
    b = await _read(request, TaskUpdate)
    store, task_id = request.match_info["store"], request.match_info["task"]
    task = _sim(request).update_task(store, task_id, b.status, **b.fields())
    return web.json_response(task.as_dict())


async def _advance(request: web.Request) -> web.Response:
    b = await _read(request, Advance)
    store, task_id = request.match_info["store"], request.match_info["task"]
    return web.json_response(_sim(request).advance(store, task_id, fail=b.fail).as_dict())


async def _remove_task(request: web.Request) -> web.Response:
    _sim(request).remove_task(request.match_info["store"], request.match_info["task"])
    return web.json_response({"ok": True})


async def _clear_current(request: web.Request) -> web.Response:
    removed = _sim(request).clear_current(request.match_info["store"], request.match_info["type"])
    return web.json_response({"removed": removed.as_dict() if removed else None})


async def _tick(request: web.Request) -> web.Response:
    driver = _sim(request).driver
    if driver is None:
        return web.json_response({"error": "the automatic driver is not running"}, status=409)
    return web.json_response({"changed": driver.tick()})


def control_app(sim: Simulator) -> web.Application:
    """The sub-application mounted at `/_sim`."""
    app = web.Application(middlewares=[_errors])
    app[SIMULATOR_KEY] = sim
    routes: list[tuple[str, str, Handler]] = [
        ("GET", "/health", _health),
        ("GET", "/config", _config),
        ("GET", "/stats", _stats),
        ("DELETE", "/stats", _reset_stats),
        ("PUT", "/latency", _latency),
        ("GET", "/variants", _variants),
        ("PATCH", "/variants", _patch_variants),
        ("GET", "/faults", _faults),
        ("POST", "/faults", _add_fault),
        ("DELETE", "/faults", _clear_faults),
        ("DELETE", "/faults/{rule}", _remove_fault),
        ("POST", "/stores", _add_store),
        ("GET", "/stores/{store}", _store),
        ("PATCH", "/stores/{store}", _patch_store),
        ("GET", "/stores/{store}/tasks", _tasks),
        ("POST", "/stores/{store}/tasks", _create_task),
        ("GET", "/stores/{store}/tasks/{task}", _task),
        ("PATCH", "/stores/{store}/tasks/{task}", _update_task),
        ("DELETE", "/stores/{store}/tasks/{task}", _remove_task),
        ("POST", "/stores/{store}/tasks/{task}/advance", _advance),
        ("DELETE", "/stores/{store}/current/{type}", _clear_current),
        ("POST", "/driver/tick", _tick),
    ]
    for method, path, handler in routes:
        app.router.add_route(method, path, handler)
    return app
