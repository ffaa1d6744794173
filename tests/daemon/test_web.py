"""/metrics, /healthz and /readyz on a real port, over a real engine polling the simulator."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_MISSED, JobExecutionEvent
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from bulkwatch.daemon.engine import Engine
from bulkwatch.daemon.health import HEARTBEAT_STALE_S, liveness
from bulkwatch.daemon.web import start_web
from bulkwatch.model import TaskStatus
from bulkwatch.simulator import Simulator, make_stores, run_simulator
from bulkwatch.telemetry.metrics import EVENT_TYPES, Metrics
from helpers.clock import ManualClock
from helpers.support import bound_port, served, settings_for

# Every metric family of the documented contract, plus the scheduler counters (name without
# `_total`).
DOCUMENTED_FAMILIES = {
    "bulkwatch_polls": "counter",
    "bulkwatch_poll_duration_seconds": "histogram",
    "bulkwatch_api_errors": "counter",
    "bulkwatch_last_success_timestamp_seconds": "gauge",
    "bulkwatch_store_up": "gauge",
    "bulkwatch_tasks": "gauge",
    "bulkwatch_transitions": "counter",
    "bulkwatch_events": "counter",
    "bulkwatch_deliveries": "counter",
    "bulkwatch_delivery_duration_seconds": "histogram",
    "bulkwatch_outbox_pending": "gauge",
    "bulkwatch_outbox_dead": "gauge",
    "bulkwatch_build_info": "gauge",
    "bulkwatch_poll_interval_seconds": "gauge",
    "bulkwatch_stores_configured": "gauge",
    "bulkwatch_scheduler_jobs_missed": "counter",
    "bulkwatch_scheduler_jobs_failed": "counter",
}
INTERVAL = 30.0


@dataclass
class Rig:
    sim: Simulator
    engine: Engine
    url: str
    http: aiohttp.ClientSession
    clock: ManualClock

    async def get(self, path: str) -> tuple[int, str, Any]:
        async with self.http.get(self.url + path) as resp:
            text = await resp.text()
            body = await resp.json() if resp.content_type == "application/json" else None
            return resp.status, resp.headers["Content-Type"], body if body is not None else text


@asynccontextmanager
async def rig(tmp_path: Path, **extra: Any) -> AsyncIterator[Rig]:
    clock = ManualClock()
    async with run_simulator(stores=make_stores(1, 1), clock=clock.timestamp) as sim:
        settings = settings_for(
            tmp_path,
            sim.store_configs(),
            notifiers=[{"name": "console", "type": "log"}],
            defaults={"interval": INTERVAL, "jitter": 0, "timeout": 2},
            **extra,
        )
        async with (
            Engine(settings, metrics=Metrics(CollectorRegistry()), clock=clock) as engine,
            aiohttp.ClientSession() as http,
        ):
            runner = await start_web(engine, "127.0.0.1", 0)
            try:
                url = f"http://127.0.0.1:{bound_port(runner)}"
                yield Rig(sim, engine, url, http, clock)
            finally:
                await runner.cleanup()


def families(text: str) -> dict[str, Any]:
    return {f.name: f for f in text_string_to_metric_families(text)}


# --- /metrics ----------------------------------------------------------------------------------


async def test_metrics_exposes_every_design_family_in_the_text_format(tmp_path: Path) -> None:
    async with rig(tmp_path) as r:
        r.sim.create_task("lazza-1", "lz-secret-task-id", TaskStatus.RUNNING)
        assert await r.engine.poll_all_once()
        await r.engine.deliver_due_once()
        status, content_type, text = await r.get("/metrics")

    assert status == 200
    assert content_type.startswith("text/plain; version=0.0.4")
    found = families(text)
    for name, kind in DOCUMENTED_FAMILIES.items():
        assert name in found, name
        assert found[name].type == kind, name
    assert "process_resident_memory_bytes" in found
    assert "lz-secret-task-id" not in text  # never a task id as a label


async def test_metrics_hide_created_series(tmp_path: Path) -> None:
    async with rig(tmp_path) as r:
        assert await r.engine.poll_all_once()
        _, _, text = await r.get("/metrics")
    assert "bulkwatch_polls_total" in text
    assert "_created" not in text


async def test_every_configured_label_set_exists_before_the_first_poll(tmp_path: Path) -> None:
    async with rig(tmp_path) as r:
        _, _, text = await r.get("/metrics")
    samples = {
        (s.name, frozenset(s.labels.items())): s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
    }

    def value(name: str, **labels: str) -> float:
        return samples[(name, frozenset(labels.items()))]

    for store, platform in (("lazza-1", "shoplazza"), ("line-1", "shopline")):
        for outcome in ("ok", "error", "skipped"):
            polls = value("bulkwatch_polls_total", outcome=outcome, platform=platform, store=store)
            assert polls == 0
        assert value("bulkwatch_poll_interval_seconds", platform=platform, store=store) == INTERVAL
        assert value("bulkwatch_store_up", platform=platform, store=store) == 1
    for event_type in EVENT_TYPES:
        assert value("bulkwatch_events_total", type=event_type) == 0
    for outcome in ("delivered", "retry", "dead"):
        assert value("bulkwatch_deliveries_total", notifier="console", outcome=outcome) == 0
    assert value("bulkwatch_outbox_dead", notifier="console") == 0
    assert value("bulkwatch_stores_configured") == 2
    # One daemon without replicas owns every store: the unowned-stores alert stays quiet.
    assert value("bulkwatch_lease_stores_owned") == 2


async def test_poll_latency_lands_in_buckets_sized_for_api_calls(tmp_path: Path) -> None:
    async with rig(tmp_path) as r:
        assert await r.engine.poll_all_once()
        _, _, text = await r.get("/metrics")
    histogram = families(text)["bulkwatch_poll_duration_seconds"]
    bounds = sorted(
        float(s.labels["le"])
        for s in histogram.samples
        if s.name.endswith("_bucket") and s.labels["platform"] == "shoplazza"
    )
    assert bounds[0] <= 0.01
    assert 10.0 <= bounds[-2] <= 60.0  # the last finite bound covers a timed-out request
    count = next(
        s.value
        for s in histogram.samples
        if s.name.endswith("_count") and s.labels["platform"] == "shoplazza"
    )
    assert count == 1


# --- /healthz ----------------------------------------------------------------------------------


async def test_healthz_fails_until_the_scheduler_runs_then_passes(tmp_path: Path) -> None:
    async with rig(tmp_path) as r:
        status, content_type, before = await r.get("/healthz")
        assert status == 503
        assert content_type.startswith("application/json")
        assert "scheduler is not started" in before["problems"]

        async with served(r.engine, grace=2):
            status, _, during = await r.get("/healthz")
        after_status, _, after = await r.get("/healthz")

    assert status == 200, during
    assert during["status"] == "ok"
    assert during["problems"] == []
    assert during["scheduler"] == "running"
    assert during["heartbeat_age_s"] is not None
    assert after_status == 503
    assert after["problems"] == ["scheduler is stopped"]


async def test_liveness_fails_when_the_heartbeat_goes_stale(tmp_path: Path) -> None:
    async with rig(tmp_path) as r, served(r.engine, grace=2):
        beat = r.engine.status.heartbeat_at
        assert beat is not None
        fresh = liveness(r.engine.status, now=beat + 1)
        stale = liveness(r.engine.status, now=beat + HEARTBEAT_STALE_S + 5)
    assert fresh.ok
    assert not stale.ok
    assert stale.problems == [f"event loop heartbeat is {HEARTBEAT_STALE_S + 5:.0f}s old"]


async def test_a_failed_scheduler_job_is_counted(tmp_path: Path) -> None:
    async with rig(tmp_path) as r, served(r.engine, grace=2):
        scheduler = r.engine.scheduler
        assert scheduler is not None
        failed = asyncio.Event()

        def seen(event: JobExecutionEvent) -> None:
            failed.set()

        async def broken() -> None:
            raise RuntimeError("a job that escaped its own error handling")

        scheduler.add_listener(seen, EVENT_JOB_ERROR)
        scheduler.add_job(broken, id="broken")
        async with asyncio.timeout(5):
            await failed.wait()
        _, _, text = await r.get("/metrics")

    (sample,) = families(text)["bulkwatch_scheduler_jobs_failed"].samples
    assert sample.value == 1


async def test_a_missed_scheduler_job_is_counted(tmp_path: Path) -> None:
    async with rig(tmp_path) as r, served(r.engine, grace=2):
        scheduler = r.engine.scheduler
        assert scheduler is not None
        missed = asyncio.Event()

        def seen(event: JobExecutionEvent) -> None:
            missed.set()

        async def late() -> None:  # pragma: no cover - never runs: its slot is long gone
            raise AssertionError("a missed job must not run")

        scheduler.add_listener(seen, EVENT_JOB_MISSED)
        # Due 30 s ago with 1 s of grace: what a poll finds after the loop was held that long.
        past = datetime.now(UTC) - timedelta(seconds=30)
        scheduler.add_job(late, "date", run_date=past, misfire_grace_time=1, id="late")
        async with asyncio.timeout(5):
            await missed.wait()
        _, _, text = await r.get("/metrics")

    (sample,) = families(text)["bulkwatch_scheduler_jobs_missed"].samples
    assert sample.value == 1


# --- /readyz -----------------------------------------------------------------------------------


async def test_readyz_is_ready_at_start_and_after_every_endpoint_polled(tmp_path: Path) -> None:
    async with rig(tmp_path) as r:
        at_start, _, start_body = await r.get("/readyz")
        assert await r.engine.poll_all_once()
        r.clock.advance(INTERVAL)
        polled, _, body = await r.get("/readyz")

    assert at_start == 200, start_body  # first polls are still being spread over the interval
    assert start_body["checks"]["polls"]["polled"] == 0
    assert polled == 200, body
    assert body["status"] == "ready"
    assert body["problems"] == []
    assert body["checks"]["state_store"] == {"ok": True}
    assert body["checks"]["config"]["stores"] == 2
    assert body["checks"]["polls"]["polled"] == body["checks"]["polls"]["endpoints"] == 3


async def test_readyz_names_endpoints_never_polled_after_two_intervals(tmp_path: Path) -> None:
    async with rig(tmp_path) as r:
        r.clock.advance(3 * INTERVAL)
        status, _, body = await r.get("/readyz")
    assert status == 503
    assert body["status"] == "not ready"
    assert body["problems"] == ["3 endpoint(s) never polled"]
    assert sorted(body["checks"]["polls"]["never_polled"]) == [
        "lazza-1/tasks",
        "line-1/MUTATION",
        "line-1/QUERY",
    ]


async def test_readyz_names_endpoints_not_polled_within_two_intervals(tmp_path: Path) -> None:
    async with rig(tmp_path) as r:
        assert await r.engine.poll_all_once()
        r.clock.advance(3 * INTERVAL)
        status, _, body = await r.get("/readyz")
    assert status == 503
    assert body["problems"] == ["3 endpoint(s) not polled within 2 intervals"]
    assert len(body["checks"]["polls"]["stale"]) == 3


async def test_readyz_counts_a_failed_poll_as_polled(tmp_path: Path) -> None:
    # A store that keeps failing is the store's problem, not the daemon's: store_up and the
    # StoreDown alert report it; restarting bulkwatch would not help.
    async with rig(tmp_path) as r:
        r.sim.inject(503, store="lazza-1", times=None)
        assert not await r.engine.poll_all_once()
        status, _, body = await r.get("/readyz")
    assert status == 200, body


async def test_readyz_fails_while_the_state_store_is_unreachable(tmp_path: Path) -> None:
    async with rig(tmp_path) as r:
        assert await r.engine.poll_all_once()
        await r.engine.store.close()
        status, _, body = await r.get("/readyz")
    assert status == 503
    (problem,) = body["problems"]
    assert problem.startswith("state store unreachable: ")
    assert body["checks"]["state_store"]["ok"] is False


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/metrics"])
async def test_every_endpoint_answers_head_without_a_body(tmp_path: Path, path: str) -> None:
    async with rig(tmp_path) as r, r.http.head(r.url + path) as resp:
        body = await resp.read()
    assert resp.status in (200, 503)
    assert body == b""


async def test_start_web_reports_a_port_in_use(tmp_path: Path) -> None:
    async with rig(tmp_path) as r:
        taken = int(r.url.rsplit(":", 1)[1])
        with pytest.raises(OSError, match="address already in use"):
            await start_web(r.engine, "127.0.0.1", taken)
