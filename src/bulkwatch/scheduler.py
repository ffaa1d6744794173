"""APScheduler 3.x: one interval job per store endpoint, first runs spread over the interval."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_MISSED, JobExecutionEvent
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger

from bulkwatch.domain import EndpointKey

__all__ = ["PollJob", "build_scheduler"]

# Spread first runs over at most this long, so a big fleet starts polling promptly while
# 10,000 jobs never fall due on the same instant (that blocks the loop for ~250 ms).
MAX_SPREAD_S = 60.0


@dataclass(frozen=True, slots=True)
class PollJob:
    key: EndpointKey
    interval: float
    jitter: float
    run: Callable[[], Awaitable[None]]


def build_scheduler(
    jobs: Sequence[PollJob],
    now: datetime,
    *,
    on_missed: Callable[[str], None] | None = None,
    on_error: Callable[[str, BaseException | None], None] | None = None,
) -> AsyncIOScheduler:
    """A scheduler holding one job per endpoint; call `.start()` inside the running loop."""
    scheduler = AsyncIOScheduler(timezone="UTC")
    n = max(len(jobs), 1)
    for i, job in enumerate(jobs):
        offset = min(job.interval, MAX_SPREAD_S) * i / n
        scheduler.add_job(
            job.run,
            IntervalTrigger(
                seconds=job.interval,
                start_date=now + timedelta(seconds=offset),
                jitter=job.jitter or None,
                timezone="UTC",
            ),
            id=str(job.key),
            name=f"poll {job.key}",
            max_instances=1,
            coalesce=True,
            misfire_grace_time=max(1, int(job.interval)),
            replace_existing=True,
        )

    def listener(event: JobExecutionEvent) -> None:
        if event.code == EVENT_JOB_MISSED and on_missed is not None:
            on_missed(event.job_id)
        elif event.code == EVENT_JOB_ERROR and on_error is not None:
            on_error(event.job_id, event.exception)

    scheduler.add_listener(listener, EVENT_JOB_MISSED | EVENT_JOB_ERROR)
    return scheduler
