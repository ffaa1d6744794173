"""What the Shoplazza and Shopline source tests share, beside the `platform_stub` and
`session` fixtures of conftest.py: how a source is built and polled, the check on a
failed poll, and the shape of their tables of error answers."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import aiohttp
import pytest

from bulkwatch.config import Settings, resolve_stores
from bulkwatch.model import EndpointKey, FailureKind, PollError, PollResult
from bulkwatch.sources.base import Source
from bulkwatch.sources.factory import make_source


def build_source(
    session: aiohttp.ClientSession,
    store: dict[str, Any],
    *,
    max_body_bytes: int = 1 << 20,
    defaults: dict[str, Any] | None = None,
) -> Source:
    """The source of one store (its config fields), built as the engine builds it."""
    settings = Settings.model_validate(
        {
            "instance": "test",
            "defaults": {"max_body_bytes": max_body_bytes, **(defaults or {})},
            "stores": [store],
        }
    )
    [resolved] = resolve_stores(settings, enabled_only=False)
    return make_source(resolved, session)


async def poll(source: Source, key: EndpointKey, now: datetime) -> PollResult:
    """One poll with nothing known: a `PollResult`, or the `PollError` it raised."""
    result = await source.poll_since(key, now, None)
    assert isinstance(result, PollResult)
    return result


async def failed_poll(source: Source, key: EndpointKey, now: datetime, token: str) -> PollError:
    """Poll `key` once, which must fail: the error, checked to name `key` and hide `token`."""
    with pytest.raises(PollError) as info:
        await poll(source, key, now)
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
