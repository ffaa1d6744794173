"""The simulator's process: `python -m bulkwatch.simulator` with the open-files limit raised."""

from __future__ import annotations

import sys

from benchmarks.common import raise_fd_limit
from bulkwatch.simulator.__main__ import main as simulator_main

if __name__ == "__main__":
    raise_fd_limit()
    simulator_main(sys.argv[1:])
