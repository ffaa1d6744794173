"""Running the real `bulkwatch run` as a subprocess, killing it, and reading what it committed.

The simulator and the webhook receiver run in the test's own event loop, so every wait here is
asynchronous: the loop keeps answering the daemon while the test waits for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from bulkwatch.simulator import Simulator
from helpers.cli import CLI, clean_env
from helpers.webhook_receiver import Receiver


def write_config(
    tmp_path: Path, sim: Simulator, receiver: Receiver, **extra: Any
) -> tuple[Path, Path]:
    """A fast daemon config (state in tmp_path, JSON logs); returns (config, database)."""
    db = tmp_path / "state.db"
    data: dict[str, Any] = {
        "instance": "crash-test",
        "state": {"url": f"sqlite:///{db}"},
        "server": {"enabled": False},
        "defaults": {"interval": 0.1, "jitter": 0, "rate_limit": 1000, "burst": 40},
        "retry": {"initial": 0.05, "max_delay": 0.2},
        "delivery": {"idle_interval": 0.05},
        "log": {"level": "info", "format": "json"},
        "shutdown_grace": 1.5,
        "stores": sim.store_configs(),
        "notifiers": [{"name": "hook", "type": "webhook", "url": receiver.url, "timeout": 5}],
    }
    data.update(extra)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path, db


@dataclass
class Daemon:
    """One `bulkwatch run` process; its output goes to `log` (appended across runs)."""

    proc: asyncio.subprocess.Process
    log: Path

    @classmethod
    async def start(
        cls,
        config: Path | None,
        log: Path,
        *,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
    ) -> Daemon:
        """`bulkwatch run --config config`; with `config` None, the daemon finds its config
        itself (`env` may name it in `$BULKWATCH_CONFIG`, `cwd` may hold a bulkwatch.yaml)."""
        flag = [] if config is None else ["--config", str(config)]
        with log.open("ab") as out:
            proc = await asyncio.create_subprocess_exec(
                *CLI,
                "run",
                *flag,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                env={**clean_env(), **(env or {})},
                cwd=cwd,
            )
        return cls(proc, log)

    async def kill(self) -> None:
        """`kill -9`: no handler runs, nothing is flushed, nothing is committed."""
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGKILL)
        await self.proc.wait()

    async def terminate(self, within: float) -> int:
        """SIGTERM, then the exit code; the test fails if it takes longer than `within`."""
        self.proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(within):
            return await self.proc.wait()

    async def ensure_dead(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            await self.kill()


def read_db(db: Path, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Rows from the daemon's database as committed so far ([] before it exists or while it
    is being created); read-only, so the test never blocks the daemon's writes."""
    if not db.exists():
        return []
    try:
        with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1)) as c:
            return list(c.execute(sql, params))
    except sqlite3.OperationalError:  # mid-creation: no tables yet, or busy for a moment
        return []


def committed_statuses(db: Path) -> dict[tuple[str, str], str]:
    """(store, task id) -> the status the daemon has committed."""
    rows = read_db(db, "SELECT store, task_id, status FROM tasks")
    return {(store, task_id): status for store, task_id, status in rows}


def outbox_rows(db: Path) -> int:
    return len(read_db(db, "SELECT id FROM outbox"))


def outbox_left(db: Path) -> list[tuple[Any, ...]]:
    """Rows not delivered (pending or dead)."""
    return read_db(
        db, "SELECT event_id, event_type, status FROM outbox WHERE status != 'delivered'"
    )


def json_logs(log: Path) -> list[dict[str, Any]]:
    """The JSON log lines the daemon runs wrote (a killed run may leave half a line)."""
    out = []
    for line in log.read_text(encoding="utf-8", errors="replace").splitlines():
        with contextlib.suppress(ValueError):
            entry = json.loads(line)
            if isinstance(entry, dict):
                out.append(entry)
    return out
