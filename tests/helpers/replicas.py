"""Several real `bulkwatch run` replicas sharing the stores through PostgreSQL leases.

`running_cluster` brings up, for one test: a fresh PostgreSQL database; the simulator on one
port per replica (`sim_fronts`, so each platform request names its sender); the webhook
receiver; one TCP proxy per replica in front of PostgreSQL (`pg_proxy`, so one replica can be
cut off); and the replicas' config files. Replicas are started, killed and stopped by the
test (`Replica.start`, `kill`, `terminate`); their /metrics and /readyz are read over HTTP.
Everything is stopped and dropped afterwards, whatever the test did.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import yaml
from prometheus_client.parser import text_string_to_metric_families

from bulkwatch.simulator import StoreSpec
from helpers.crash_support import Daemon, json_logs
from helpers.pg_proxy import PgProxy, running_proxy
from helpers.pg_support import fresh_database, run_sql
from helpers.sim_fronts import Fronts, running_fronts
from helpers.support import free_port
from helpers.webhook_receiver import Receiver, Reply, running_receiver

__all__ = ["Cluster", "Replica", "Timing", "eventually", "running_cluster", "watching_readyz"]


@dataclass(frozen=True)
class Timing:
    """The replicas' clocks: lease TTL, poll interval, delivery claim timeout (seconds)."""

    lease_ttl: float = 4.0
    interval: float = 1.0
    claim_timeout: float = 5.0

    @property
    def round_every(self) -> float:
        """How often a replica renews, counts the live replicas and claims up to its fair
        share (the lease keeper's round: TTL/3)."""
        return self.lease_ttl / 3


@dataclass
class Replica:
    """One `bulkwatch run` process, its config, its log and its own way to PostgreSQL."""

    index: int
    replica_id: str
    config: Path
    log: Path
    port: int
    proxy: PgProxy
    daemon: Daemon | None = None
    killed: bool = False  # by the test

    @property
    def running(self) -> bool:
        return self.daemon is not None and self.daemon.proc.returncode is None

    async def start(self) -> None:
        self.killed = False
        self.daemon = await Daemon.start(self.config, self.log)

    async def kill(self) -> None:
        """`kill -9`: no handler runs, no lease is released."""
        self.killed = True
        if self.daemon is not None:
            await self.daemon.kill()

    async def terminate(self, within: float = 15.0) -> int:
        """SIGTERM, then its exit code (the test fails past `within` seconds)."""
        assert self.daemon is not None
        self.killed = True
        return await self.daemon.terminate(within)

    def logs(self) -> list[dict[str, Any]]:
        return json_logs(self.log) if self.log.exists() else []

    def check_alive(self) -> None:
        """Fail the test, with the end of its log, if the replica exited by itself."""
        if self.daemon is not None and self.daemon.proc.returncode is not None and not self.killed:
            tail = self.log.read_text(encoding="utf-8", errors="replace")[-3000:]
            raise AssertionError(
                f"{self.replica_id} exited ({self.daemon.proc.returncode}):\n{tail}"
            )

    async def metrics(self, session: aiohttp.ClientSession) -> dict[str, float] | None:
        """Its /metrics as `name{label="v",...}` -> value; None while it does not answer (or
        while something else answers on its port: the port was free when it was chosen)."""
        self.check_alive()
        try:
            async with session.get(f"http://127.0.0.1:{self.port}/metrics") as resp:
                text = await resp.text()
                if resp.status != 200:
                    return None
        except (aiohttp.ClientError, TimeoutError):
            return None
        out: dict[str, float] = {}
        try:
            for family in text_string_to_metric_families(text):
                for s in family.samples:
                    labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
                    out[f"{s.name}{{{labels}}}" if labels else s.name] = s.value
        except ValueError:
            return None
        if f'bulkwatch_replica_info{{replica="{self.replica_id}"}}' not in out:
            return None  # not this replica's
        return out

    async def owned(self, session: aiohttp.ClientSession) -> int | None:
        """`bulkwatch_lease_stores_owned`, or None while it does not answer."""
        got = await self.metrics(session)
        if got is None or "bulkwatch_lease_stores_owned" not in got:
            return None
        return int(got["bulkwatch_lease_stores_owned"])

    async def readyz(self, session: aiohttp.ClientSession) -> int | None:
        """The HTTP status of its /readyz (200 ready, 503 not), None while it does not answer."""
        self.check_alive()
        try:
            async with session.get(f"http://127.0.0.1:{self.port}/readyz") as resp:
                await resp.read()
                return resp.status
        except (aiohttp.ClientError, TimeoutError):
            return None


