"""The integrity check at open: a database with corrupt pages is refused, not used.

`PRAGMA quick_check` reads every page and checks the b-tree structure (not index contents,
which `integrity_check` would add at several times the cost). It is bounded in time: past
`timeout` seconds it is interrupted (`sqlite3_interrupt` from a timer thread, which stops the
check inside its one long opcode), logged, and the database is used unchecked, since a slow
disk or a huge file must not keep the daemon from starting.
"""

from __future__ import annotations

import sqlite3
import threading
import time

import structlog

from bulkwatch.store.base import StoreCorruptError

__all__ = ["quick_check"]

_log = structlog.get_logger("bulkwatch.store")
_SHOWN = 3  # problems quoted in the error


def quick_check(conn: sqlite3.Connection, path: str, timeout: float) -> None:
    """Run `PRAGMA quick_check` on `conn` for at most `timeout` seconds; raise
    `StoreCorruptError` naming `path` and the first problems when it finds any."""
    deadline = time.monotonic() + timeout
    # The timer stops the check itself; the handler (every instruction of the short program
    # around it) a check whose time ran out before it began.
    timer = threading.Timer(timeout, conn.interrupt)
    timer.daemon = True
    conn.set_progress_handler(lambda: int(time.monotonic() >= deadline), 1)
    timer.start()
    try:
        rows = conn.execute(f"PRAGMA quick_check({_SHOWN})").fetchall()
    except sqlite3.OperationalError as exc:
        if "interrupted" not in str(exc):
            raise
        _log.warning(
            "state database check not finished in time; starting unchecked",
            path=path,
            timeout_s=timeout,
        )
        return
    except sqlite3.DatabaseError as exc:  # too broken even to check
        raise StoreCorruptError(_message(path, [str(exc)])) from exc
    finally:
        timer.cancel()
        conn.set_progress_handler(None, 0)
    problems = [line for (text,) in rows for line in str(text).splitlines()]
    problems = [p for p in problems if not p.startswith("*** in database")]
    if problems != ["ok"]:
        raise StoreCorruptError(_message(path, problems))


def _message(path: str, problems: list[str]) -> str:
    shown = "; ".join(problems[:_SHOWN])
    return (
        f"state.url: {path} is corrupt (PRAGMA quick_check: {shown}); restore it from a "
        "backup, or move it aside to start with a fresh state (its tasks are baselined again)"
    )
