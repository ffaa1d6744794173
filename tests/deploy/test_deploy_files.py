"""The deployment files agree with each other and with the code (no external tool needed)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from grafana_foundation_sdk.cog import plugins
from grafana_foundation_sdk.models import dashboard as dash_m
from grafana_foundation_sdk.models import prometheus as prom_m
from prometheus_client import CollectorRegistry

from bulkwatch.config import load_settings
from bulkwatch.simulator import make_stores
from bulkwatch.telemetry.metrics import Metrics
from helpers.deploy_support import (
    DEPLOY,
    REPO,
    check_service_and_podmonitor,
    load_yaml,
    manifest,
    pod_container,
)

K8S = DEPLOY / "kubernetes"
DASHBOARD = DEPLOY / "grafana" / "bulkwatch.json"
IMAGE_UID = 10001


def k8s(kind: str) -> dict[str, Any]:
    """The one manifest of `kind` in deploy/kubernetes."""
    return manifest(K8S, kind)


def container() -> dict[str, Any]:
    return pod_container(K8S)


# --- metric names ------------------------------------------------------------------------------


def known_series() -> set[str]:
    """Every series name the daemon exposes (counters with _total, histogram parts)."""
    metrics = Metrics(CollectorRegistry())
    names = set()
    for family in metrics.registry.collect():
        names.add(family.name)
        if family.type == "counter":
            names.add(family.name + "_total")
        if family.type == "histogram":
            names.update(family.name + s for s in ("_bucket", "_count", "_sum"))
    return names


def referenced(exprs: list[str]) -> set[str]:
    return {m for e in exprs for m in re.findall(r"\b(?:bulkwatch|process)_[a-z_]+\b", e)}


def alert_exprs() -> list[str]:
    groups = load_yaml(DEPLOY / "prometheus" / "alerts.yml")["groups"]
    return [str(rule["expr"]) for group in groups for rule in group["rules"]]


def dashboard_exprs() -> list[str]:
    data = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return [t["expr"] for p in data["panels"] for t in p.get("targets", [])]


@pytest.mark.parametrize("source", [alert_exprs, dashboard_exprs], ids=["alerts", "dashboard"])
def test_every_metric_a_query_names_exists(source: Any) -> None:
    missing = referenced(source()) - known_series()
    assert not missing


def test_the_dashboard_shows_every_area_the_design_asks_for() -> None:
    shown = referenced(dashboard_exprs())
    for name in (
        "bulkwatch_polls_total",
        "bulkwatch_api_errors_total",
        "bulkwatch_tasks",
        "bulkwatch_transitions_total",
        "bulkwatch_deliveries_total",
        "bulkwatch_delivery_duration_seconds_bucket",
        "bulkwatch_outbox_pending",
    ):
        assert name in shown


# --- Grafana -----------------------------------------------------------------------------------


def test_the_dashboard_loads_with_the_grafana_sdk() -> None:
    plugins.register_default_plugins()
    data = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    board = dash_m.Dashboard.from_json(data)
    assert board.uid == "bulkwatch"
    panels = [p for p in board.panels or [] if isinstance(p, dash_m.Panel)]
    assert len(panels) >= 15
    for panel in panels:
        assert panel.targets, panel.title
        for target in panel.targets:
            assert isinstance(target, prom_m.Dataquery), panel.title
            assert target.expr
    ids = [p.id_val for p in board.panels or []]
    assert len(set(ids)) == len(ids)


def test_the_committed_dashboard_is_what_the_generator_builds() -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("dashboard", DEPLOY / "grafana" / "dashboard.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert DASHBOARD.read_text(encoding="utf-8") == module.render(), (
        "run: python deploy/grafana/dashboard.py"
    )


# --- configs shipped for each way of running it -------------------------------------------------


def test_the_container_default_config_is_valid_and_listens_outside() -> None:
    settings = load_settings(DEPLOY / "container" / "config.yaml", environ={})
    assert settings.server.host == "0.0.0.0"  # noqa: S104 - a container's port must be reachable
    assert settings.state.url == "sqlite:////var/lib/bulkwatch/state.db"


def test_the_kubernetes_config_is_valid_with_the_secret_as_credentials(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(k8s("ConfigMap")["data"]["config.yaml"], encoding="utf-8")
    for name, token in k8s("Secret")["stringData"].items():
        (tmp_path / name).write_text(token, encoding="utf-8")
    settings = load_settings(config, environ={"CREDENTIALS_DIRECTORY": str(tmp_path)})
    assert sorted(s.name for s in settings.stores) == sorted(k8s("Secret")["stringData"])
    assert all(s.token() for s in settings.stores)
    port = {p["name"]: p["containerPort"] for p in container()["ports"]}["metrics"]
    assert settings.server.port == port
    assert settings.server.host == "0.0.0.0"  # noqa: S104 - probes come from outside the pod


def test_the_compose_config_watches_the_simulators_stores() -> None:
    settings = load_settings(DEPLOY / "compose" / "bulkwatch.yaml", environ={})
    expected = {s.name: f"sim-{s.name}" for s in make_stores(2, 2)}
    assert {s.name: s.token() for s in settings.stores} == expected
    for store in settings.stores:
        assert store.base_url == f"http://simulator:8081/{store.name}"


# --- Kubernetes --------------------------------------------------------------------------------


def test_the_deployment_probes_and_secures_the_container() -> None:
    c = container()
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    assert c["resources"]["requests"]
    assert c["resources"]["limits"]["memory"]
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert c["securityContext"]["capabilities"]["drop"] == ["ALL"]
    pod = k8s("Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsUser"] == IMAGE_UID
    assert pod["securityContext"]["runAsNonRoot"] is True
    # One writer of the SQLite file: never two pods at once.
    assert k8s("Deployment")["spec"]["replicas"] == 1
    assert k8s("Deployment")["spec"]["strategy"]["type"] == "Recreate"


def test_the_deployment_mounts_what_the_config_expects() -> None:
    c = container()
    pod = k8s("Deployment")["spec"]["template"]["spec"]
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["config"]["configMap"]["name"] == k8s("ConfigMap")["metadata"]["name"]
    assert volumes["tokens"]["secret"]["secretName"] == k8s("Secret")["metadata"]["name"]
    claim = volumes["state"]["persistentVolumeClaim"]["claimName"]
    assert claim == k8s("PersistentVolumeClaim")["metadata"]["name"]
    assert c["args"][-1] == mounts["config"] + "/config.yaml"
    env = {e["name"]: e["value"] for e in c["env"]}
    assert env["CREDENTIALS_DIRECTORY"] == mounts["tokens"]
    assert mounts["state"] == "/var/lib/bulkwatch"


def test_the_service_and_podmonitor_select_the_pods_port() -> None:
    check_service_and_podmonitor(K8S)


# --- docker compose, Prometheus, Dockerfile, systemd --------------------------------------------


def test_compose_mounts_only_files_that_exist() -> None:
    compose = load_yaml(DEPLOY / "docker-compose.yaml")
    for name, service in compose["services"].items():
        build = service.get("build")
        if build is not None:
            assert (DEPLOY / build["context"] / build["dockerfile"]).is_file(), name
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith("."):
                assert (DEPLOY / source).exists(), (name, source)


def test_prometheus_scrapes_the_compose_service_on_the_configured_port() -> None:
    compose = load_yaml(DEPLOY / "docker-compose.yaml")
    settings = load_settings(DEPLOY / "compose" / "bulkwatch.yaml", environ={})
    (job,) = load_yaml(DEPLOY / "prometheus" / "prometheus.yml")["scrape_configs"]
    (static,) = job["static_configs"]
    assert static["targets"] == [f"bulkwatch:{settings.server.port}"]
    assert "bulkwatch" in compose["services"]
    mounted = compose["services"]["prometheus"]["volumes"]
    assert "./prometheus/alerts.yml:/etc/prometheus/alerts.yml:ro" in mounted


def test_the_dockerfile_runs_unprivileged_in_exec_form_with_a_healthcheck() -> None:
    text = (REPO / "Dockerfile").read_text(encoding="utf-8")
    assert re.search(r"^ARG BASE_IMAGE=", text, re.MULTILINE)
    assert re.search(rf"^USER {IMAGE_UID}:{IMAGE_UID}$", text, re.MULTILINE)
    assert re.search(r'^ENTRYPOINT \["bulkwatch"\]$', text, re.MULTILINE)
    assert re.search(r"^HEALTHCHECK .*\n?.*/healthz", text, re.MULTILINE)
    assert 'VOLUME ["/var/lib/bulkwatch"]' in text
    assert "uv sync --frozen" in text  # the lock file, exactly


def test_the_systemd_unit_loads_a_credential_per_example_store() -> None:
    unit = (DEPLOY / "systemd" / "bulkwatch.service").read_text(encoding="utf-8")
    names = re.findall(r"^LoadCredential=([^:]+):", unit, re.MULTILINE)
    example = load_yaml(REPO / "config.example.yaml")
    assert sorted(names) == sorted(s["name"] for s in example["stores"])
