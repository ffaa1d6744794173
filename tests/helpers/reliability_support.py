"""Helpers shared by the reliability tests: a fast rig, a manual clock, metric and state reads."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from bulkwatch.daemon.engine import Engine
from bulkwatch.model import TrackedTask
from bulkwatch.simulator import Simulator, StoreSpec, run_simulator
from bulkwatch.telemetry.metrics import Metrics
from helpers.support import settings_for
from helpers.webhook_receiver import Receiver, running_receiver


@dataclass
class ManualClock:
    """The wall clock of the engine and the simulator alike, moved by the test.

    Both read it, so every date a test sees (a task's creation, a stall, an expiry) follows from
    it and never from today's date.
    """

    now: datetime = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def timestamp(self) -> float:
        """The same instant for the simulator, which counts POSIX seconds."""
        return self.now.timestamp()

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@asynccontextmanager
async def rig(
    tmp_path: Path,
    stores: list[StoreSpec],
    *,
    clock: ManualClock | None = None,
    **extra: Any,
) -> AsyncIterator[tuple[Simulator, Receiver, Engine]]:
    """Simulator, webhook receiver and an engine watching every simulated store."""
    sim_clock = None if clock is None else clock.timestamp
    async with (
        run_simulator(stores=stores, seed=11, clock=sim_clock) as sim,
        running_receiver() as receiver,
    ):
        settings = settings_for(tmp_path, sim.store_configs(), receiver.url, **extra)
        kwargs: dict[str, Any] = {} if clock is None else {"clock": clock}
        async with Engine(settings, metrics=Metrics(CollectorRegistry()), **kwargs) as engine:
            yield sim, receiver, engine


async def cycle(engine: Engine) -> bool:
    """One explicit poll of every endpoint (backoff or not), then every due delivery once."""
    ok = await engine.poll_all_once()
    await engine.deliver_due_once()
    return ok


def sample(engine: Engine, name: str, **labels: str) -> float:
    """A metric's current value, 0 when the series does not exist yet."""
    value = engine.metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


def states(tasks: list[TrackedTask]) -> dict[str, tuple[str, object]]:
    """task id -> (status, raw status): what a state change would change."""
    return {t.task_id: (t.snapshot.status.value, t.snapshot.raw_status) for t in tasks}
