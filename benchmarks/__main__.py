"""`python -m benchmarks`: the whole benchmark (see benchmarks/run.py)."""

from __future__ import annotations

from benchmarks.run import main

main()
