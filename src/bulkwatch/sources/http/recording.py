"""What a client saw, kept for `bulkwatch probe`: every final response with a few of its
headers, and every redirect, followed or refused. The daemon's clients keep none of it."""

from __future__ import annotations

from dataclasses import dataclass, field

from bulkwatch.sources.http.response import HttpResponse

__all__ = ["Recording"]


@dataclass(slots=True)
class Recording:
    """Appended to by an `ApiClient` built with it; read once the requests are done."""

    responses: list[HttpResponse] = field(default_factory=list)
    # (from, to) of each redirect followed (same scheme, host and port).
    followed: list[tuple[str, str]] = field(default_factory=list)
    # The origin of each redirect refused (another host): nothing was sent there.
    refused: list[str] = field(default_factory=list)
