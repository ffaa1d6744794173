"""The replica deployment files checked with the real tools: kubernetes-validate, the compose
specification's JSON schema (check-jsonschema), systemd-analyze, promtool, and a real
Prometheus server adding up what two real replicas on the local PostgreSQL own.

Marked `deploy`, like test_deploy.py: `make verify-deploy` installs the tools and runs them.
"""

from __future__ import annotations

import os
import sys
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from bulkwatch.simulator import Simulator, make_stores, run_simulator
from helpers.deploy_support import DEPLOY, run, tool, validate_kubernetes
from helpers.pg_support import fresh_schema
from helpers.prometheus_support import PrometheusAPI, process, prometheus_config, until
from helpers.support import free_port

pytestmark = pytest.mark.deploy

COMPOSE_FILES = ["docker-compose.yaml", "docker-compose.replicas.yaml"]
REPLICA_ALERTS = {
    "BulkwatchLeaseRenewalsFailing",
    "BulkwatchStoresUnowned",
    "BulkwatchReplicaTakeovers",
}


def test_the_replica_manifests_validate_strictly() -> None:
    # The PodMonitor is checked against the Deployment in test_deploy_replicas_files.py.
    passed = validate_kubernetes("kubernetes-replicas", at_least=7)
    assert any("poddisruptionbudget/bulkwatch" in line for line in passed)


def test_kubernetes_validate_refuses_a_misspelt_field(tmp_path: Path) -> None:
    # --strict is what makes a typo an error rather than an ignored field.
    text = (DEPLOY / "kubernetes-replicas" / "pdb.yaml").read_text(encoding="utf-8")
    broken = tmp_path / "pdb.yaml"
    broken.write_text(text.replace("maxUnavailable:", "maxUnavailble:"), encoding="utf-8")
    result = run(tool("kubernetes-validate"), "--strict", broken)
    assert result.code != 0, result.output


