"""Helpers shared by the reliability tests: a fast rig on the manual clock, metric and state
reads."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from bulkwatch.daemon.engine import Engine
from bulkwatch.model import TrackedTask
from bulkwatch.simulator import Simulator, StoreSpec, run_simulator
from bulkwatch.telemetry.metrics import Metrics
from helpers.clock import ManualClock
from helpers.support import settings_for
from helpers.webhook_receiver import Receiver, running_receiver


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
