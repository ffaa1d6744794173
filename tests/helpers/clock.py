"""The one manual clock of the tests: the wall clock of whatever a test runs (the engine, the
dispatcher, the simulator), moved by the test alone.

Everything that reads it sees the same instant, so every date a test sees (a task's creation,
a retry falling due, a stall, an expiry) follows from it and never from today's date.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

START = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)


@dataclass
class ManualClock:
    """A wall clock that stands still until the test moves it (`advance`, or set `now`)."""

    now: datetime = START

    def __call__(self) -> datetime:
        return self.now

    def timestamp(self) -> float:
        """The same instant for the simulator, which counts POSIX seconds."""
        return self.now.timestamp()

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)