@pytest.mark.parametrize("name", COMPOSE_FILES)
def test_the_compose_file_follows_the_compose_specification(name: str) -> None:
    result = run(tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", DEPLOY / name)
    assert result.code == 0, result.output


def test_the_compose_schema_refuses_a_wrong_health_condition(tmp_path: Path) -> None:
    text = (DEPLOY / "docker-compose.replicas.yaml").read_text(encoding="utf-8")
    assert "condition: service_healthy" in text
    broken = tmp_path / "compose.yaml"
    broken.write_text(text.replace("service_healthy", "healthy"), encoding="utf-8")
    result = run(tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", broken)
    assert result.code != 0, result.output
    assert "service_healthy" in result.output  # it names the values it allows


def unit_with_drop_in(tmp_path: Path, extra: str = "") -> Path:
    """bulkwatch.service (running this venv's bulkwatch, which verify checks exists) and
    replicas.conf as its drop-in, laid out as in /etc/systemd/system."""
    program = "/opt/bulkwatch/bin/bulkwatch"
    text = (DEPLOY / "systemd" / "bulkwatch.service").read_text(encoding="utf-8")
    assert f"ExecStart={program} " in text
    bulkwatch = Path(sys.executable).parent / "bulkwatch"
    unit = tmp_path / "bulkwatch.service"
    unit.write_text(text.replace(f"ExecStart={program} ", f"ExecStart={bulkwatch} "))
    drop_ins = tmp_path / "bulkwatch.service.d"
    drop_ins.mkdir()
    conf = (DEPLOY / "systemd" / "replicas.conf").read_text(encoding="utf-8")
    (drop_ins / "replicas.conf").write_text(conf + extra, encoding="utf-8")
    return unit


def test_systemd_analyze_verify_has_nothing_to_say_about_the_drop_in(tmp_path: Path) -> None:
    result = run(tool("systemd-analyze"), "verify", unit_with_drop_in(tmp_path))
    assert result.code == 0, result.output
    assert result.output.strip() == ""


def test_systemd_analyze_verify_reads_the_drop_in(tmp_path: Path) -> None:
    # Without this, the check above would also pass if verify never looked at the drop-in.
    unit = unit_with_drop_in(tmp_path, "Environment=PGPASSFILE=%Q\nNoSuchKey=1\n")
    result = run(tool("systemd-analyze"), "verify", unit)
    assert "replicas.conf" in result.output
    assert "Unknown key 'NoSuchKey'" in result.output
    assert "Failed to resolve specifiers" in result.output


def test_promtool_checks_the_replicas_scrape_config() -> None:
    prometheus = DEPLOY / "prometheus"
    result = run(tool("promtool"), "check", "config", "prometheus-replicas.yml", cwd=prometheus)
    assert result.code == 0, result.output
    assert "SUCCESS: 1 rule files found" in result.output


# --- a real Prometheus scraping two real replicas ----------------------------------------------


def replica_config(tmp_path: Path, sim: Simulator, url: str, port: int) -> Path:
    """The compose replicas' config (deploy/compose/replicas.yaml), on this machine: the
    local PostgreSQL, the simulator in the test, a port of its own, quick intervals."""
    data = yaml.safe_load((DEPLOY / "compose" / "replicas.yaml").read_text(encoding="utf-8"))
    data["state"] = {**data["state"], "url": url, "lease_ttl": 3}
    data["server"] = {"host": "127.0.0.1", "port": port}
    data["defaults"] = {"interval": 1}
    data["shutdown_grace"] = 3
    data["stores"] = sim.store_configs()
    path = tmp_path / f"replica-{port}.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


@pytest.mark.timeout(150)
async def test_prometheus_adds_up_the_stores_two_replicas_own(tmp_path: Path) -> None:
    prometheus = tool("prometheus")
    ports, prom_port = [free_port(), free_port()], free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("BULKWATCH_")}
    async with (
        fresh_schema() as (url, _),
        run_simulator(stores=make_stores(2, 2)) as sim,
        aiohttp.ClientSession() as http,
        AsyncExitStack() as stack,
    ):
        replicas = []
        for i, port in enumerate(ports):
            # The replica id from the environment, as the Kubernetes Deployment sets it.
            replica_env = {**env, "BULKWATCH_STATE__REPLICA_ID": f"replica-{i}"}
            replicas.append(
                await stack.enter_async_context(
                    process(
                        sys.executable,
                        "-m",
                        "bulkwatch",
                        "run",
                        "--config",
                        replica_config(tmp_path, sim, url, port),
                        log=tmp_path / f"replica-{i}.log",
                        env=replica_env,
                    )
                )
            )
        targets = [f"127.0.0.1:{port}" for port in ports]
        server = await stack.enter_async_context(
            process(
                prometheus,
                f"--config.file={prometheus_config(tmp_path, *targets)}",
                f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{prom_port}",
                log=tmp_path / "prometheus.log",
            )
        )
        api = PrometheusAPI(http, prom_port)

        async def both_up() -> list[dict[str, Any]]:
            found = [r for r in await api.query('up{job="bulkwatch"}') if r["value"][1] == "1"]
            return found if len(found) == len(ports) else []

        async def every_store_owned() -> list[dict[str, Any]]:
            # BulkwatchStoresUnowned's expression without its threshold: 0 when all are.
            return await api.query(
                "max by (job) (bulkwatch_stores_configured)"
                " - sum by (job) (bulkwatch_lease_stores_owned) == 0"
            )

        async def every_store_polled() -> set[str]:
            found = await api.query('sum by (store) (bulkwatch_polls_total{outcome="ok"}) > 0')
            stores = {r["metric"]["store"] for r in found}
            return stores if stores == {s.name for s in make_stores(2, 2)} else set()

        async def quiet_rules() -> list[dict[str, Any]]:
            rules = await api.rules()
            watched = REPLICA_ALERTS | {"BulkwatchNoSuccessfulPoll"}
            states = {r["state"] for r in rules if r["name"] in watched}
            return rules if states == {"inactive"} else []

        await until("both replicas to be up", both_up)
        await until("the replicas to own every store between them", every_store_owned)
        await until("a successful poll of every store", every_store_polled)
        info = await api.query("bulkwatch_replica_info")
        assert {r["metric"]["replica"] for r in info} == {"replica-0", "replica-1"}
        # Each replica shows every store's interval but polls only its own: the alert on
        # polls judges each store by its newest success across the replicas.
        rules = await until("the replica and poll alerts to be inactive", quiet_rules)
        assert not [r["name"] for r in rules if r["state"] == "firing"]
        assert server.returncode is None
        assert [r.returncode for r in replicas] == [None, None]

    for i, replica in enumerate(replicas):
        assert replica.returncode == 0, (tmp_path / f"replica-{i}.log").read_text()
