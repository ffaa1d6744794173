"""Replicas in one test process: engines with `state.replicas` on one PostgreSQL schema, each
serving in a task of its own (scheduler, lease keeper, dispatcher), as separate processes
would, and waiting for what they converge to."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from bulkwatch.config import Settings
from bulkwatch.daemon.engine import Engine
from bulkwatch.daemon.leases import LeaseKeeper
from bulkwatch.telemetry.metrics import Metrics
from helpers.support import served, settings_for

TTL = 3.0


def replica_settings(
    tmp_path: Path,
    stores: list[dict[str, Any]],
    url: str,
    replica: str,
    *,
    ttl: float = TTL,
    replicas: bool = True,
) -> Settings:
    """Settings of replica `replica` (its config in a folder of its own) on the state `url`."""
    folder = tmp_path / replica
    folder.mkdir(exist_ok=True)
    state: dict[str, Any] = {"url": url, "pool_size": 3, "replicas": replicas}
    if replicas:
        state |= {"lease_ttl": ttl, "replica_id": replica}
    return settings_for(folder, stores, state=state)


def keeper(engine: Engine) -> LeaseKeeper:
    assert engine.keeper is not None
    return engine.keeper


def scheduled(engine: Engine) -> set[str]:
    """The stores the engine's scheduler has poll jobs for."""
    assert engine.scheduler is not None
    return {job.id.split("/")[0] for job in engine.scheduler.get_jobs()}


def sample(engine: Engine, name: str, **labels: str) -> float:
    return engine.metrics.registry.get_sample_value(name, labels) or 0.0


@asynccontextmanager
async def serving(settings: Settings) -> AsyncIterator[Engine]:
    """An engine of `settings`, serving from its ready callback until the block ends (then
    stopped as SIGTERM stops it)."""
    async with (
        Engine(settings, metrics=Metrics(CollectorRegistry())) as engine,
        served(engine, grace=1, stop_within=15),
    ):
        yield engine


async def until(check: Callable[[], bool], what: str, within: float = 15.0) -> None:
    """Wait until `check()` holds; fail naming `what` when it does not `within` seconds."""
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, f"not within {within:g}s: {what}"
        await asyncio.sleep(0.05)
