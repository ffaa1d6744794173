"""Helpers for the deployment checks: the repository's files (the Kubernetes manifests of a
directory among them) and the external tools."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
VENV_BIN = Path(sys.executable).parent


def tool(name: str) -> str:
    """The path of an external tool. Missing: a skip on a developer's machine, a failure in
    CI (CI=true), where `make verify-deploy` installs every tool before the checks run."""
    found = shutil.which(name) or shutil.which(name, path=str(VENV_BIN))
    if found is not None:
        return found
    message = f"{name} is not installed; `make verify-deploy` installs it"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


@dataclass(frozen=True)
class Ran:
    code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def run(*args: str | Path, stdin: str | None = None, cwd: Path = REPO, timeout: float = 60) -> Ran:
    """Run a command to completion (a blocking call: these checks are not async)."""
    proc = subprocess.run(
        [str(a) for a in args],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=timeout,
        check=False,
    )
    return Ran(proc.returncode, proc.stdout, proc.stderr)


def repo_files(*suffixes: str) -> list[Path]:
    """Tracked and new (not ignored) files of the repository ending in one of `suffixes`."""
    listed = run("git", "ls-files", "--cached", "--others", "--exclude-standard", "-z")
    assert listed.code == 0, listed.output
    names = [n for n in listed.stdout.split("\0") if n]
    return sorted(REPO / n for n in names if n.endswith(suffixes) and (REPO / n).is_file())


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def load_all_yaml(path: Path) -> list[Any]:
    return [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d is not None]


def manifests(directory: Path) -> list[dict[str, Any]]:
    """Every Kubernetes object in the YAML files of `directory`."""
    return [d for p in sorted(directory.glob("*.yaml")) for d in load_all_yaml(p)]


def manifest(directory: Path, kind: str, name: str | None = None) -> dict[str, Any]:
    """The one object of `kind` (and `name`, when given) in `directory`."""
    found = [
        d
        for d in manifests(directory)
        if d["kind"] == kind and name in (None, d["metadata"]["name"])
    ]
    assert len(found) == 1, (directory.name, kind, name)
    return found[0]


def pod_container(directory: Path) -> dict[str, Any]:
    """The one container of the Deployment in `directory`."""
    (spec,) = manifest(directory, "Deployment")["spec"]["template"]["spec"]["containers"]
    result: dict[str, Any] = spec
    return result


def check_service_and_podmonitor(directory: Path) -> None:
    """The Service and the PodMonitor in `directory` select the Deployment's pods and one of
    its container's ports; the PodMonitor scrapes /metrics with known fields only (its CRD is
    not among kubernetes-validate's schemas, so this is its check)."""
    labels = manifest(directory, "Deployment")["spec"]["template"]["metadata"]["labels"]
    ports = {p["name"] for p in pod_container(directory)["ports"]}
    service = manifest(directory, "Service")["spec"]
    assert service["selector"].items() <= labels.items()
    assert {p["targetPort"] for p in service["ports"]} <= ports
    monitor = manifest(directory, "PodMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["spec"]["selector"]["matchLabels"].items() <= labels.items()
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    assert endpoint["port"] in ports
    assert endpoint["path"] == "/metrics"
    assert set(monitor["spec"]) == {"selector", "podMetricsEndpoints"}
    assert set(endpoint) <= {"port", "path", "interval", "scrapeTimeout", "honorLabels"}


def validate_kubernetes(folder: str, at_least: int) -> list[str]:
    """Run `kubernetes-validate --strict` on every manifest of `deploy/<folder>` (at least
    `at_least` of them) and check it: every resource passes but the PodMonitor, whose CRD
    (the Prometheus Operator's) is not among the bundled schemas, so the structure tests
    check it against the Deployment instead. Returns the lines of the resources passed."""
    found = sorted(p.relative_to(REPO) for p in (DEPLOY / folder).glob("*.yaml"))
    assert len(found) >= at_least
    result = run(tool("kubernetes-validate"), "--strict", *found)
    assert result.code == 0, result.output
    lines = result.output.strip().splitlines()
    unvalidated = [line for line in lines if not line.startswith("INFO ")]
    assert len(unvalidated) == 1, result.output
    assert unvalidated[0].startswith(
        f"WARN deploy/{folder}/podmonitor.yaml Couldn't find schema for kind PodMonitor"
    )
    passed = [line for line in lines if " passed for resource " in line]
    assert len(passed) == len(found) - 1, result.output
    return passed
