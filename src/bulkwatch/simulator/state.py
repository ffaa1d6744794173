"""The simulated platforms' state (stores and their tasks) and the Python API that changes it
by hand. `Simulator` adds serving, faults and counters; `Driver` moves the tasks on by itself."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterable
from typing import Unpack

from bulkwatch.model import Platform, TaskStatus
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

__all__ = ["DEFAULT_EXPIRE_AFTER", "SimulatedPlatforms"]

DEFAULT_EXPIRE_AFTER = 12 * 3600.0  # Shopline result files live about 12 hours


class SimulatedPlatforms:
    """Simulated Shoplazza and Shopline stores and their tasks.

    `seed` (with the same clock) makes ids reproducible; `clock` (epoch seconds) stamps task
    times and begins every id, so ids never repeat across runs; `expire_after`
    is how long a COMPLETED Shopline result lives (`expiredAt`); `variants` how the platforms
    behave where their documentation is silent (`simulator.variants`).
    """

    def __init__(
        self,
        stores: Iterable[StoreSpec] = (),
        *,
        seed: int | None = None,
        clock: Callable[[], float] | None = None,
        expire_after: float = DEFAULT_EXPIRE_AFTER,
        variants: Variants | None = None,
    ) -> None:
        self.variants = variants or Variants()
        self.stores: dict[str, SimStore] = collect(stores)
        self.seed = seed
        self.clock: Callable[[], float] = clock or time.time
        self.expire_after = expire_after
        self._ids = make_rng(seed, "ids")
        self._last_number = 0  # the last Shopline id handed out

    # -- stores -------------------------------------------------------------------------

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
        """A fresh id in the platform's style: a UUID (Shoplazza) or a long number (Shopline).

        Both begin with the clock's milliseconds (a version 7 UUID; a "snowflake" number, the
        milliseconds above 22 random bits), so a restarted simulator never hands out an id
        it gave before, whatever the seed: the same seed and the same clock give the same
        ids (tests), a real clock new ones. Shopline numbers also only ever grow in one run.
        """
        ms = max(0, int(self.clock() * 1000))
        if platform is Platform.SHOPLAZZA:
            rand_a, rand_b = self._ids.getrandbits(12), self._ids.getrandbits(62)
            value = (ms & (2**48 - 1)) << 80 | 0x7 << 76 | rand_a << 64 | 0b10 << 62 | rand_b
            return str(uuid.UUID(int=value))
        number = max(ms << 22 | self._ids.getrandbits(22), self._last_number + 1)
        self._last_number = number
        return str(number)

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
