"""Short task lifecycles on every simulated store, each step taken only once the replicas have
committed the last one, so every transition is an event the receiver must get.

Each store (each operation type of a Shopline store) is a lane: a task is created, goes
CREATED -> RUNNING -> COMPLETED (some Shopline ones FAILED), then the next task comes. A lane
moves on only when the shared PostgreSQL state shows its task in the status the simulator
shows: whichever replica polls the store, and however often it changes hands, nothing
happens that no replica could have seen. `expected` is the (subject, type) of every event.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass

import asyncpg

from bulkwatch.model import Platform
from bulkwatch.simulator import Simulator

__all__ = ["Plan", "driving"]

_LAZZA = {0: "CREATED", 1: "RUNNING", 2: "COMPLETED"}


@dataclass
class Lane:
    store: str
    platform: Platform
    operation_type: str
    created: int = 0
    current: str | None = None


class Plan:
    """Moves each lane one step at a time; `finish()` lets current tasks end, starts none."""

    def __init__(self, sim: Simulator, seed: int) -> None:
        self.sim = sim
        self.rng = random.Random(seed)
        self.lanes = [
            Lane(name, st.platform, op)
            for name, st in sim.stores.items()
            for op in (("DATA_QUERY",) if st.platform is Platform.SHOPLAZZA else st.operation_types)
        ]
        self.expected: set[tuple[str, str]] = set()
        self.steps = 0
        self.finishing = False

    @property
    def done(self) -> bool:
        return self.finishing and all(lane.current is None for lane in self.lanes)

    def finish(self) -> None:
        self.finishing = True

    def step(self, committed: dict[tuple[str, str], str]) -> None:
        for lane in self.lanes:
            if lane.current is not None:
                status = self._status(lane, lane.current)
                if committed.get((lane.store, lane.current)) != status:
                    continue  # not seen yet: keep it visible
                if status in ("COMPLETED", "FAILED"):
                    lane.current = None
                else:
                    self._move(lane, lane.current, status)
                    continue
            if not self.finishing:
                self._create(lane)

    def _status(self, lane: Lane, task_id: str) -> str:
        raw = self.sim.task(lane.store, task_id).status
        return _LAZZA[raw] if isinstance(raw, int) else str(raw)

    def _create(self, lane: Lane) -> None:
        lane.created += 1
        task_id = f"{lane.operation_type.lower()}-{lane.created}"
        self.sim.create_task(lane.store, task_id, "CREATED", operation_type=lane.operation_type)
        lane.current = task_id
        self._note(lane, task_id, "created")

    def _move(self, lane: Lane, task_id: str, status: str) -> None:
        fails = lane.platform is Platform.SHOPLINE and self.rng.random() < 0.3
        new = "RUNNING" if status == "CREATED" else "FAILED" if fails else "COMPLETED"
        self.sim.set_status(lane.store, task_id, new)
        self._note(lane, task_id, new.lower())

    def _note(self, lane: Lane, task_id: str, kind: str) -> None:
        self.steps += 1
        self.expected.add((f"{lane.store}/{task_id}", f"bulkwatch.task.{kind}"))


async def committed_statuses(conn: asyncpg.Connection) -> dict[tuple[str, str], str]:
    """(store, task id) -> the status the replicas have committed (none before the schema)."""
    try:
        rows = await conn.fetch("SELECT store, task_id, status FROM tasks")
    except asyncpg.UndefinedTableError:
        return {}
    return {(r["store"], r["task_id"]): r["status"] for r in rows}


async def _drive(plan: Plan, url: str, every: float) -> None:
    conn = await asyncpg.connect(url)
    try:
        while True:
            plan.step(await committed_statuses(conn))
            await asyncio.sleep(every)
    finally:
        await conn.close()


@contextlib.asynccontextmanager
async def driving(plan: Plan, url: str, every: float = 0.1) -> AsyncIterator[asyncio.Task[None]]:
    """Step `plan` every `every` seconds against the database at `url` while the block runs
    (read directly, not through any replica's proxy)."""
    task = asyncio.create_task(_drive(plan, url, every))
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
