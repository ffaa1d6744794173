"""Starting the benchmark's processes, collecting their figures, and watching the machine."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.common import RESULT_PREFIX

__all__ = ["ROOT", "CpuWatch", "Server", "collect", "run_clients", "start_client"]

ROOT = Path(__file__).resolve().parent.parent
_TICKS = os.sysconf("SC_CLK_TCK")


class Server:
    """A background process (simulator, receiver) whose output goes to a log file."""

    def __init__(self, name: str, argv: Sequence[str], logs: Path) -> None:
        self.name = name
        self.log = logs / f"{name}.log"
        self._out = self.log.open("w")
        self.popen = subprocess.Popen(  # noqa: S603 - our own modules, fixed arguments
            [sys.executable, *argv], stdout=self._out, stderr=subprocess.STDOUT, cwd=ROOT
        )

    def wait_for_url(self, marker: str, within: float = 180.0) -> str:
        """The URL printed after `marker` once the process has started."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            for line in self.log.read_text().splitlines():
                if marker in line:
                    return line.split(marker, 1)[1].strip().split()[0]
            if self.popen.poll() is not None:
                raise RuntimeError(f"{self.name} exited:\n{self.log.read_text()[-3000:]}")
            time.sleep(0.1)  # a log file has nothing to wait on
        raise RuntimeError(f"{self.name} did not start within {within:g} s")

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(10)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        self._out.close()


def start_client(name: str, argv: Sequence[str], logs: Path) -> subprocess.Popen[str]:
    """A client process: figures on stdout (one line), logs to `<logs>/<name>.log`."""
    print(f"  running {name} ...", flush=True)
    with (logs / f"{name}.log").open("w") as log:
        return subprocess.Popen(  # noqa: S603 - our own modules, fixed arguments
            [sys.executable, *argv], stdout=subprocess.PIPE, stderr=log, cwd=ROOT, text=True
        )


def collect(name: str, proc: subprocess.Popen[str], logs: Path) -> dict[str, Any]:
    """Wait for a client and return its figures; fail loudly with its log if it failed."""
    out, _ = proc.communicate()
    for line in reversed(out.splitlines()):
        if line.startswith(RESULT_PREFIX):
            result: dict[str, Any] = json.loads(line.removeprefix(RESULT_PREFIX))
            return result
    tail = (logs / f"{name}.log").read_text()[-3000:]
    raise RuntimeError(f"client {name} failed (exit {proc.returncode}):\n{out[-2000:]}\n{tail}")


def run_clients(clients: dict[str, Sequence[str]], logs: Path) -> dict[str, dict[str, Any]]:
    """Start the clients together, wait for all, return each one's figures."""
    procs = {name: start_client(name, argv, logs) for name, argv in clients.items()}
    return {name: collect(name, proc, logs) for name, proc in procs.items()}


def _machine_ticks() -> tuple[int, int]:
    """(busy, total) CPU ticks of the whole machine since boot."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return sum(fields) - idle, sum(fields)


def _process_ticks(pid: int) -> int:
    """User + system CPU ticks of one process."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat.rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


@dataclass
class CpuWatch:
    """What the whole machine and the simulator did during one phase (Linux /proc)."""

    simulator_pid: int
    _start: tuple[int, int, int, float] = (0, 0, 0, 0.0)

    def start(self) -> None:
        busy, total = _machine_ticks()
        self._start = (busy, total, _process_ticks(self.simulator_pid), time.monotonic())

    def stop(self) -> dict[str, float]:
        busy0, total0, sim0, t0 = self._start
        busy, total = _machine_ticks()
        sim = _process_ticks(self.simulator_pid)
        wall = max(time.monotonic() - t0, 1e-9)
        cores = os.cpu_count() or 1
        return {
            # 100 % = every core busy. Other people's work on the machine shows up here.
            "machine_busy_percent": round(100 * (busy - busy0) / max(total - total0, 1), 1),
            "simulator_cpu_percent": round(100 * (sim - sim0) / _TICKS / wall, 1),
            "cores": cores,
            "loadavg_end": round(os.getloadavg()[0], 2),
        }
