"""Task lifecycles: raw platform statuses, the next step, and the fields a status implies."""

from __future__ import annotations

import random
from typing import Final

from bulkwatch.model import Platform, TaskStatus
from bulkwatch.simulator.model import (
    ERROR_REASONS,
    SHOPLINE_TYPES,
    SimStore,
    SimTask,
    TaskFields,
)

__all__ = [
    "Status",
    "apply_change",
    "next_status",
    "shoplazza_code",
    "shopline_slot",
    "shopline_status",
]

Status = TaskStatus | str | int
_SHOPLAZZA_CODES: Final = {
    TaskStatus.CREATED: 0,
    TaskStatus.RUNNING: 1,
    TaskStatus.COMPLETED: 2,
}


def shoplazza_code(status: TaskStatus | str | int) -> int:
    """A Shoplazza `query_status`: ints pass through, CREATED/RUNNING/COMPLETED map to 0/1/2."""
    if isinstance(status, int):
        return status
    if status.lstrip("-").isdigit():
        return int(status)
    try:
        return _SHOPLAZZA_CODES[TaskStatus(status.upper())]
    except (ValueError, KeyError):
        raise ValueError(
            f"Shoplazza has no code for {status!r}: give CREATED, RUNNING, COMPLETED or an int"
        ) from None


def shopline_status(status: TaskStatus | str | int) -> str:
    """A Shopline status string: known ones in capitals, unknown ones kept exactly as given
    (to test the daemon's tolerance)."""
    if isinstance(status, int) or not status:
        raise ValueError(f"a Shopline status is a string, not {status!r}")
    return status.upper() if status.upper() in TaskStatus.__members__ else str(status)


def shopline_slot(task_type: str) -> str:
    """The `type=` query value that shows a task of this type."""
    if task_type not in SHOPLINE_TYPES:
        raise ValueError(f"a Shopline task type is one of {', '.join(SHOPLINE_TYPES)}")
    return "QUERY" if task_type == "QUERY" else "MUTATION"


def next_status(task: SimTask, *, fail: bool = False) -> int | str | None:
    """The status one lifecycle step moves a task to, or None when it has no next step.

    Shoplazza 0 → 1 → 2 (or FAILED, the variant's code, when `fail`); Shopline CREATED →
    RUNNING → COMPLETED (or FAILED when `fail`) → EXPIRED, and CANCELING → CANCELED.
    """
    if task.platform is Platform.SHOPLAZZA:
        if task.status == 1 and fail:
            return TaskStatus.FAILED.value
        return {0: 1, 1: 2}.get(task.status) if isinstance(task.status, int) else None
    if task.status == "RUNNING":
        return "FAILED" if fail else "COMPLETED"
    return {"CREATED": "RUNNING", "COMPLETED": "EXPIRED", "CANCELING": "CANCELED"}.get(
        str(task.status)
    )


def apply_change(
    st: SimStore,
    task: SimTask,
    status: Status | None,
    at: float,
    fields: TaskFields,
    *,
    expire_after: float,
    rng: random.Random,
) -> None:
    """Set a status and fields; a new status fills what the platform would (COMPLETED: url,
    completedAt, expiredAt = at + `expire_after`; FAILED: errorCode TIMEOUT) unless given."""
    if status is not None:
        if st.platform is Platform.SHOPLAZZA:
            task.status = shoplazza_code(status)
            if task.status == 2 and "url" not in fields and not task.url:
                host = "https://shoplazza.oss-cn-shenzhen.aliyuncs.com"
                task.url = f"{host}/sim/{st.name}/{task.id}.csv"
        else:
            task.status = shopline_status(status)
            _derive_shopline(st, task, at, fields, expire_after=expire_after, rng=rng)
    for key, value in fields.items():
        setattr(task, key, value)
    task.version += 1


def _derive_shopline(
    st: SimStore,
    task: SimTask,
    at: float,
    fields: TaskFields,
    *,
    expire_after: float,
    rng: random.Random,
) -> None:
    if task.status in ("COMPLETED", "FAILED", "CANCELED") and "completed_at" not in fields:
        task.completed_at = at
    if task.status == "FAILED":
        if "error_code" not in fields and task.error_code is None:
            task.error_code = "TIMEOUT"
        if "reason" not in fields and task.reason is None:
            task.reason = ERROR_REASONS.get(fields.get("error_code") or task.error_code or "")
    if task.status != "COMPLETED":
        return
    if "expired_at" not in fields:
        task.expired_at = (fields.get("completed_at") or at) + expire_after
    if "completed_count" not in fields and not task.completed_count:
        task.completed_count = rng.randrange(1, 5000)
    if "url" not in fields and not task.url:
        expires = int(fields.get("expired_at") or task.expired_at or at)
        task.url = (
            "https://sl-private-oss.oss-accelerate.example.com/task-jsonline/sim/"
            f"{st.store_id}/{task.id}.jsonl?Expires={expires}"
        )
    if "partial_data_url" not in fields:
        task.partial_data_url = fields.get("url", task.url)
