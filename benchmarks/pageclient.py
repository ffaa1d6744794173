"""A browser left open on the status page, and a script reading the API, far more eagerly
than either would: `/`, `/api/v1/summary`, `/api/v1/stores` and `/api/v1/tasks`, one after
another, then a pause of `--every` seconds; for `--duration` seconds. Its answers' times and
sizes are reported; what it costs the daemon shows in the daemon's own figures."""

from __future__ import annotations

import argparse
import time

import requests

from benchmarks.common import emit

__all__ = ["main"]

PATHS = ("/", "/api/v1/summary", "/api/v1/stores", "/api/v1/tasks")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", required=True, help="the daemon's server, http://host:port")
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--every", type=float, default=1.0, help="pause between rounds, s")
    args = parser.parse_args()
    times: dict[str, list[float]] = {path: [] for path in PATHS}
    sizes: dict[str, int] = {}
    errors = 0
    deadline = time.monotonic() + args.duration
    with requests.Session() as session:
        while time.monotonic() < deadline:
            for path in PATHS:
                started = time.perf_counter()
                try:
                    resp = session.get(args.url + path, timeout=10)
                    resp.raise_for_status()
                except requests.RequestException:
                    errors += 1  # not listening yet, during the daemon's start
                    continue
                times[path].append(time.perf_counter() - started)
                sizes[path] = len(resp.content)
            time.sleep(args.every)
    figures = {}
    for path, spent in times.items():
        spent.sort()
        figures[path] = {
            "requests": len(spent),
            "p50_ms": round(1000 * spent[len(spent) // 2], 1) if spent else None,
            "max_ms": round(1000 * spent[-1], 1) if spent else None,
            "bytes": sizes.get(path),
        }
    emit({"client": "page", "errors": errors, "paths": figures})


if __name__ == "__main__":
    main()
