"""The replica deployment files (deploy/kubernetes-replicas, deploy/docker-compose.replicas.yaml,
deploy/systemd/replicas.conf) agree with each other and with the code: their configs load with
bulkwatch's own settings loader, with the environment the manifests give each replica."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from pydantic import TypeAdapter

from bulkwatch.common.durations import Duration
from bulkwatch.config import load_settings
from bulkwatch.config.settings import Settings
from bulkwatch.simulator import make_stores
from helpers.cli import run_cli
from helpers.deploy_support import (
    DEPLOY,
    check_service_and_podmonitor,
    load_yaml,
    manifest,
    manifests,
    pod_container,
)

K8S = DEPLOY / "kubernetes-replicas"
COMPOSE = DEPLOY / "docker-compose.replicas.yaml"
COMPOSE_CONFIG = DEPLOY / "compose" / "replicas.yaml"
POD_NAME = "bulkwatch-7d9f8b6c5-x2x4q"


def seconds(value: Any) -> float:
    return TypeAdapter(Duration).validate_python(value)


def deployment() -> dict[str, Any]:
    return manifest(K8S, "Deployment")


def pod() -> dict[str, Any]:
    spec: dict[str, Any] = deployment()["spec"]["template"]["spec"]
    return spec


def env_sources() -> dict[str, dict[str, Any]]:
    """Each environment variable of the container: its `value` or `valueFrom`."""
    return {e["name"]: e for e in pod_container(K8S)["env"]}


def config_text() -> str:
    text: str = manifest(K8S, "ConfigMap")["data"]["config.yaml"]
    return text


def state_url() -> str:
    """The URL the Secret named by BULKWATCH_STATE__URL holds."""
    ref = env_sources()["BULKWATCH_STATE__URL"]["valueFrom"]["secretKeyRef"]
    url: str = manifest(K8S, "Secret", ref["name"])["stringData"][ref["key"]]
    return url


def pod_environment(tmp_path: Path) -> dict[str, str]:
    """What a replica's process sees: its config file and tokens written to `tmp_path`, and
    the environment the Deployment gives it (the Secret's URL, the downward API's pod name)."""
    (tmp_path / "config.yaml").write_text(config_text(), encoding="utf-8")
    tokens = manifest(K8S, "Secret", "bulkwatch-tokens")["stringData"]
    for name, token in tokens.items():
        (tmp_path / name).write_text(token, encoding="utf-8")
    env = env_sources()
    assert env["BULKWATCH_STATE__REPLICA_ID"]["valueFrom"] == {
        "fieldRef": {"fieldPath": "metadata.name"}
    }
    return {
        "CREDENTIALS_DIRECTORY": str(tmp_path),
        "BULKWATCH_STATE__URL": state_url(),
        "BULKWATCH_STATE__REPLICA_ID": POD_NAME,
    }


# --- Kubernetes --------------------------------------------------------------------------------


def test_the_replica_config_loads_with_the_pods_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    environ = pod_environment(tmp_path)
    for name, value in environ.items():
        monkeypatch.setenv(name, value)  # the settings read BULKWATCH_* from the process
    settings = load_settings(tmp_path / "config.yaml", environ=environ)
    assert settings.state.url == state_url()  # nested: BULKWATCH_STATE__URL is state.url
    assert settings.state.replicas is True
    assert settings.state.replica_id == POD_NAME
    assert settings.state.pool_size == 10  # the file's other state fields stay
    assert urlsplit(settings.state.url).scheme == "postgresql"
    tokens = manifest(K8S, "Secret", "bulkwatch-tokens")["stringData"]
    assert sorted(s.name for s in settings.stores) == sorted(tokens)
    assert all(s.token() for s in settings.stores)
    port = {p["name"]: p["containerPort"] for p in pod_container(K8S)["ports"]}["metrics"]
    assert settings.server.port == port
    assert settings.server.host == "0.0.0.0"  # noqa: S104 - probes come from outside the pod


async def test_check_config_shows_the_secrets_url_without_its_password(tmp_path: Path) -> None:
    environ = pod_environment(tmp_path)
    password = urlsplit(state_url()).password
    assert password
    result = await run_cli("check-config", "--config", tmp_path / "config.yaml", env=environ)
    assert result.code == 0, result.output
    assert password not in result.output
    assert "postgresql://bulkwatch:***@db.example.internal:5432/bulkwatch" in result.output


def test_the_deployment_runs_three_replicas_without_a_volume() -> None:
    spec = deployment()["spec"]
    assert spec["replicas"] == 3
    # A new pod starts before an old one stops: leases, not a volume, keep them apart.
    assert spec["strategy"]["type"] == "RollingUpdate"
    assert spec["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    assert not [m for m in manifests(K8S) if m["kind"] == "PersistentVolumeClaim"]
    assert not [v for v in pod()["volumes"] if "persistentVolumeClaim" in v]
    # No database server in here: PostgreSQL is managed or operated elsewhere.
    assert {m["kind"] for m in manifests(K8S)} == {
        "ConfigMap",
        "Deployment",
        "PodDisruptionBudget",
        "PodMonitor",
        "Secret",
        "Service",
    }
    assert "postgres" not in pod_container(K8S)["image"]


def test_the_deployment_probes_secures_and_drains_each_replica() -> None:
    c = pod_container(K8S)
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert c["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert pod()["securityContext"]["runAsNonRoot"] is True
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    volumes = {v["name"]: v for v in pod()["volumes"]}
    assert volumes["config"]["configMap"]["name"] == manifest(K8S, "ConfigMap")["metadata"]["name"]
    assert volumes["tokens"]["secret"]["secretName"] == "bulkwatch-tokens"
    assert c["args"][-1] == mounts["config"] + "/config.yaml"
    assert env_sources()["CREDENTIALS_DIRECTORY"]["value"] == mounts["tokens"]
    # SIGTERM drains for shutdown_grace, then releases the leases: killed before that, the
    # replica's stores would wait out the lease TTL.
    grace = seconds(yaml.safe_load(config_text())["shutdown_grace"])
    assert pod()["terminationGracePeriodSeconds"] >= grace + 10


def test_the_replicas_spread_over_nodes_and_one_at_a_time_may_leave() -> None:
    labels = deployment()["spec"]["template"]["metadata"]["labels"]
    spread = {t["topologyKey"]: t for t in pod()["topologySpreadConstraints"]}
    by_node = spread["kubernetes.io/hostname"]
    assert by_node["maxSkew"] == 1
    assert by_node["whenUnsatisfiable"] == "DoNotSchedule"
    assert by_node["labelSelector"]["matchLabels"].items() <= labels.items()
    budget = manifest(K8S, "PodDisruptionBudget")
    assert budget["apiVersion"] == "policy/v1"
    assert budget["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert budget["spec"]["maxUnavailable"] == 1


def test_the_podmonitor_scrapes_every_replica_and_the_service_selects_them() -> None:
    check_service_and_podmonitor(K8S)


# --- docker compose ----------------------------------------------------------------------------


def compose() -> dict[str, Any]:
    data: dict[str, Any] = load_yaml(COMPOSE)
    return data


def test_the_compose_replica_config_loads_and_watches_the_simulators_stores() -> None:
    settings = load_settings(COMPOSE_CONFIG, environ={})
    assert settings.state.replicas is True
    simulator = compose()["services"]["simulator"]["command"]
    count = int(simulator[simulator.index("--stores") + 1])
    expected = {s.name: f"sim-{s.name}" for s in make_stores((count + 1) // 2, count // 2)}
    assert {s.name: s.token() for s in settings.stores} == expected
    for store in settings.stores:
        assert store.base_url == f"http://simulator:8081/{store.name}"


def test_the_compose_replicas_wait_for_a_healthy_postgres_with_the_same_credentials() -> None:
    services = compose()["services"]
    bulkwatch, postgres = services["bulkwatch"], services["postgres"]
    assert bulkwatch["deploy"]["replicas"] >= 2
    assert bulkwatch["depends_on"]["postgres"] == {"condition": "service_healthy"}
    assert bulkwatch["depends_on"]["simulator"] == {"condition": "service_healthy"}
    assert postgres["image"].endswith("/postgres:16")
    assert "pg_isready" in postgres["healthcheck"]["test"]
    (data,) = postgres["volumes"]
    volume, _, path = data.partition(":")
    assert volume in compose()["volumes"]
    assert path == "/var/lib/postgresql/data"
    state = load_yaml(COMPOSE_CONFIG)["state"]
    url = urlsplit(state["url"])
    env = postgres["environment"]
    assert (url.hostname, url.port) == ("postgres", 5432)
    assert (url.username, url.password) == (env["POSTGRES_USER"], env["POSTGRES_PASSWORD"])
    assert url.path == "/" + env["POSTGRES_DB"]
    # Each replica its own host port: a range as wide as the replicas.
    (ports,) = bulkwatch["ports"]
    published = re.fullmatch(r"127\.0\.0\.1:(\d+)-(\d+):9464", ports)
    assert published is not None, ports
    low, high = map(int, published.groups())
    assert high - low + 1 == bulkwatch["deploy"]["replicas"]


@pytest.mark.parametrize("path", ["docker-compose.yaml", "docker-compose.replicas.yaml"])
def test_compose_references_only_services_volumes_and_files_that_exist(path: str) -> None:
    data = load_yaml(DEPLOY / path)
    for name, service in data["services"].items():
        assert set(service.get("depends_on", [])) <= set(data["services"]), name
        build = service.get("build")
        if build is not None:
            assert (DEPLOY / build["context"] / build["dockerfile"]).is_file(), name
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith("."):
                assert (DEPLOY / source).exists(), (name, source)
            else:
                assert source in data.get("volumes", {}), (name, source)


def test_prometheus_scrapes_each_compose_replica_and_loads_the_alerts() -> None:
    settings_port = load_yaml(COMPOSE_CONFIG)["server"]["port"]
    (job,) = load_yaml(DEPLOY / "prometheus" / "prometheus-replicas.yml")["scrape_configs"]
    (dns,) = job["dns_sd_configs"]
    assert dns["names"] == ["bulkwatch"]
    assert dns["type"] == "A"
    assert dns["port"] == settings_port
    mounted = compose()["services"]["prometheus"]["volumes"]
    assert "./prometheus/alerts.yml:/etc/prometheus/alerts.yml:ro" in mounted
    assert "./prometheus/prometheus-replicas.yml:/etc/prometheus/prometheus.yml:ro" in mounted


# --- systemd -----------------------------------------------------------------------------------


def test_the_systemd_drop_in_sets_the_replica_id_and_a_pgpass_credential() -> None:
    text = (DEPLOY / "systemd" / "replicas.conf").read_text(encoding="utf-8")
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert lines[0] == "[Service]"
    assert "Environment=BULKWATCH_STATE__REPLICA_ID=%H" in lines
    (credential,) = [line for line in lines if line.startswith("LoadCredential=")]
    name = credential.removeprefix("LoadCredential=").split(":", 1)[0]
    assert f"Environment=PGPASSFILE=%d/{name}" in lines
    # The unit's stop timeout covers the drain and the release of the leases.
    unit = (DEPLOY / "systemd" / "bulkwatch.service").read_text(encoding="utf-8")
    stop = re.search(r"^TimeoutStopSec=(\S+)$", unit, re.MULTILINE)
    assert stop is not None
    default_grace = Settings.model_fields["shutdown_grace"].default
    assert seconds(stop[1]) >= default_grace + 10
