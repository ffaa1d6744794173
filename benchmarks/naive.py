"""What a user writes without bulkwatch: one `requests` session, one endpoint after another."""

from __future__ import annotations

import argparse
import itertools
import time
from pathlib import Path

import requests

from benchmarks.common import Meter, emit, load_endpoints

__all__ = ["main"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--endpoints", type=Path, required=True)
    parser.add_argument("--duration", type=float, default=30.0)
    parser.add_argument("--timeout", type=float, default=10.0)
    args = parser.parse_args()
    endpoints = load_endpoints(args.endpoints)
    polls = errors = 0
    meter = Meter()
    # A session keeps connections alive: the fair version of the script, not the naive one.
    with requests.Session() as session:
        meter.start()
        deadline = time.perf_counter() + args.duration
        for ep in itertools.cycle(endpoints):
            if time.perf_counter() >= deadline:
                break
            try:
                resp = session.get(
                    ep.url, params=ep.params, headers=ep.headers, timeout=args.timeout
                )
                resp.json()
            except (requests.RequestException, ValueError):
                errors += 1
            polls += 1
        meter.stop()
    emit(
        {
            "client": "requests",
            "endpoints": len(endpoints),
            **meter.figures(polls),
            "errors": errors,
        }
    )


if __name__ == "__main__":
    main()
