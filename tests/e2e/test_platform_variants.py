"""The lifecycle matrix: the daemon against every platform variant the simulator plays.

Real sockets (simulator, engine, webhook receiver), real SQLite, the test's own clock. One
scripted lifecycle per variant: every transition of every task must be reported once, at the
poll that first sees it, and nothing else (no event from an odd answer, none twice).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from bulkwatch.daemon.engine import Engine
from bulkwatch.model import Platform, TaskStatus
from bulkwatch.simulator import SINGLE_VARIANTS, Simulator, StoreSpec, Variants, run_simulator
from bulkwatch.telemetry.metrics import Metrics
from helpers.clock import ManualClock
from helpers.reliability_support import cycle, sample
from helpers.support import settings_for
from helpers.webhook_receiver import Receiver, running_receiver

STORES = [
    StoreSpec("lazza-1", Platform.SHOPLAZZA),
    StoreSpec("line-1", Platform.SHOPLINE, operation_types=("QUERY",)),
    StoreSpec("line-2", Platform.SHOPLINE, operation_types=("QUERY",)),  # never shows a task
]
Seen = set[tuple[str, str, str | None, str | None]]


@asynccontextmanager
async def rig(
    tmp_path: Path, variants: Variants
) -> AsyncIterator[tuple[Simulator, Receiver, Engine]]:
    clock = ManualClock()
    async with (
        run_simulator(stores=STORES, seed=3, clock=clock.timestamp, variants=variants) as sim,
        running_receiver() as receiver,
    ):
        configs = sim.store_configs()
        configs[0].update(page_limit=2, max_pages=2)  # a poll reads 4 tasks: lists get longer
        settings = settings_for(tmp_path, configs, receiver.url, defaults={"down_after": 1})
        async with Engine(settings, metrics=Metrics(CollectorRegistry()), clock=clock) as engine:
            yield sim, receiver, engine


class Script:
    """Runs one poll of every store at a time and returns the events it delivered."""

    def __init__(self, sim: Simulator, receiver: Receiver, engine: Engine) -> None:
        self.sim, self.receiver, self.engine = sim, receiver, engine
        self.delivered = 0

    async def step(self) -> Seen:
        await cycle(self.engine)
        new = self.receiver.events[self.delivered :]
        self.delivered = len(self.receiver.events)
        return {
            (e["type"], e["subject"], e["data"].get("previous_status"), e["data"].get("status"))
            for e in new
        }


def task(
    kind: str, subject: str, previous: str | None, status: str
) -> tuple[str, str, str | None, str | None]:
    return (f"bulkwatch.task.{kind}", subject, previous, status)


def store(kind: str, name: str) -> tuple[str, str, None, None]:
    return (f"bulkwatch.store.{kind}", name, None, None)


@pytest.mark.parametrize("variants", SINGLE_VARIANTS.values(), ids=SINGLE_VARIANTS.keys())
async def test_every_transition_once_and_nothing_false(tmp_path: Path, variants: Variants) -> None:
    async with rig(tmp_path, variants) as (sim, receiver, engine):
        run = Script(sim, receiver, engine)
        if variants.redirect == "cross-host":
            await _refused_everywhere(run)
            return
        failed = "UNKNOWN"  # no documented code: reported as such, naming the raw value
        lazza, line = sim.store("lazza-1"), sim.store("line-1")
        tokens = (lazza.token, line.token)

        # A wrong token before any successful poll: each store down at once, saying why.
        for st in (lazza, line, sim.store("line-2")):
            st.set_token("renewed-elsewhere")
        assert await run.step() == {store("down", s.name) for s in sim.stores.values()}
        down = {e["data"]["store"]: e["data"]["reason"] for e in receiver.events}
        assert "token" in down["lazza-1"]
        if variants.auth_failure == "400":
            assert "domain" in down["lazza-1"]
        lazza.set_token(tokens[0])
        line.set_token(tokens[1])
        sim.store("line-2").set_token("sim-line-2")

        # History before the first successful poll: longer than a poll reads, finished or
        # in an undocumented status: recorded silently.
        for n in range(1, 6):
            sim.create_task("lazza-1", f"h{n}", TaskStatus.COMPLETED)
        sim.create_task("lazza-1", "u1", 7)
        sim.create_task("line-1", "done0", TaskStatus.COMPLETED)
        assert await run.step() == {store("up", s) for s in ("lazza-1", "line-1", "line-2")}

        sim.create_task("lazza-1", "q1")
        sim.create_task("line-1", "r1")  # replaces a finished task: nothing to say about it
        assert await run.step() == {
            task("created", "lazza-1/q1", None, "CREATED"),
            task("created", "line-1/r1", None, "CREATED"),
        }
        sim.advance("lazza-1", "q1")
        sim.advance("line-1", "r1")
        assert await run.step() == {
            task("running", "lazza-1/q1", "CREATED", "RUNNING"),
            task("running", "line-1/r1", "CREATED", "RUNNING"),
        }
        sim.create_task("lazza-1", "q2", TaskStatus.RUNNING)
        sim.clear_current("line-1")  # the running task vanishes with nothing in its place
        assert await run.step() == {task("running", "lazza-1/q2", None, "RUNNING")}
        assert await run.step() == set()

        sim.advance("lazza-1", "q1")
        sim.advance("lazza-1", "q2", fail=True)
        sim.create_task("line-1", "r1", TaskStatus.RUNNING)  # it comes back: no news
        assert await run.step() == {
            task("completed", "lazza-1/q1", "RUNNING", "COMPLETED"),
            task(failed.lower(), "lazza-1/q2", "RUNNING", failed),
        }
        unknown = next(e for e in receiver.events if e["type"].endswith("unknown"))["data"]
        assert unknown["raw_status"] == variants.failed_code
        assert "status_map" in unknown["hint"]

        sim.clear_current("line-1")
        assert await run.step() == set()
        sim.create_task("line-1", "r2", TaskStatus.RUNNING)  # a successor: now it is replaced
        assert await run.step() == {
            task("superseded", "line-1/r1", None, "RUNNING"),
            task("running", "line-1/r2", None, "RUNNING"),
        }

        # New tasks keep arriving at the new end, whichever it is, across exact multiples of
        # the page size; each is seen and followed to its end.
        for n in range(3, 7):
            sim.create_task("lazza-1", f"q{n}")
            assert await run.step() == {task("created", f"lazza-1/q{n}", None, "CREATED")}
            sim.advance("lazza-1", f"q{n}")
            sim.advance("lazza-1", f"q{n}")
            assert await run.step() == {task("completed", f"lazza-1/q{n}", "CREATED", "COMPLETED")}

        assert len({e["id"] for e in receiver.events}) == len(receiver.events)
        assert sim.leaked_tokens == 0
        notes = {(n[0], n[2]) for n in await engine.store.list_notes()}
        assert ("lazza-1", "list") in notes  # 14 tasks, 4 read a poll: said, not silent
        assert sample(engine, "bulkwatch_list_truncated", platform="shoplazza", store="lazza-1")
        unverified = (variants.no_task or "object").startswith("404")
        assert (("line-2", "no_task") in notes) is unverified
        labels: dict[str, Any] = {"platform": "shopline", "store": "line-2", "endpoint": "QUERY"}
        assert sample(engine, "bulkwatch_endpoint_unverified", **labels) == int(unverified)


async def _refused_everywhere(run: Script) -> None:
    """A redirect to another host: every store down, saying so; no token sent there."""
    run.sim.create_task("lazza-1", "q1", TaskStatus.RUNNING)
    run.sim.create_task("line-1", "r1", TaskStatus.RUNNING)
    assert await run.step() == {store("down", s) for s in ("lazza-1", "line-1", "line-2")}
    assert all("another host" in e["data"]["reason"] for e in run.receiver.events)
    assert await run.step() == set()
    assert run.sim.leaked_tokens == 0
