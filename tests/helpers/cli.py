"""Running the real `bulkwatch` command line as a subprocess, as a user would."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["CLI", "Finished", "clean_env", "run_cli"]

CLI = (sys.executable, "-m", "bulkwatch")


def clean_env() -> dict[str, str]:
    """The parent's environment without anything that would change bulkwatch's settings."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("BULKWATCH_") and k != "CREDENTIALS_DIRECTORY"
    }
    env["PYTHONUNBUFFERED"] = "1"
    return env


@dataclass(frozen=True)
class Finished:
    """A command that ran to its end: its exit status and what it wrote."""

    code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    def logs(self) -> list[dict[str, Any]]:
        """The JSON log lines on stderr (for configs that ask for `log.format: json`)."""
        return [json.loads(line) for line in self.stderr.splitlines() if line.startswith("{")]


async def run_cli(
    *args: str | Path,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    within: float = 30.0,
) -> Finished:
    """Run `bulkwatch ARGS` to completion in a clean environment plus `env` (killed, and the
    test failed, after `within` seconds)."""
    proc = await asyncio.create_subprocess_exec(
        *CLI,
        *map(str, args),
        cwd=cwd,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**clean_env(), **(env or {})},
    )
    try:
        async with asyncio.timeout(within):
            out, err = await proc.communicate()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode is not None
    return Finished(proc.returncode, out.decode(), err.decode())
