"""The replica deployment files checked with the real tools: kubernetes-validate, the compose
specification's JSON schema (check-jsonschema), systemd-analyze and promtool.

Marked `deploy`, like test_deploy.py: `make verify-deploy` installs the tools and runs them.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from helpers.deploy_support import DEPLOY, REPO, run, tool

pytestmark = pytest.mark.deploy

COMPOSE_FILES = ["docker-compose.yaml", "docker-compose.replicas.yaml"]


def test_the_replica_manifests_validate_strictly() -> None:
    manifests = sorted(p.relative_to(REPO) for p in (DEPLOY / "kubernetes-replicas").glob("*.yaml"))
    assert len(manifests) >= 7
    result = run(tool("kubernetes-validate"), "--strict", *manifests)
    assert result.code == 0, result.output
    lines = result.output.strip().splitlines()
    # As in deploy/kubernetes: the PodMonitor's CRD is not bundled; the structure tests in
    # test_deploy_replicas_files.py check it against the Deployment.
    unvalidated = [line for line in lines if not line.startswith("INFO ")]
    assert len(unvalidated) == 1, result.output
    assert unvalidated[0].startswith(
        "WARN deploy/kubernetes-replicas/podmonitor.yaml Couldn't find schema for kind PodMonitor"
    )
    passed = [line for line in lines if " passed for resource " in line]
    assert len(passed) == len(manifests) - 1, result.output
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
