"""What every benchmark process shares: resource limits, CPU and memory readings, results."""

from __future__ import annotations

import json
import resource
import socket
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "RESULT_PREFIX",
    "SIDE_MARGIN",
    "Endpoint",
    "Meter",
    "cpu_seconds",
    "emit",
    "get_json",
    "load_endpoints",
    "peak_rss_mib",
    "raise_fd_limit",
    "rss_mib",
]

# A client's last stdout line starts with this and carries its figures as JSON.
RESULT_PREFIX = "BENCH-RESULT "
# The side clients of the daemon phase start their own engine or loop first; give them this
# long (and every daemon's warm-up this long past its first polls).
SIDE_MARGIN = 15.0


def get_json(url: str) -> Any:
    """The JSON answer of one of our own loopback servers."""
    with urllib.request.urlopen(url, timeout=30) as resp:  # noqa: S310 - our loopback URL
        return json.loads(resp.read())


def free_port() -> int:
    """A TCP port nothing listens on now, on the loopback address."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def raise_fd_limit() -> int:
    """Lift the soft open-files limit to the hard one: hundreds of sockets stay open."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = hard if hard != resource.RLIM_INFINITY else max(soft, 65536)
    if soft == resource.RLIM_INFINITY or soft >= wanted:
        return soft
    resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    return wanted


def cpu_seconds() -> float:
    """User + system CPU of this process (all its threads), in seconds."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def peak_rss_mib() -> float:
    """The highest resident set size this process has had (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rss_mib() -> float:
    """The resident set size now, from /proc (Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One GET exactly as bulkwatch's source sends it (same URL, query and headers)."""

    url: str
    params: dict[str, str]
    headers: dict[str, str]

    @property
    def full_url(self) -> str:
        query = "&".join(f"{k}={v}" for k, v in self.params.items())
        return f"{self.url}?{query}" if query else self.url


def load_endpoints(path: Path) -> list[Endpoint]:
    """The endpoints file written by the orchestrator."""
    raw: list[dict[str, Any]] = json.loads(path.read_text())
    return [Endpoint(e["url"], e["params"], e["headers"]) for e in raw]


class Meter:
    """CPU and wall time between `start()` and `stop()` of this process."""

    def __init__(self) -> None:
        self._cpu0 = self._wall0 = 0.0
        self.cpu = self.wall = 0.0

    def start(self) -> None:
        self._cpu0, self._wall0 = cpu_seconds(), time.perf_counter()

    def stop(self) -> None:
        self.cpu = cpu_seconds() - self._cpu0
        self.wall = time.perf_counter() - self._wall0

    def figures(self, polls: int) -> dict[str, float]:
        """polls/s, CPU seconds per 1,000 polls and CPU % of one core over the window."""
        return {
            "polls": polls,
            "wall_s": round(self.wall, 3),
            "cpu_s": round(self.cpu, 3),
            "polls_per_s": round(polls / self.wall, 2) if self.wall else 0.0,
            "cpu_s_per_1000_polls": round(1000 * self.cpu / polls, 4) if polls else 0.0,
            "cpu_percent": round(100 * self.cpu / self.wall, 2) if self.wall else 0.0,
        }


def emit(result: dict[str, Any]) -> None:
    """Hand the figures to the orchestrator on stdout."""
    result.setdefault("peak_rss_mib", round(peak_rss_mib(), 1))
    sys.stdout.write(RESULT_PREFIX + json.dumps(result) + "\n")
    sys.stdout.flush()
