"""SIGTERM while polls and deliveries are in flight: exit 0 within the grace period, lose
nothing, and deliver what was left pending at the next start."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

from bulkwatch.model import TaskStatus
from bulkwatch.simulator import make_stores, run_simulator
from helpers.crash_support import Daemon, json_logs, outbox_left, write_config
from helpers.webhook_receiver import Reply, running_receiver

GRACE = 1.5


async def test_sigterm_mid_poll_and_mid_delivery_exits_0_in_grace_and_loses_nothing(
    tmp_path: Path,
) -> None:
    async with run_simulator(stores=make_stores(1, 1), seed=3) as sim, running_receiver() as rec:
        rec.default = Reply(204)
        config, db = write_config(
            tmp_path, sim, rec, shutdown_grace=GRACE, defaults={"interval": 0.2, "timeout": 30}
        )
        sim.create_task("lazza-1", "a", TaskStatus.RUNNING)
        sim.create_task("line-1", "b", TaskStatus.RUNNING, operation_type="QUERY")
        log = tmp_path / "daemon.log"
        rec.hold = asyncio.Event()  # every delivery hangs until released
        daemon = await Daemon.start(config, log)
        try:
            await rec.wait_for_requests(1, within=20)  # a delivery is in flight
            before = sim.request_count("line-1")
            sim.inject("slow", store="line-1", delay=30, times=None)  # polls hang as well
            async with asyncio.timeout(10):
                await sim.wait_for_requests("line-1", before + 1)

            started = time.monotonic()
            code = await daemon.terminate(within=GRACE + 5)
            took = time.monotonic() - started
        finally:
            await daemon.ensure_dead()
            rec.hold.set()
            rec.hold = None
        assert code == 0
        assert took < GRACE + 1.0, took  # one grace period for polls and deliveries together
        logs = json_logs(log)
        assert logs[-1]["event"] == "bulkwatch stopped"
        assert not [e for e in logs if e.get("level") == "error"], logs
        assert "Traceback" not in log.read_text(encoding="utf-8")
        held = {json.loads(r.body)["id"] for r in rec.requests}
        assert outbox_left(db)  # the held deliveries are still pending, not lost

        sim.clear_faults()
        daemon = await Daemon.start(config, log)
        try:
            await rec.wait_for_requests(len(rec.requests) + 2, within=20)
            async with asyncio.timeout(10):
                while outbox_left(db):  # noqa: ASYNC110 - no event: another process marks rows
                    await asyncio.sleep(0.05)
            assert await daemon.terminate(within=GRACE + 5) == 0
        finally:
            await daemon.ensure_dead()
        seen = {
            (e["id"], e["type"], e["subject"])
            for e in map(json.loads, (r.body for r in rec.requests))
        }
        assert {event_id for event_id, _, _ in seen} >= held
        # Two task.running events, each possibly sent twice, but always under the same id.
        assert sorted((t, s) for _, t, s in seen) == [
            ("bulkwatch.task.running", "lazza-1/a"),
            ("bulkwatch.task.running", "line-1/b"),
        ]
