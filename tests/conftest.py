"""Fixtures shared by several test modules."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest

from helpers import pg_support
from helpers.platform_stub import PlatformStub, run_stub
from helpers.webhook_receiver import Receiver, running_receiver

# The state-store backends (`backend`, `store`) for the contract tests.
pytest_plugins = ["helpers.store_fixtures"]

# Its asserts check the tests' own polls: show their values when one fails, as in a test.
pytest.register_assert_rewrite("helpers.source_support")


def pytest_report_header() -> str:
    """Say at the top of every run whether the PostgreSQL store tests run or are skipped."""
    problem = pg_support.unavailable()
    if problem is None:
        return f"postgresql: {pg_support.SERVER_URL} answers; the PostgreSQL store tests run"
    return f"postgresql: SKIPPING the PostgreSQL store tests: {problem}"


@pytest.hookimpl(trylast=True)  # after the short summary, just above the final count
def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """One line at the end when PostgreSQL tests were skipped, so nobody takes a green run
    without PostgreSQL for a run with it."""
    skipped = [
        r
        for r in terminalreporter.stats.get("skipped", [])
        if pg_support.SKIPPED in str(r.longrepr)
    ]
    if skipped:
        terminalreporter.write_sep(
            "=",
            f"{len(skipped)} PostgreSQL store tests SKIPPED: {pg_support.unavailable()}",
            yellow=True,
            bold=True,
        )


@pytest.fixture
async def pg_url() -> AsyncIterator[str]:
    """A state URL naming a fresh schema of the local PostgreSQL (skips, saying so, when it
    does not answer)."""
    async with pg_support.fresh_schema() as (url, _):
        yield url


@pytest.fixture
async def platform_stub() -> AsyncIterator[PlatformStub]:
    """A scripted Shoplazza/Shopline stand-in on 127.0.0.1."""
    async with run_stub() as stub:
        yield stub


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    """A real client session, closed after the test."""
    async with aiohttp.ClientSession() as client:
        yield client


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    """A webhook receiver on 127.0.0.1 that accepts everything (tests may script replies)."""
    async with running_receiver() as r:
        yield r
