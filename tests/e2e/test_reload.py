"""SIGHUP reloads the config of a running `bulkwatch run`, as Prometheus and Alertmanager do.

A real daemon process, the simulator and a webhook receiver in the test's loop, a real SIGHUP.
Stores and notifiers are added, removed and changed without a restart and without a missed
poll of the store left alone; an invalid config keeps the running one, with one error line.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families
from structlog.testing import capture_logs

from bulkwatch.daemon.engine import Engine
from bulkwatch.simulator import Simulator, make_stores, run_simulator
from bulkwatch.telemetry.metrics import Metrics
from helpers.crash_support import Daemon, json_logs
from helpers.support import free_port, settings_for
from helpers.webhook_receiver import Receiver, running_receiver

INTERVAL = 0.2


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    async with run_simulator(stores=make_stores(2, 1), seed=3) as s:
        yield s


@pytest.fixture
async def receivers() -> AsyncIterator[tuple[Receiver, Receiver]]:
    async with running_receiver("/first") as first, running_receiver("/second") as second:
        yield first, second


def _write(path: Path, data: dict[str, Any]) -> None:
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")


async def _metrics(http: aiohttp.ClientSession, url: str) -> dict[tuple[str, str], float]:
    """(name, store label) -> value of every sample."""
    async with http.get(url) as resp:
        text = await resp.text()
    return {
        (sample.name, sample.labels.get("store", "")): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _event(request: Any) -> dict[str, Any]:
    parsed: dict[str, Any] = json.loads(request.body)
    return parsed


async def _log_line(log: Path, event: str, within: float = 15.0) -> None:
    for _ in range(round(within / 0.05)):
        if any(e["event"] == event for e in json_logs(log)):
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"no {event!r} in the log within {within}s")


async def _watch_polls(sim: Simulator, store: str, seen: list[float]) -> None:
    """Note the moment of each new request to `store` (sampled every 10 ms)."""
    last = sim.request_count(store)
    while True:
        await asyncio.sleep(0.01)
        if (now := sim.request_count(store)) != last:
            last = now
            seen.append(time.monotonic())


async def test_sighup_reloads_stores_and_notifiers_without_a_restart(
    tmp_path: Path, sim: Simulator, receivers: tuple[Receiver, Receiver]
) -> None:
    first, second = receivers
    stores = {s["name"]: s for s in sim.store_configs()}
    port = free_port()
    config = tmp_path / "config.yaml"
    base: dict[str, Any] = {
        "instance": "reload-test",
        "state": {"url": f"sqlite:///{tmp_path / 'state.db'}"},
        "server": {"enabled": True, "host": "127.0.0.1", "port": port},
        "defaults": {"interval": INTERVAL, "jitter": 0, "rate_limit": 1000, "burst": 40},
        "retry": {"initial": 0.05, "max_delay": 0.2},
        "delivery": {"idle_interval": 0.05},
        "log": {"level": "info", "format": "json"},
    }
    hook = {"name": "first", "type": "webhook", "url": first.url}
    _write(config, {**base, "stores": [stores["lazza-1"], stores["line-1"]], "notifiers": [hook]})
    log = tmp_path / "daemon.log"
    metrics_url = f"http://127.0.0.1:{port}/metrics"
    line_polls: list[float] = []
    daemon = await Daemon.start(config, log)
    watcher = asyncio.create_task(_watch_polls(sim, "line-1", line_polls))
    try:
        async with aiohttp.ClientSession() as http:
            await _log_line(log, "bulkwatch started")
            started = await _metrics(http, metrics_url)
            sim.create_task("lazza-1", "before", "RUNNING")
            await first.wait_for_requests(1, within=10)

            # lazza-1 out, lazza-2 in, line-1 untouched; a second notifier, the first one
            # changed (it now only wants completions).
            _write(
                config,
                {
                    **base,
                    "stores": [stores["line-1"], stores["lazza-2"]],
                    "notifiers": [
                        {**hook, "events": ["bulkwatch.task.completed"]},
                        {"name": "second", "type": "webhook", "url": second.url},
                    ],
                },
            )
            reload_at = time.monotonic()
            daemon.proc.send_signal(signal.SIGHUP)
            await _log_line(log, "config reloaded")
            polls_of_lazza_1 = sim.request_count("lazza-1")
            sim.create_task("lazza-2", "running", "RUNNING")
            await second.wait_for_requests(1, within=10)  # lazza-2 is polled, and baselined
            sim.create_task("lazza-2", "done", "COMPLETED")
            await second.wait_for_requests(2, within=10)
            await first.wait_for_requests(2, within=10)
            await asyncio.sleep(3 * INTERVAL)
            assert sim.request_count("lazza-1") <= polls_of_lazza_1 + 1  # one may be in flight
            reloaded = await _metrics(http, metrics_url)

            # An invalid config: the running one stays, with one error line.
            config.write_text("stores: [{name: 'no spaces allowed', platform: shoplazza}]\n")
            daemon.proc.send_signal(signal.SIGHUP)
            await _log_line(log, "config reload failed; the running config stays")
            refused = await _metrics(http, metrics_url)
            before_line_2 = sim.request_count("lazza-2")
            await asyncio.sleep(3 * INTERVAL)
            assert sim.request_count("lazza-2") > before_line_2, "the old config still polls"
        assert daemon.proc.returncode is None, "SIGHUP did not end the daemon"
        assert await daemon.terminate(within=15) == 0
    finally:
        watcher.cancel()
        await daemon.ensure_dead()

    got = [(e["subject"], e["type"]) for e in map(_event, first.requests)]
    assert got == [
        ("lazza-1/before", "bulkwatch.task.running"),
        ("lazza-2/done", "bulkwatch.task.completed"),  # the changed filter applies
    ]
    got = sorted((e["subject"], e["type"]) for e in map(_event, second.requests))
    assert got == [
        ("lazza-2/done", "bulkwatch.task.completed"),
        ("lazza-2/running", "bulkwatch.task.running"),
    ]
    # Metrics: the reload is shown; lazza-1's series are gone, lazza-2's exist.
    ok, at = (
        "bulkwatch_config_last_reload_successful",
        ("bulkwatch_config_last_reload_success_timestamp_seconds"),
    )
    assert started[(ok, "")] == 1
    assert reloaded[(ok, "")] == 1
    assert reloaded[(at, "")] > started[(at, "")]
    assert refused[(ok, "")] == 0
    assert refused[(at, "")] == reloaded[(at, "")]
    assert ("bulkwatch_store_up", "lazza-1") in started
    assert ("bulkwatch_store_up", "lazza-1") not in reloaded
    assert reloaded[("bulkwatch_store_up", "lazza-2")] == 1
    # line-1 was polled on its schedule throughout: no gap near the reload.
    around = [t for t in line_polls if reload_at - 1 < t < reload_at + 1]
    gaps = [b - a for a, b in itertools.pairwise(around)]
    assert len(gaps) >= 5
    assert max(gaps) < 3 * INTERVAL, gaps
    logs = json_logs(log)
    errors = [e for e in logs if e["level"] in ("error", "critical")]
    assert [e["event"] for e in errors] == ["config reload failed; the running config stays"]
    assert any(p.startswith("stores[0].name: ") for p in errors[0]["problems"]), errors[0]
    (reloaded_line,) = [e for e in logs if e["event"] == "config reloaded"]
    assert reloaded_line["stores_added"] == ["lazza-2"]
    assert reloaded_line["stores_removed"] == ["lazza-1"]
    assert reloaded_line["stores_changed"] == []
    assert reloaded_line["notifiers_changed"] == ["first", "second"]
    assert [e["event"] for e in logs].count("bulkwatch started") == 1  # never restarted


async def test_a_reload_keeps_what_only_a_restart_applies_and_restarts_changed_stores(
    tmp_path: Path, sim: Simulator
) -> None:
    configs = sim.store_configs()
    # Without log.events and without notifiers, the implicit `log` notifier runs.
    quiet = {"events": False}
    settings = settings_for(tmp_path, configs[:2], defaults={"interval": 30}, log=quiet)
    async with Engine(settings, metrics=Metrics(CollectorRegistry())) as engine:
        assert await engine.poll_all_once()
        kept = engine.sources[1]
        changed = settings_for(
            tmp_path,
            [{**configs[0], "interval": 45}, configs[1]],
            defaults={"interval": 30},
            log=quiet,
            delivery={"batch": 7},
            notifiers=[{"name": "console", "type": "log"}],
        )
        with capture_logs():
            plan = await engine.reload(changed)
        assert plan.restart_needed == ("delivery",)
        assert engine.settings.delivery == settings.delivery  # kept as it runs
        assert [s.name for s in plan.changed] == ["lazza-1"]
        assert plan.notifiers_rebuilt == ("console",)
        assert plan.notifiers_removed == ("log",)
        assert sorted(engine.notifiers) == ["console"]
        assert engine.sources[0] is kept, "an unchanged store keeps its source"
        assert [s.interval for s in engine.stores] == [45, 30]
        assert await engine.poll_all_once()


async def test_the_configured_stores_gauge_follows_a_reload(tmp_path: Path, sim: Simulator) -> None:
    # The replica alerts compare the stores the replicas own with this count.
    configs = sim.store_configs()
    settings = settings_for(tmp_path, configs[:2], log={"events": False})
    metrics = Metrics(CollectorRegistry())
    async with Engine(settings, metrics=metrics) as engine:
        assert metrics.registry.get_sample_value("bulkwatch_stores_configured") == 2
        with capture_logs():
            await engine.reload(settings_for(tmp_path, configs, log={"events": False}))
        assert metrics.registry.get_sample_value("bulkwatch_stores_configured") == len(configs)
        with capture_logs():
            await engine.reload(settings_for(tmp_path, configs[1:2], log={"events": False}))
        assert metrics.registry.get_sample_value("bulkwatch_stores_configured") == 1


@pytest.mark.parametrize("found_by", ["$BULKWATCH_CONFIG", "./bulkwatch.yaml"])
async def test_sighup_reads_again_the_config_file_the_daemon_found(
    tmp_path: Path, sim: Simulator, found_by: str
) -> None:
    stores = {s["name"]: s for s in sim.store_configs()}
    workdir = tmp_path / "work"
    workdir.mkdir()
    config = workdir / "bulkwatch.yaml"
    base: dict[str, Any] = {
        "state": {"url": f"sqlite:///{tmp_path / 'state.db'}"},
        "defaults": {"interval": INTERVAL, "jitter": 0, "rate_limit": 1000, "burst": 40},
        "log": {"level": "info", "format": "json"},
    }
    _write(config, {**base, "stores": [stores["lazza-1"]]})
    log = tmp_path / "daemon.log"
    if found_by == "$BULKWATCH_CONFIG":
        daemon = await Daemon.start(None, log, env={"BULKWATCH_CONFIG": str(config)})
    else:
        daemon = await Daemon.start(None, log, cwd=workdir)
    try:
        await _log_line(log, "bulkwatch started")
        _write(config, {**base, "stores": [stores["lazza-1"], stores["line-1"]]})
        daemon.proc.send_signal(signal.SIGHUP)
        await _log_line(log, "config reloaded")
        [reloaded] = [e for e in json_logs(log) if e["event"] == "config reloaded"]
        assert reloaded["stores_added"] == ["line-1"]
        # A config that watches nothing is refused, as it is at start.
        _write(config, {**base, "stores": []})
        daemon.proc.send_signal(signal.SIGHUP)
        await _log_line(log, "config reload failed; the running config stays")
        [failed] = [e for e in json_logs(log) if e["event"].startswith("config reload failed")]
        assert "configures no store" in json.dumps(failed["problems"])
        assert await daemon.terminate(within=10) == 0
    finally:
        await daemon.ensure_dead()
