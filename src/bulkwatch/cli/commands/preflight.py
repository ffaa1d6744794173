"""Checks of a valid config against this machine, made before anything is created: the state
database's directory, the programs of `command` notifiers, the server's port.

`bulkwatch run` and `once` make them before opening the state (so a failed start leaves no
database behind); `bulkwatch check-config --machine` makes them on request. Each problem is
one line naming its field. They only look: no file is created, no port kept.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field
from pathlib import Path

from bulkwatch.config import Settings
from bulkwatch.store.factory import sqlite_file
from bulkwatch.store.sqlite.lock import holder_of

__all__ = ["MachineReport", "check_machine"]


@dataclass(slots=True)
class MachineReport:
    """What the checks found: `problems` (bad config for this machine: exit 2), `port`
    (the server port is taken: `run` exits 1, it may be free again soon), `in_use` (a
    running bulkwatch holds the state: exit 3), and `checked` (what passed, for a summary)."""

    problems: list[str] = field(default_factory=list)
    port: str | None = None
    in_use: str | None = None
    checked: list[str] = field(default_factory=list)


def _state_problem(url: str) -> str | None:
    """Why the database of a SQLite `url` cannot be opened or created here, or None."""
    path = sqlite_file(url)
    if path is None:
        return None
    target = Path(path).absolute()
    if target.exists():
        if not target.is_file():
            return f"state.url: {target} is not a file"
        if not os.access(target, os.R_OK | os.W_OK):
            return f"state.url: {target} is not readable and writable by this user"
        folder = target.parent
    else:
        folder = target.parent
        while not folder.exists():  # created on the first start, like its parents
            folder = folder.parent
    if not folder.is_dir():
        return f"state.url: cannot create {target}: {folder} is not a directory"
    if not os.access(folder, os.W_OK | os.X_OK):
        return f"state.url: cannot write in {folder} (the state database and its lock live there)"
    return None


def _port_problem(host: str, port: int) -> str | None:
    """Why `host:port` cannot be listened on now, or None. Binds and lets go at once."""
    try:
        addresses = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        return f"server: cannot listen on {host}:{port}: {exc.strerror}"
    for family, kind, proto, _, address in addresses:
        with socket.socket(family, kind, proto) as probe:
            # As the server binds: a port left in TIME_WAIT by a stopped daemon is free.
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(address)
            except OSError as exc:
                reason = exc.strerror or str(exc)
                return f"server: cannot listen on {host}:{port}: {reason}"
    return None


def check_machine(settings: Settings, *, server: bool) -> MachineReport:
    """Check the state location, every notifier's needs and (with `server`, when enabled)
    the server port, in that order."""
    report = MachineReport()
    if (problem := _state_problem(settings.state.url)) is not None:
        report.problems.append(problem)
    else:
        report.checked.append("state directory writable")
        database = sqlite_file(settings.state.url)
        if database is not None and (holder := holder_of(database)) is not None:
            report.in_use = (
                f"state.url: {database} is in use by another bulkwatch ({holder}); "
                "one daemon per state file"
            )
    programs = 0
    for i, notifier in enumerate(settings.notifiers):
        found = notifier.machine_problems()
        report.problems.extend(f"notifiers[{i}].{line}" for line in found)
        programs += not found and notifier.type == "command"
    if programs:
        report.checked.append(f"{programs} command program(s) found")
    if server and settings.server.enabled and settings.server.port != 0:
        host, port = settings.server.host, settings.server.port
        # A running daemon on this state holds the port too: that is the problem to name.
        if report.in_use is None:
            report.port = _port_problem(host, port)
            if report.port is None:
                report.checked.append(f"port {host}:{port} free")
    return report
