"""What the Shoplazza and Shopline source tests share, beside the `platform_stub` and
`http_session` fixtures of conftest.py: the context a source is built with, the check on a
failed poll, and the shape of their tables of error answers."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import aiohttp
import pytest

from bulkwatch.config import Settings
from bulkwatch.model import EndpointKey, FailureKind, PollError
from bulkwatch.sources.base import Source, SourceContext


def source_context(
    session: aiohttp.ClientSession, *, max_body_bytes: int = 1 << 20
) -> SourceContext:
    """A source's context: `session`, and settings that set nothing but the body cap."""
    settings = Settings.model_validate(
        {"instance": "test", "defaults": {"max_body_bytes": max_body_bytes}}
    )
    return SourceContext(session=session, settings=settings)


async def failed_poll(source: Source, key: EndpointKey, now: datetime, token: str) -> PollError:
    """Poll `key` once, which must fail: the error, checked to name `key` and hide `token`."""
    with pytest.raises(PollError) as info:
        await source.poll(key, now)
    assert token not in str(info.value)
    assert info.value.key == key
    return info.value


@dataclass(frozen=True)
class Failure:
    """An error answer and what the poll must make of it."""

    status: int
    body: Any
    kind: FailureKind
    fragment: str
    headers: dict[str, str] = field(default_factory=dict)
    retry_after: float | None = None
