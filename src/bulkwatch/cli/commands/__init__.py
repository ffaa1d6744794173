"""What each CLI command does, as plain functions of Settings (the CLI only parses), one module
per topic: the daemon (`run`, `once`), the config (`check-config`, `notify-test`), the state
database (`status`, `deliveries`), the platforms (`probe`) and the simulator (`simulate`,
`demo`)."""

from __future__ import annotations

from bulkwatch.cli.commands.checks import check_config, notify_test, summarise
from bulkwatch.cli.commands.daemon import once, run, serve_daemon
from bulkwatch.cli.commands.probe import probe
from bulkwatch.cli.commands.simulation import demo, simulate
from bulkwatch.cli.commands.state import NoStateError, deliveries_list, deliveries_retry, status

__all__ = [
    "NoStateError",
    "check_config",
    "deliveries_list",
    "deliveries_retry",
    "demo",
    "notify_test",
    "once",
    "probe",
    "run",
    "serve_daemon",
    "simulate",
    "status",
    "summarise",
]
