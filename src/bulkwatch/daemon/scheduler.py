"""APScheduler 3.x: one interval job per store endpoint, first runs spread over the interval."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_MISSED, JobExecutionEvent
from apscheduler.jobstores.base import JobLookupError
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.schedulers.base import STATE_PAUSED, STATE_RUNNING, STATE_STOPPED
from apscheduler.triggers.interval import IntervalTrigger

from bulkwatch.model import EndpointKey

__all__ = [
    "InflightJobs",
    "PollJob",
    "add_jobs",
    "build_scheduler",
    "remove_jobs",
    "scheduler_state",
]

# Spread first runs over at most this long, so a big fleet starts polling promptly while
# 10,000 jobs never fall due on the same instant (that blocks the loop; docs/performance.md).
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
    add_jobs(scheduler, jobs, now)

    def listener(event: JobExecutionEvent) -> None:
        if event.code == EVENT_JOB_MISSED and on_missed is not None:
            on_missed(event.job_id)
        elif event.code == EVENT_JOB_ERROR and on_error is not None:
            on_error(event.job_id, event.exception)

    scheduler.add_listener(listener, EVENT_JOB_MISSED | EVENT_JOB_ERROR)
    return scheduler


def add_jobs(scheduler: AsyncIOScheduler, jobs: Sequence[PollJob], now: datetime) -> None:
    """Add one interval job per endpoint, their first runs spread over the interval (at most
    `MAX_SPREAD_S`); a job of the same endpoint is replaced."""
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


def remove_jobs(scheduler: AsyncIOScheduler, keys: Iterable[EndpointKey]) -> None:
    """Remove the jobs of these endpoints (a poll running now finishes)."""
    for key in keys:
        with contextlib.suppress(JobLookupError):
            scheduler.remove_job(str(key))


class InflightJobs:
    """The scheduled jobs running now, each with the task of its poll, and how to finish them.

    Each poll runs as a task of its own so shutdown can cancel it without APScheduler seeing
    a failed job (it would log an error with a traceback): a job whose poll was cancelled by
    `finish` returns normally. A job cancelled itself still raises.
    """

    def __init__(self) -> None:
        self._running: dict[asyncio.Task[Any], asyncio.Task[Any]] = {}

    def __len__(self) -> int:
        return len(self._running)

    def wrap(
        self, poll: Callable[[], Awaitable[Any]], name: str
    ) -> Callable[[], Coroutine[Any, Any, None]]:
        """The job function for APScheduler: runs `poll()` as a tracked task."""

        async def run() -> None:
            job = asyncio.current_task()
            task = asyncio.ensure_future(poll())
            task.set_name(name)
            if job is not None:
                self._running[job] = task
            try:
                await task
            except asyncio.CancelledError:
                if task.cancelled() and not (job and job.cancelling()):
                    return  # cancelled by `finish`: the poll records nothing, by design
                raise
            finally:
                if job is not None:
                    self._running.pop(job, None)

        return run

    async def finish(self, deadline: float) -> int:
        """Let the running jobs finish until `deadline` (monotonic seconds), then cancel the
        polls still running; return how many were cancelled. A cancelled poll commits
        nothing, so the next start simply polls again."""
        # A job submitted just before the scheduler paused has not started yet; one turn of
        # the loop lets it register here instead of being cancelled by the scheduler later.
        await asyncio.sleep(0)
        if self._running:
            await asyncio.wait(set(self._running), timeout=max(deadline - time.monotonic(), 0))
        late = [task for task in self._running.values() if not task.done()]
        for task in late:
            task.cancel()
        if self._running:
            # Each job returns as soon as its poll has unwound (a loop turn or two); waiting
            # for the jobs, not only the polls, leaves the scheduler nothing to cancel.
            await asyncio.wait(set(self._running))
        return len(late)


_STATES = {STATE_RUNNING: "running", STATE_PAUSED: "paused", STATE_STOPPED: "stopped"}


def scheduler_state(scheduler: AsyncIOScheduler | None) -> str:
    """ "running", "paused", "stopped" or "not started", for health reports."""
    if scheduler is None:
        return "not started"
    return _STATES.get(scheduler.state, str(scheduler.state))


def next_run_time(scheduler: AsyncIOScheduler, job_id: str) -> datetime | None:
    """When the job runs next; None for an unknown job or a stopped scheduler."""
    job = scheduler.get_job(job_id)
    when: datetime | None = None if job is None else job.next_run_time
    return when
