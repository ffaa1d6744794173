"""The bulkwatch benchmark: `make bench` (or `python -m benchmarks`); see docs/performance.md."""
