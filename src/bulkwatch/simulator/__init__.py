"""A fake Shoplazza + Shopline for tests, demos and benchmarks: many stores on one port.

Each store is reached under its own path prefix, which is its bulkwatch `base_url`:

- Shoplazza `lazza-1`: `GET /lazza-1/openapi/{version}/data/tasks?page=&limit=` with header
  `Access-Token` → `{"tasks": [{"query_id", "query_status", "query": {"url"}}]}` newest first
  (or `querys`, or `{"code": "Success", "data": {...}}`: the store's `body_style`); `Request-Id`.
- Shopline `line-1`: `GET /line-1/admin/openapi/{version}/current_bulk_operation.json?type=QUERY`
  with `Authorization: Bearer <token>` → the current task at top level (or `{"data": {...}}`);
  no task → the store's `empty_style` (200 `{}` by default); `traceId` header.

Where the platforms' documentation is silent (list order, the page past the end, the no-task
answer, the failed code, the auth failure, redirects, created times in the list), `Variants`
choose the behaviour.

Tokens default to `sim-<store>`; a wrong one gets 401. Start it with
`async with run_simulator(stores=make_stores(2, 2)) as sim:` and drive it with the `Simulator`
methods, or from another process (`bulkwatch simulate --port 0 --manual`, or
`python -m bulkwatch.simulator`: the same options, in `options`) with the control routes
(docs/simulator.md has them for users). Bodies are JSON; task fields are snake_case, times
epoch seconds:

- `GET /_sim/health` → `{"ok": true, "stores": N}`
- `GET /_sim/config` → `store_configs()`, the `stores:` of a bulkwatch config
- `GET /_sim/stats[?store=S]` → request counters; `DELETE /_sim/stats` resets them
- `PUT /_sim/latency` `{"seconds"}` → seconds added to every API response
- `GET /_sim/variants` → the platform variants (`simulator.variants`); `PATCH` changes them
  (`{"list_order"?, "past_end"?, "no_task"?, "failed_code"?, "auth_failure"?, "redirect"?,
  "created_times"?}`)
- `GET /_sim/faults` → installed fault rules
- `POST /_sim/faults` `{"kind", "store"?, "endpoint"?, "times"?, "probability"?, "status"?,
  "retry_after"?, "delay"?, "size"?}` → 201 the rule, with its `id`; `times` defaults to 1,
  `null` keeps it until removed
- `DELETE /_sim/faults[?store=S]` removes all (or one store's); `DELETE /_sim/faults/{id}` one
- `POST /_sim/stores` `{"name", "platform", "token"?, "body_style"?, "empty_style"?,
  "operation_types"?, "require_content_type"?, "max_tasks"?}` → 201 its config
- `GET /_sim/stores/{s}` → settings and tasks; `PATCH /_sim/stores/{s}` `{"token"?,
  "body_style"?, "empty_style"?, "require_content_type"?}` changes them
- `GET /_sim/stores/{s}/tasks` → its tasks, newest first
- `POST /_sim/stores/{s}/tasks` `{"id"?, "status"?, "type"?, fields...}` → 201 the task;
  on Shopline it replaces (supersedes) the current task of its type
- `GET` / `PATCH` (`{"status"?, fields...}`) / `DELETE` `/_sim/stores/{s}/tasks/{id}`
- `POST /_sim/stores/{s}/tasks/{id}/advance` `{"fail"?}` → one lifecycle step
- `DELETE /_sim/stores/{s}/current/{QUERY|MUTATION}` → Shopline: no current task
- `POST /_sim/driver/tick` → apply the automatic driver's due events now (409 without one)

Task fields: `url`, `partial_data_url`, `completed_count`, `error_code`, `reason`,
`created_at`, `completed_at`, `expired_at`. Status: Shoplazza an int (or CREATED / RUNNING /
COMPLETED), Shopline a string. Fault kinds (`FaultKind`): `status` (with `status`: 401, 402,
403, 404, 423, 433, 500, 502, 503, 504...), `rate_limit` (429, `Retry-After` only with
`retry_after`), `malformed`, `html`, `empty`, `wrong_types`, `huge` (`size` bytes), `slow`
(`delay` seconds, then the normal answer). Endpoints: `tasks`, `QUERY`, `MUTATION`.
"""

from __future__ import annotations

from bulkwatch.simulator.api import make_app
from bulkwatch.simulator.core import Simulator
from bulkwatch.simulator.driver import Driver, DriverConfig
from bulkwatch.simulator.faults import Fault, FaultKind, FaultRule
from bulkwatch.simulator.lifecycle import next_status
from bulkwatch.simulator.model import (
    NotFoundError,
    SimStore,
    SimTask,
    StoreSpec,
    TaskFields,
    make_stores,
)
from bulkwatch.simulator.runner import run_simulator, serve, write_config
from bulkwatch.simulator.state import DEFAULT_EXPIRE_AFTER
from bulkwatch.simulator.variants import SINGLE_VARIANTS, Variants

__all__ = [
    "DEFAULT_EXPIRE_AFTER",
    "SINGLE_VARIANTS",
    "Driver",
    "DriverConfig",
    "Fault",
    "FaultKind",
    "FaultRule",
    "NotFoundError",
    "SimStore",
    "SimTask",
    "Simulator",
    "StoreSpec",
    "TaskFields",
    "Variants",
    "make_app",
    "make_stores",
    "next_status",
    "run_simulator",
    "serve",
    "write_config",
]
