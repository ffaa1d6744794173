"""A real Prometheus server for the deployment checks: long-running processes (it and the
daemons it scrapes), the shipped scrape config pointed at them, and its HTTP API."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import pytest
import yaml

from helpers.deploy_support import DEPLOY, load_yaml

__all__ = ["PROMETHEUS", "PrometheusAPI", "process", "prometheus_config", "until"]

PROMETHEUS = DEPLOY / "prometheus"
T = TypeVar("T")


@asynccontextmanager
async def process(
    *args: str | Path, log: Path, env: dict[str, str] | None = None
) -> AsyncIterator[asyncio.subprocess.Process]:
    """A long-running process, its output in `log`; stopped with SIGTERM, killed if stuck."""
    with log.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(
            *map(str, args), stdin=asyncio.subprocess.DEVNULL, stdout=out, stderr=out, env=env
        )
        try:
            yield proc
        finally:
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    async with asyncio.timeout(15):
                        await proc.wait()
                except TimeoutError:
                    proc.kill()
                    await proc.wait()


async def until(what: str, probe: Callable[[], Awaitable[T]], within: float = 30.0) -> T:
    """Call the coroutine function `probe` until it returns a truthy value; fail after
    `within` seconds. Prometheus scrapes and evaluates on its own clock, so there is no event
    to wait on: this asks again every 0.2 s."""
    try:
        async with asyncio.timeout(within):
            while True:
                found = await probe()
                if found:
                    return found
                await asyncio.sleep(0.2)
    except TimeoutError:
        pytest.fail(f"timed out waiting for {what}")


def prometheus_config(tmp_path: Path, *targets: str) -> Path:
    """The shipped scrape config, pointed at `targets`, scraping and evaluating every
    second."""
    config = load_yaml(PROMETHEUS / "prometheus.yml")
    config["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
    config["rule_files"] = [str(PROMETHEUS / name) for name in config["rule_files"]]
    (job,) = config["scrape_configs"]
    job["static_configs"] = [{"targets": list(targets)}]
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


class PrometheusAPI:
    """The HTTP API of the server on 127.0.0.1:`port`; empty answers while it starts."""

    def __init__(self, http: aiohttp.ClientSession, port: int) -> None:
        self.http = http
        self.base = f"http://127.0.0.1:{port}/api/v1"

    async def query(self, expr: str) -> list[dict[str, Any]]:
        try:
            async with self.http.get(f"{self.base}/query", params={"query": expr}) as resp:
                body = await resp.json()
        except aiohttp.ClientConnectionError:
            return []  # Prometheus is still starting
        assert body["status"] == "success", body
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    async def rules(self) -> list[dict[str, Any]]:
        """Every rule, once each has been evaluated without error; [] before that."""
        try:
            async with self.http.get(f"{self.base}/rules") as resp:
                body = await resp.json()
        except aiohttp.ClientConnectionError:
            return []
        rules = [r for g in body["data"]["groups"] for r in g["rules"]]
        return rules if rules and all(r["health"] == "ok" for r in rules) else []
