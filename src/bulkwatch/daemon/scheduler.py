"""APScheduler 3.x: one interval job per store endpoint, first runs spread over the interval."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Collection, Coroutine, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import structlog
from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_MISSED, JobExecutionEvent
from apscheduler.jobstores.base import JobLookupError
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.schedulers.base import STATE_PAUSED, STATE_RUNNING, STATE_STOPPED
from apscheduler.triggers.interval import IntervalTrigger

from bulkwatch.model import EndpointKey
from bulkwatch.telemetry.metrics import Metrics

__all__ = [
    "OWNED_SPREAD_S",
    "InflightJobs",
    "PollJob",
    "add_jobs",
    "build_scheduler",
    "remove_jobs",
    "scheduler_state",
]

log = structlog.get_logger("bulkwatch")

# Spread first runs over at most this long, so a big fleet starts polling promptly while
# 10,000 jobs never fall due on the same instant (that blocks the loop; docs/performance.md).
MAX_SPREAD_S = 60.0
# Stores a replica takes over were polled by another until a lease expired: their first
# polls are spread over a few seconds only, so none of them waits long.
OWNED_SPREAD_S = 5.0


@dataclass(frozen=True, slots=True)
class PollJob:
    key: EndpointKey
    interval: float
    jitter: float
    run: Callable[[], Awaitable[None]]


def build_scheduler(jobs: Sequence[PollJob], now: datetime, metrics: Metrics) -> AsyncIOScheduler:
    """A scheduler holding one job per endpoint, counting (in `metrics`) and logging the jobs
    it missed or that failed; call `.start()` inside the running loop."""
    scheduler = AsyncIOScheduler(timezone="UTC")
    add_jobs(scheduler, jobs, now)

    def listener(event: JobExecutionEvent) -> None:
        if event.code == EVENT_JOB_MISSED:
            metrics.scheduler_missed.inc()
            log.warning("poll missed its slot", job=event.job_id)
        elif event.code == EVENT_JOB_ERROR:
            metrics.scheduler_failed.inc()
            log.error("poll job failed", job=event.job_id, error=repr(event.exception))

    scheduler.add_listener(listener, EVENT_JOB_MISSED | EVENT_JOB_ERROR)
    return scheduler


def add_jobs(
    scheduler: AsyncIOScheduler,
    jobs: Sequence[PollJob],
    now: datetime,
    *,
    spread: float = MAX_SPREAD_S,
) -> None:
    """Add one interval job per endpoint, their first runs spread over the interval (at most
    `spread` seconds); a job of the same endpoint is replaced."""
    n = max(len(jobs), 1)
    for i, job in enumerate(jobs):
        offset = min(job.interval, spread) * i / n
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

    Each poll runs as a task of its own so shutdown (or a replica giving up a store) can
    cancel it without APScheduler seeing a failed job (it would log an error with a
    traceback): a job whose poll was cancelled by `finish` or `cancel` returns normally. A job
    cancelled itself still raises.
    """

    def __init__(self) -> None:
        # job task -> (its poll's task, the endpoint it polls)
        self._running: dict[asyncio.Task[Any], tuple[asyncio.Task[Any], EndpointKey | None]] = {}

    def __len__(self) -> int:
        return len(self._running)

    def wrap(
        self, poll: Callable[[], Awaitable[Any]], name: str, key: EndpointKey | None = None
    ) -> Callable[[], Coroutine[Any, Any, None]]:
        """The job function for APScheduler: runs `poll()` (of endpoint `key`) as a tracked
        task."""

        async def run() -> None:
            job = asyncio.current_task()
            task = asyncio.ensure_future(poll())
            task.set_name(name)
            if job is not None:
                self._running[job] = (task, key)
            try:
                await task
            except asyncio.CancelledError:
                if task.cancelled() and not (job and job.cancelling()):
                    return  # cancelled by `finish` or `cancel`: it records nothing, by design
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
        late = [task for task, _ in self._running.values() if not task.done()]
        for task in late:
            task.cancel()
        if self._running:
            # Each job returns as soon as its poll has unwound (a loop turn or two); waiting
            # for the jobs, not only the polls, leaves the scheduler nothing to cancel.
            await asyncio.wait(set(self._running))
        return len(late)

    def cancel(self, stores: Collection[str]) -> int:
        """Cancel the running polls of these stores' endpoints (not the caller's own: a poll
        that learns it lost its store returns by itself); return how many were cancelled."""
        me = asyncio.current_task()
        polls = [
            task
            for task, key in self._running.values()
            if key is not None and key.store in stores and task is not me and not task.done()
        ]
        for task in polls:
            task.cancel()
        return len(polls)


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
