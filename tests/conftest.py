"""Fixtures shared by several test modules."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest

from helpers.platform_stub import PlatformStub, run_stub

# Its asserts check the tests' own polls: show their values when one fails, as in a test.
pytest.register_assert_rewrite("helpers.source_support")


@pytest.fixture
async def platform_stub() -> AsyncIterator[PlatformStub]:
    """A scripted Shoplazza/Shopline stand-in on 127.0.0.1."""
    async with run_stub() as stub:
        yield stub


@pytest.fixture
async def http_session() -> AsyncIterator[aiohttp.ClientSession]:
    """A real client session, closed after the test."""
    async with aiohttp.ClientSession() as session:
        yield session
