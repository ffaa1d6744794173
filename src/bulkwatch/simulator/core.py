"""`Simulator`: the simulated platforms' state and the Python API that drives it by hand."""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Unpack

from bulkwatch.model import Platform, TaskStatus
from bulkwatch.simulator.faults import Fault, FaultInjector, FaultKind, FaultRule
from bulkwatch.simulator.lifecycle import Status, apply_change, next_status, shopline_slot
from bulkwatch.simulator.model import (
    SHOPLAZZA_TYPE,
    NotFoundError,
    SimStore,
    SimTask,
    StoreSpec,
    TaskFields,
    collect,
    make_rng,
)
from bulkwatch.simulator.variants import Variants, shoplazza_failed

if TYPE_CHECKING:
    from bulkwatch.simulator.driver import Driver

__all__ = ["DEFAULT_EXPIRE_AFTER", "Simulator"]

DEFAULT_EXPIRE_AFTER = 12 * 3600.0  # Shopline result files live about 12 hours


class Simulator:
    """Simulated Shoplazza and Shopline stores, their tasks, injected faults and counters.

    `seed` makes ids, fault probabilities and the automatic driver reproducible; `clock`
    (epoch seconds) stamps task times; `latency` seconds are added to every API response;
    `expire_after` is how long a COMPLETED Shopline result lives (`expiredAt`); `variants`
    how the platforms behave where their documentation is silent (`simulator.variants`).
    """

    def __init__(
        self,
        stores: Iterable[StoreSpec] = (),
        *,
        seed: int | None = None,
        clock: Callable[[], float] | None = None,
        latency: float = 0.0,
        expire_after: float = DEFAULT_EXPIRE_AFTER,
        variants: Variants | None = None,
    ) -> None:
        self.variants = variants or Variants()
        # Requests that followed a cross-host redirect carrying a token: a client must never.
        self.leaked_tokens = 0
        self.stores: dict[str, SimStore] = collect(stores)
        self.seed = seed
        self.clock: Callable[[], float] = clock or time.time
        self.latency = latency
        self.expire_after = expire_after
        self.faults = FaultInjector(make_rng(seed, "faults"))
        self.driver: Driver | None = None
        self.unknown_requests = 0
        self._ids = make_rng(seed, "ids")
        self._run = f"{self._ids.getrandbits(32):08x}"
        self._responses = itertools.count(1)
        self._url: str | None = None
        self._waiters: dict[str, list[tuple[int, asyncio.Future[None]]]] = {}

    # -- where it runs ------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The root URL the simulator listens on, e.g. `http://127.0.0.1:41234`."""
        if self._url is None:
            raise RuntimeError("the simulator is not serving: use run_simulator()")
        return self._url

    def attach(self, url: str) -> None:
        """Record the URL it was bound to; called by `run_simulator`."""
        self._url = url.rstrip("/")

    def base_url(self, store: str) -> str:
        """The `base_url` a bulkwatch store uses to reach this simulated store."""
        return f"{self.url}/{self.store(store).name}"

    def store_configs(self) -> list[dict[str, Any]]:
        """One dict per store, ready to go under `stores:` in a bulkwatch config."""
        return [st.config(f"{self.url}/{st.name}") for st in self.stores.values()]

    def add_store(self, spec: StoreSpec) -> SimStore:
        """Add a store while running."""
        if spec.name in self.stores:
            raise ValueError(f"duplicate store name {spec.name!r}")
        st = SimStore.from_spec(spec)
        self.stores[st.name] = st
        return st

    def store(self, name: str) -> SimStore:
        """A store by name; `NotFoundError` when unknown."""
        try:
            return self.stores[name]
        except KeyError:
            raise NotFoundError(f"no store named {name!r}") from None

    # -- tasks --------------------------------------------------------------------------

    def create_task(
        self,
        store: str,
        task_id: str | None = None,
        status: Status = TaskStatus.CREATED,
        *,
        operation_type: str | None = None,
        now: float | None = None,
        **fields: Unpack[TaskFields],
    ) -> SimTask:
        """Create a task; on Shopline it becomes the current one of its type, superseding
        (removing from view) any previous one. Fields left out follow from the status."""
        st = self.store(store)
        at = self.clock() if now is None else now
        if st.platform is Platform.SHOPLAZZA:
            if operation_type not in (None, SHOPLAZZA_TYPE):
                raise ValueError(f"Shoplazza tasks are of type {SHOPLAZZA_TYPE}")
            operation_type = SHOPLAZZA_TYPE
        else:
            operation_type = operation_type or "QUERY"
            shopline_slot(operation_type)
        task_id = task_id or self.new_task_id(st.platform)
        if task_id in st.tasks or any(t.id == task_id for t in st.current.values()):
            raise ValueError(f"store {store} already shows a task {task_id!r}")
        task = SimTask(
            id=task_id,
            platform=st.platform,
            type=operation_type,
            status=0 if st.platform is Platform.SHOPLAZZA else "CREATED",
            created_at=fields.get("created_at", at),
        )
        self.apply(st, task, status, at, fields)
        self.insert(st, task)
        return task

    def replace_current(
        self,
        store: str,
        operation_type: str = "QUERY",
        task_id: str | None = None,
        status: Status = TaskStatus.CREATED,
        *,
        now: float | None = None,
        **fields: Unpack[TaskFields],
    ) -> SimTask:
        """Shopline: start a new task of this type, replacing the current one (another app's)."""
        if self.store(store).platform is not Platform.SHOPLINE:
            raise ValueError(f"store {store} is not a Shopline store")
        return self.create_task(
            store, task_id, status, operation_type=operation_type, now=now, **fields
        )

    def update_task(
        self,
        store: str,
        task_id: str,
        status: Status | None = None,
        *,
        now: float | None = None,
        **fields: Unpack[TaskFields],
    ) -> SimTask:
        """Change a task's status and/or fields; a new status fills the fields it implies
        (COMPLETED: url, completedAt, expiredAt; FAILED: errorCode TIMEOUT) unless given."""
        st = self.store(store)
        task = st.find(task_id)
        self.apply(st, task, status, self.clock() if now is None else now, fields)
        return task

    def set_status(
        self,
        store: str,
        task_id: str,
        status: Status,
        *,
        now: float | None = None,
        **fields: Unpack[TaskFields],
    ) -> SimTask:
        """Set a task's status (and optionally fields): `update_task` with a status."""
        return self.update_task(store, task_id, status, now=now, **fields)

    def advance(
        self, store: str, task_id: str, *, fail: bool = False, now: float | None = None
    ) -> SimTask:
        """Move a task one lifecycle step (see `next_status`); ValueError when it has none."""
        st = self.store(store)
        task = st.find(task_id)
        status = next_status(task, fail=fail)
        if status is None:
            raise ValueError(f"task {task_id} in status {task.status!r} has no next step")
        self.apply(st, task, status, self.clock() if now is None else now, {})
        return task

    def remove_task(self, store: str, task_id: str) -> SimTask:
        """Make a task disappear from the endpoint."""
        st = self.store(store)
        task = st.find(task_id)
        if st.tasks.pop(task_id, None) is None:
            st.current = {slot: t for slot, t in st.current.items() if t is not task}
        task.version += 1
        return task

    def clear_current(self, store: str, operation_type: str = "QUERY") -> SimTask | None:
        """Shopline: leave no current task of this type; returns the one removed."""
        st = self.store(store)
        task = st.current.pop(shopline_slot(operation_type), None)
        if task is not None:
            task.version += 1
        return task

    def task(self, store: str, task_id: str) -> SimTask:
        """A task the endpoint currently shows."""
        return self.store(store).find(task_id)

    def tasks(self, store: str) -> list[SimTask]:
        """The tasks a store shows, newest first."""
        return self.store(store).all_tasks()

    def current(self, store: str, operation_type: str = "QUERY") -> SimTask | None:
        """Shopline: the current task of a type, if any."""
        return self.store(store).current.get(shopline_slot(operation_type))

    def new_task_id(self, platform: Platform) -> str:
        """A fresh id in the platform's style: a UUID (Shoplazza) or a long number (Shopline)."""
        if platform is Platform.SHOPLAZZA:
            return str(uuid.UUID(int=self._ids.getrandbits(128), version=4))
        return str(self._ids.randrange(10**18, 10**19))

    def insert(self, st: SimStore, task: SimTask) -> None:
        """Make a new task visible; Shopline supersedes, Shoplazza drops its oldest past
        `max_tasks` (the real list is capped too)."""
        if st.platform is Platform.SHOPLAZZA:
            st.tasks[task.id] = task
            while len(st.tasks) > st.max_tasks:
                st.tasks.pop(next(iter(st.tasks))).version += 1
            return
        old = st.current.get(slot := shopline_slot(task.type))
        if old is not None:
            old.version += 1
            st.superseded += 1
        st.current[slot] = task

    def apply(
        self, st: SimStore, task: SimTask, status: Status | None, at: float, fields: TaskFields
    ) -> None:
        """Set a status and fields, deriving what the platform would fill in."""
        status = shoplazza_failed(st.platform, status, self.variants)
        apply_change(st, task, status, at, fields, expire_after=self.expire_after, rng=self._ids)

    # -- faults -------------------------------------------------------------------------

    def inject(
        self,
        kind: FaultKind | str | int,
        *,
        store: str | None = None,
        endpoint: str | None = None,
        times: int | None = 1,
        probability: float = 1.0,
        status: int | None = None,
        retry_after: float | None = None,
        delay: float | None = None,
        size: int | None = None,
    ) -> FaultRule:
        """Break the next `times` API responses (None: until cleared), each with `probability`,
        for one store (or all) and one endpoint (`tasks`, `QUERY`, `MUTATION`; or all).
        An int `kind` is an HTTP status: `inject(503, store="line-1")`."""
        if store is not None:
            self.store(store)
        fault = Fault.make(kind, status=status, retry_after=retry_after, delay=delay, size=size)
        return self.faults.add(
            fault, store=store, endpoint=endpoint, times=times, probability=probability
        )

    def clear_faults(self, store: str | None = None) -> None:
        """Remove every fault rule, or one store's."""
        self.faults.clear(store)

    # -- counters -----------------------------------------------------------------------

    def next_response_id(self) -> str:
        """A `Request-Id` / `traceId` unique to one response."""
        return f"sim{self._run}{next(self._responses):016x}"

    def record_request(self, st: SimStore, endpoint: str) -> None:
        """Count one API request and wake whoever waits for it."""
        stats = st.stats
        stats.requests += 1
        stats.endpoints[endpoint] += 1
        stats.last_request_at = self.clock()
        if stats.first_request_at is None:
            stats.first_request_at = stats.last_request_at
        if self._waiters and (waiting := self._waiters.get(st.name)):
            for count, fut in waiting:
                if stats.requests >= count and not fut.done():
                    fut.set_result(None)

    def request_count(self, store: str) -> int:
        """How many API requests a store received since the last `reset_stats`."""
        return self.store(store).stats.requests

    async def wait_for_requests(self, store: str, count: int) -> None:
        """Return once a store has received `count` requests; wrap in `asyncio.timeout`."""
        if self.store(store).stats.requests >= count:
            return
        entry = (count, asyncio.get_running_loop().create_future())
        self._waiters.setdefault(store, []).append(entry)
        try:
            await entry[1]
        finally:
            waiting = self._waiters.get(store, [])
            if entry in waiting:
                waiting.remove(entry)
            if not waiting:
                self._waiters.pop(store, None)

    def stats(self, store: str | None = None) -> dict[str, Any]:
        """Counters per store (or one store) plus totals, as JSON."""
        stores = [self.store(store)] if store is not None else list(self.stores.values())
        return {
            "total_requests": sum(st.stats.requests for st in self.stores.values()),
            "unknown_store_requests": self.unknown_requests,
            "stores": {
                st.name: {
                    "platform": st.platform.value,
                    "superseded": st.superseded,
                    **st.stats.as_dict(),
                }
                for st in stores
            },
        }

    def reset_stats(self) -> None:
        """Zero every counter."""
        for st in self.stores.values():
            st.stats = type(st.stats)()
        self.unknown_requests = 0
