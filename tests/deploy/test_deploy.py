"""Deployment checks with the real tools: promtool, a Prometheus server, systemd-analyze,
hadolint, kubernetes-validate, shellcheck and yamllint.

Marked `deploy`: the default `pytest` run leaves them out; `make verify-deploy` installs the
tools and runs them (`pytest -m deploy`). A missing tool skips a test on a developer's machine
and fails it in CI.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from prometheus_client import CollectorRegistry

from bulkwatch.daemon.engine import Engine
from bulkwatch.daemon.web import start_web
from bulkwatch.model import TaskStatus
from bulkwatch.simulator import Simulator, make_stores, run_simulator
from bulkwatch.telemetry.metrics import Metrics
from helpers.deploy_support import (
    DEPLOY,
    REPO,
    load_yaml,
    repo_files,
    run,
    tool,
    validate_kubernetes,
)
from helpers.prometheus_support import (
    PROMETHEUS,
    PrometheusAPI,
    process,
    prometheus_config,
    until,
)
from helpers.support import bound_port, free_port, settings_for

pytestmark = pytest.mark.deploy

UNIT = DEPLOY / "systemd" / "bulkwatch.service"
REPLICA_ALERTS = {
    "BulkwatchLeaseRenewalsFailing",
    "BulkwatchStoresUnowned",
    "BulkwatchReplicaTakeovers",
}
# `systemd-analyze security` exposure, times ten (1.5 is "OK"); the unit scores 1.1 today.
SECURITY_THRESHOLD = 15


# --- promtool: metrics, rules, rule unit tests, config -------------------------------------------


async def test_promtool_accepts_a_live_metrics_scrape(tmp_path: Path) -> None:
    promtool = tool("promtool")
    async with run_simulator(stores=make_stores(1, 1)) as sim:
        settings = settings_for(
            tmp_path, sim.store_configs(), notifiers=[{"name": "console", "type": "log"}]
        )
        async with Engine(settings, metrics=Metrics(CollectorRegistry())) as engine:
            sim.create_task("lazza-1", "t1", TaskStatus.RUNNING)
            sim.inject(503, store="line-1", times=1)
            await engine.poll_all_once()
            await engine.deliver_due_once()
            runner = await start_web(engine, "127.0.0.1", 0)
            try:
                url = f"http://127.0.0.1:{bound_port(runner)}/metrics"
                async with aiohttp.ClientSession() as http, http.get(url) as resp:
                    scrape = await resp.read()
            finally:
                await runner.cleanup()
    assert b"bulkwatch_api_errors_total" in scrape
    proc = await asyncio.create_subprocess_exec(
        promtool,
        "check",
        "metrics",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await proc.communicate(scrape)
    assert proc.returncode == 0, out.decode()
    assert out.decode().strip() == ""  # promtool prints every lint problem it finds


def test_promtool_checks_the_alert_rules() -> None:
    result = run(tool("promtool"), "check", "rules", PROMETHEUS / "alerts.yml")
    assert result.code == 0, result.output
    assert "SUCCESS: 11 rules found" in result.output


def test_promtool_unit_tests_pass_and_cover_every_alert() -> None:
    alerts = {
        r["alert"] for g in load_yaml(PROMETHEUS / "alerts.yml")["groups"] for r in g["rules"]
    }
    tested = {
        case["alertname"]
        for test in load_yaml(PROMETHEUS / "alerts_test.yml")["tests"]
        for case in test["alert_rule_test"]
        if case.get("exp_alerts")
    }
    assert alerts == tested  # every alert has a test in which it fires
    result = run(tool("promtool"), "test", "rules", "alerts_test.yml", cwd=PROMETHEUS)
    assert result.code == 0, result.output
    assert "SUCCESS" in result.output


def test_promtool_checks_the_scrape_config() -> None:
    result = run(tool("promtool"), "check", "config", "prometheus.yml", cwd=PROMETHEUS)
    assert result.code == 0, result.output


def test_every_dashboard_query_is_valid_promql(tmp_path: Path) -> None:
    dashboard = json.loads((DEPLOY / "grafana" / "bulkwatch.json").read_text(encoding="utf-8"))
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    assert len(exprs) >= 15
    # Grafana fills in its variables before Prometheus sees a query.
    rules = [
        {"record": f"dashboard_query_{i}", "expr": e.replace("$__rate_interval", "5m")}
        for i, e in enumerate(exprs)
    ]
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = run(tool("promtool"), "check", "rules", path)
    assert result.code == 0, result.output
    assert f"SUCCESS: {len(exprs)} rules found" in result.output


# --- a real Prometheus server scraping a real daemon ---------------------------------------------


def daemon_config(tmp_path: Path, sim: Simulator, port: int) -> Path:
    path = tmp_path / "bulkwatch.yaml"
    data = {
        "instance": "prom-test",
        "state": {"url": f"sqlite:///{tmp_path / 'state.db'}"},
        "server": {"enabled": True, "host": "127.0.0.1", "port": port},
        "defaults": {"interval": 1},
        "log": {"format": "json"},
        "shutdown_grace": 3,
        "stores": sim.store_configs(),
    }
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


@pytest.mark.timeout(120)
async def test_prometheus_scrapes_the_daemon_and_loads_the_rules(tmp_path: Path) -> None:
    prometheus = tool("prometheus")
    daemon_port, prom_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("BULKWATCH_")}
    async with (
        run_simulator(stores=make_stores(1, 1)) as sim,
        aiohttp.ClientSession() as http,
        process(
            sys.executable,
            "-m",
            "bulkwatch",
            "run",
            "--config",
            daemon_config(tmp_path, sim, daemon_port),
            log=tmp_path / "bulkwatch.log",
            env=env,
        ) as daemon,
        process(
            prometheus,
            f"--config.file={prometheus_config(tmp_path, f'127.0.0.1:{daemon_port}')}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{prom_port}",
            log=tmp_path / "prometheus.log",
        ) as server,
    ):
        api = PrometheusAPI(http, prom_port)

        async def up() -> list[dict[str, Any]]:
            return [r for r in await api.query('up{job="bulkwatch"}') if r["value"][1] == "1"]

        async def polled() -> set[str]:
            found = await api.query('bulkwatch_polls_total{outcome="ok"} > 0')
            stores = {r["metric"]["store"] for r in found}
            return stores if stores == {"lazza-1", "line-1"} else set()

        (target,) = await until("the bulkwatch target to be up", up)
        assert target["metric"]["instance"] == f"127.0.0.1:{daemon_port}"
        assert await until("polls of both stores", polled) == {"lazza-1", "line-1"}
        rules = await until("every alert rule to evaluate", api.rules)
        assert {r["name"] for r in rules} >= {"BulkwatchStoreDown", "BulkwatchNoSuccessfulPoll"}
        assert not [r["name"] for r in rules if r["state"] == "firing"]
        # One process without replicas: the replica alerts are not even pending.
        replica_rules = [r for r in rules if r["name"] in REPLICA_ALERTS]
        assert len(replica_rules) == len(REPLICA_ALERTS)
        assert {r["state"] for r in replica_rules} == {"inactive"}
        assert daemon.returncode is None
        assert server.returncode is None

    assert daemon.returncode == 0, (tmp_path / "bulkwatch.log").read_text()


# --- systemd -------------------------------------------------------------------------------------


def test_systemd_analyze_verify_has_nothing_to_say(tmp_path: Path) -> None:
    # verify checks that ExecStart's program exists; /opt/bulkwatch is the production path,
    # so the copy verified here runs this venv's bulkwatch instead. Nothing else changes.
    text = UNIT.read_text(encoding="utf-8")
    program = "/opt/bulkwatch/bin/bulkwatch"
    assert f"ExecStart={program} " in text
    bulkwatch = Path(sys.executable).parent / "bulkwatch"
    assert bulkwatch.exists()
    unit = tmp_path / "bulkwatch.service"
    unit.write_text(text.replace(f"ExecStart={program} ", f"ExecStart={bulkwatch} "))
    result = run(tool("systemd-analyze"), "verify", unit)
    # Unknown keys and bad values are only warnings, with exit code 0: any output fails.
    assert result.code == 0, result.output
    assert result.output.strip() == ""


def test_systemd_analyze_security_scores_the_unit_ok() -> None:
    result = run(
        tool("systemd-analyze"),
        "security",
        "--offline=true",
        f"--threshold={SECURITY_THRESHOLD}",
        UNIT,
    )
    assert result.code == 0, result.output
    match = re.search(r"Overall exposure level for bulkwatch\.service: (\d+\.\d+)", result.output)
    assert match is not None, result.output
    assert float(match.group(1)) * 10 <= SECURITY_THRESHOLD


def test_systemd_unit_is_type_notify_with_watchdog_and_credentials() -> None:
    service = dict(
        line.split("=", 1)
        for line in UNIT.read_text(encoding="utf-8").splitlines()
        if "=" in line and not line.startswith("#")
    )
    assert service["Type"] == "notify"
    assert service["WatchdogSec"]
    assert service["DynamicUser"] == "yes"
    assert service["StateDirectory"] == "bulkwatch"
    assert "LoadCredential" in service


# --- container, Kubernetes, scripts, YAML --------------------------------------------------------


def test_hadolint_finds_nothing_in_the_dockerfile() -> None:
    result = run(tool("hadolint"), "Dockerfile")
    assert result.code == 0, result.output
    assert result.output.strip() == ""


def test_kubernetes_manifests_validate_strictly() -> None:
    # The PodMonitor is checked against the Deployment in test_deploy_files.py.
    validate_kubernetes("kubernetes", at_least=6)


def shell_scripts() -> list[Path]:
    scripts = []
    for path in repo_files(""):
        if path.suffix == ".sh":
            scripts.append(path)
        elif not path.suffix:
            with path.open("rb") as f:
                if re.match(rb"#!.*\b(ba)?sh\b", f.readline()):
                    scripts.append(path)
    return scripts


def test_shellcheck_passes_every_shell_script() -> None:
    scripts = shell_scripts()
    assert REPO / ".ci" / "run" in scripts
    result = run(tool("shellcheck"), *(s.relative_to(REPO) for s in scripts))
    assert result.code == 0, result.output
    assert result.output.strip() == ""


def test_yamllint_passes_every_yaml_file() -> None:
    files = repo_files(".yaml", ".yml")
    assert DEPLOY / "docker-compose.yaml" in files
    # Relative paths: the ignore patterns of .yamllint.yaml match them.
    result = run(tool("yamllint"), "--strict", *(f.relative_to(REPO) for f in files))
    assert result.code == 0, result.output
    assert result.output.strip() == ""
