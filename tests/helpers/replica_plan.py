"""The task lifecycles of `helpers.task_plan` driven by the replicas' shared PostgreSQL state:
a lane moves on only when the state shows its task in the status the simulator shows,
whichever replica polls the store and however often it changes hands.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import asyncpg

from helpers.task_plan import Plan

__all__ = ["committed_statuses", "driving"]


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
