"""The built container image, run with `buildah run --isolation=chroot` (make image-test).

Marked `image`: `scripts/image-test.sh` builds the image and runs these with
BULKWATCH_TEST_IMAGE naming it. chroot isolation shares the host's network, so the daemon in
the image reaches the simulator this test serves on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml

from bulkwatch.model import TaskStatus
from bulkwatch.simulator import Simulator, make_stores, run_simulator
from helpers.deploy_support import run, tool

pytestmark = [pytest.mark.image, pytest.mark.timeout(300)]

# The port the image's HEALTHCHECK asks (the container config's server.port).
HEALTH_PORT = 9464
UID = 10001
TEST_CONFIG = "/etc/bulkwatch/test.yaml"  # beside the baked-in config.yaml


@pytest.fixture(scope="module")
def image() -> str:
    name = os.environ.get("BULKWATCH_TEST_IMAGE")
    if not name:
        message = "BULKWATCH_TEST_IMAGE is not set: `make image-test` builds the image first"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return name


@pytest.fixture
def container(image: str) -> Iterator[str]:
    """A fresh working container of the image, removed afterwards."""
    buildah = tool("buildah")
    made = run(buildah, "from", "--pull=never", image)
    assert made.code == 0, made.output
    name = made.stdout.strip().splitlines()[-1]
    try:
        yield name
    finally:
        run(buildah, "rm", name)


def inside(container: str, *command: str) -> list[str]:
    return [tool("buildah"), "run", "--isolation=chroot", container, "--", *command]


async def execute(*args: str, within: float = 60) -> tuple[int, str]:
    """Run to completion without blocking the loop (the simulator answers meanwhile)."""
    proc = await asyncio.create_subprocess_exec(
        *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    try:
        async with asyncio.timeout(within):
            out, _ = await proc.communicate()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode is not None
    return proc.returncode, out.decode()


def copy_config(container: str, tmp_path: Path, data: dict[str, Any]) -> str:
    local = tmp_path / "test.yaml"
    local.write_text(yaml.safe_dump(data), encoding="utf-8")
    copied = run(tool("buildah"), "copy", "--chown", f"{UID}:{UID}", container, local, TEST_CONFIG)
    assert copied.code == 0, copied.output
    return TEST_CONFIG


def config_for(sim: Simulator, **extra: Any) -> dict[str, Any]:
    # No state.url: the default, relative sqlite:///bulkwatch.db, must land in the volume.
    return {
        "instance": "image-test",
        "server": {"enabled": False},
        "log": {"format": "json"},
        "stores": sim.store_configs(),
        **extra,
    }


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    async with run_simulator(stores=make_stores(1, 1)) as simulator:
        yield simulator


def test_the_image_runs_bulkwatch_unprivileged_in_exec_form(image: str) -> None:
    inspected = run(tool("buildah"), "inspect", "--type", "image", image)
    assert inspected.code == 0, inspected.output
    config = json.loads(inspected.stdout)["Docker"]["config"]
    assert config["User"] == f"{UID}:{UID}"
    assert config["Entrypoint"] == ["bulkwatch"]
    assert config["Cmd"] == ["run"]
    assert config["WorkingDir"] == "/var/lib/bulkwatch"
    assert "/var/lib/bulkwatch" in config["Volumes"]
    assert f"{HEALTH_PORT}/tcp" in config["ExposedPorts"]
    assert "BULKWATCH_CONFIG=/etc/bulkwatch/config.yaml" in config["Env"]
    assert any("/healthz" in part for part in config["Healthcheck"]["Test"])


def test_the_config_baked_into_the_image_asks_for_yours_in_one_line(container: str) -> None:
    # It watches no store: a container started without a config mounted over it exits 2
    # at once (not a healthy-looking daemon that watches nothing).
    result = run(*inside(container, "bulkwatch", "check-config"))
    assert result.code == 2, result.output
    assert (
        "config error: stores: /etc/bulkwatch/config.yaml configures no store; add one "
        "(config.example.yaml documents the fields)"
    ) in result.stderr.splitlines()


async def test_once_polls_the_simulator_and_writes_state_to_the_volume(
    container: str, sim: Simulator, tmp_path: Path
) -> None:
    sim.create_task("lazza-1", "in-image", TaskStatus.RUNNING)
    config = copy_config(container, tmp_path, config_for(sim))

    code, output = await execute(*inside(container, "bulkwatch", "once", "--config", config))

    assert code == 0, output
    assert "lazza-1/in-image" in output  # the default log notifier reports the event
    assert sim.request_count("lazza-1") == 1
    listing = run(*inside(container, "stat", "-c", "%u %n", "/var/lib/bulkwatch/bulkwatch.db"))
    assert listing.stdout.split() == [str(UID), "/var/lib/bulkwatch/bulkwatch.db"], listing.output


def descendants(pid: int) -> list[int]:
    """Every process below `pid` (chroot isolation keeps the host's process table)."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # the process ended while we looked
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        parents.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        children = parents.get(todo.pop(), [])
        found += children
        todo += children
    return found


def cmdline(pid: int) -> list[str]:
    try:
        return (Path(f"/proc/{pid}/cmdline").read_bytes().decode()).split("\0")
    except OSError:
        return []


@asynccontextmanager
async def daemon_in(container: str, config: str) -> AsyncIterator[asyncio.subprocess.Process]:
    proc = await asyncio.create_subprocess_exec(
        *inside(container, "bulkwatch", "run", "--config", config),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        yield proc
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_the_daemon_passes_the_healthcheck_and_drains_on_sigterm(
    container: str, sim: Simulator, tmp_path: Path
) -> None:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", HEALTH_PORT))
        except OSError:
            pytest.fail(f"port {HEALTH_PORT} is taken: the HEALTHCHECK needs it for this test")
    extra = {
        "server": {"host": "127.0.0.1", "port": HEALTH_PORT},
        "defaults": {"interval": 1},
        "shutdown_grace": 3,
    }
    config = copy_config(container, tmp_path, config_for(sim, **extra))
    inspected = run(tool("buildah"), "inspect", "--type", "container", container)
    test = json.loads(inspected.stdout)["Docker"]["config"]["Healthcheck"]["Test"]
    assert test[0] == "CMD"

    async with daemon_in(container, config) as proc:
        await sim.wait_for_requests("lazza-1", 1)
        # The HEALTHCHECK command itself, as the container engine would run it.
        healthy = False
        async with asyncio.timeout(30):
            while not healthy:
                code, _ = await execute(*inside(container, *test[1:]))
                healthy = code == 0
        # chroot isolation runs the daemon as a host process below buildah: signal it there,
        # as a container engine signals PID 1.
        (pid,) = [
            p
            for p in descendants(proc.pid)
            if config in cmdline(p) and "buildah" not in cmdline(p)[0]
        ]
        os.kill(pid, signal.SIGTERM)
        assert proc.stdout is not None
        async with asyncio.timeout(20):
            output = (await proc.stdout.read()).decode()
            code = await proc.wait()

    assert code == 0, output
    events = [json.loads(line)["event"] for line in output.splitlines() if line.startswith("{")]
    assert "stopping: finishing in-flight polls and deliveries" in events
    assert events[-1] == "bulkwatch stopped"