@dataclass
class Cluster:
    """What `running_cluster` brought up."""

    database: str  # the URL of the fresh database, straight to the server (for the test)
    fronts: Fronts
    receiver: Receiver
    replicas: list[Replica]
    timing: Timing
    session: aiohttp.ClientSession

    def __getitem__(self, index: int) -> Replica:
        return self.replicas[index]

    async def owned(self) -> list[int | None]:
        """Each replica's `bulkwatch_lease_stores_owned` (None: it does not answer)."""
        return [await r.owned(self.session) for r in self.replicas]

    async def outbox_left(self) -> int:
        """Outbox rows not yet delivered (pending, claimed or dead)."""
        rows = await run_sql(
            self.database, "SELECT count(*) FROM outbox WHERE status <> 'delivered'"
        )
        return int(rows[0][0])


@asynccontextmanager
async def watching_readyz(
    replica: Replica, session: aiohttp.ClientSession, every: float = 0.25
) -> AsyncIterator[list[tuple[float, int | None]]]:
    """Ask `replica`'s /readyz every `every` seconds while the block runs; yields the answers
    so far as (when it was asked, monotonic; its HTTP status, None without an answer)."""
    seen: list[tuple[float, int | None]] = []

    async def ask(at: float) -> None:
        seen.append((at, await replica.readyz(session)))

    async def watch() -> None:
        async with asyncio.TaskGroup() as tg:  # an answer may take seconds: ask meanwhile
            while True:
                tg.create_task(ask(time.monotonic()))
                await asyncio.sleep(every)

    task = asyncio.create_task(watch())
    try:
        yield seen
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def eventually(
    check: Callable[[], Awaitable[bool]], within: float, what: str, every: float = 0.1
) -> float:
    """Wait until `check()` is true; return when it was (monotonic). Fails the test with
    `what` after `within` seconds."""
    deadline = time.monotonic() + within
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {within:g} s: {what}")
        await asyncio.sleep(every)
    return time.monotonic()


def _config(
    path: Path,
    *,
    url: str,
    replica_id: str,
    port: int,
    stores: list[dict[str, Any]],
    hook: str,
    timing: Timing,
) -> Path:
    data: dict[str, Any] = {
        "instance": "replicas-test",
        "state": {
            "url": url,
            "pool_size": 4,
            "replicas": True,
            "lease_ttl": timing.lease_ttl,
            "replica_id": replica_id,
        },
        "server": {"host": "127.0.0.1", "port": port},
        "defaults": {"interval": timing.interval, "jitter": 0, "rate_limit": 1000, "burst": 40},
        "retry": {"initial": 0.05, "max_delay": 0.2},
        "delivery": {"idle_interval": 0.05, "claim_timeout": timing.claim_timeout},
        "log": {"level": "info", "format": "json"},
        "shutdown_grace": 1.5,
        "stores": stores,
        "notifiers": [{"name": "hook", "type": "webhook", "url": hook, "timeout": 2}],
    }
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def _through(database: str, proxy: PgProxy) -> str:
    """The database's URL with the proxy's port in place of the server's."""
    parts = urlsplit(database)
    host = (
        f"{parts.username}@127.0.0.1:{proxy.port}" if parts.username else f"127.0.0.1:{proxy.port}"
    )
    return parts._replace(netloc=host).geturl()


@asynccontextmanager
async def running_cluster(
    tmp_path: Path, stores: Iterable[StoreSpec], count: int = 3, timing: Timing | None = None
) -> AsyncIterator[Cluster]:
    """`count` replicas (not started) of the simulated `stores`, each behind its own proxy."""
    timing = timing or Timing()
    async with contextlib.AsyncExitStack() as stack:
        database = await stack.enter_async_context(fresh_database())
        server = urlsplit(database)
        upstream = (server.hostname or "127.0.0.1", server.port or 5432)
        fronts = await stack.enter_async_context(running_fronts(stores, count))
        receiver = await stack.enter_async_context(running_receiver())
        receiver.default = Reply(204)
        session = await stack.enter_async_context(
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5))
        )
        replicas = []
        for i in range(count):
            proxy = await stack.enter_async_context(running_proxy(upstream))
            replica_id = f"replica-{i}"
            port = free_port()
            config = _config(
                tmp_path / f"{replica_id}.yaml",
                url=_through(database, proxy),
                replica_id=replica_id,
                port=port,
                stores=fronts.store_configs(i),
                hook=receiver.url,
                timing=timing,
            )
            replicas.append(
                Replica(i, replica_id, config, tmp_path / f"{replica_id}.log", port, proxy)
            )
        cluster = Cluster(database, fronts, receiver, replicas, timing, session)
        try:
            yield cluster
        finally:
            for replica in replicas:  # before the proxies and the database go
                if replica.daemon is not None:
                    await replica.daemon.ensure_dead()
