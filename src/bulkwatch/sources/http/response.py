"""A platform's answer as the sources read it, and the fingerprint of a poll's answers."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

__all__ = ["Fingerprint", "HttpResponse"]


@dataclass(frozen=True, slots=True)
class HttpResponse:
    """A complete response: status, body (at most the cap), request id, parsed Retry-After."""

    status: int
    body: bytes
    request_id: str | None
    retry_after: float | None
    error_text: str | None  # the platform's own error text (non-2xx only), already redacted
    headers: dict[str, str] | None = None  # a few headers, when the client records

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


class Fingerprint:
    """A digest of the responses one poll read: the status and body of each page, in order.

    BLAKE2b with 128 bits: two different responses would need a collision to look the same,
    so a match means the same bytes. Each page is framed by its length, so one page never
    matches the start of a longer poll.
    """

    __slots__ = ("_hash",)

    def __init__(self) -> None:
        self._hash = hashlib.blake2b(digest_size=16)

    def add(self, resp: HttpResponse) -> bytes:
        """Add one response; return the digest of all responses added so far."""
        self._hash.update(b"%d %d\n" % (resp.status, len(resp.body)))
        self._hash.update(resp.body)
        return self._hash.digest()

    def add_nothing(self) -> bytes:
        """The digest of the responses added so far."""
        return self._hash.digest()
