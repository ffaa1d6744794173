"""Injected faults: which requests get a broken answer, and what that answer looks like.

A rule targets every store (`store=None`) or one store, every endpoint or one (`"tasks"`,
`"QUERY"`, `"MUTATION"`), and fires for the next `times` matching requests, each time with
`probability`. Store rules are consulted before global ones, oldest first; one fault per request.
"""

from __future__ import annotations

import itertools
import json
import random
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache
from http import HTTPStatus
from typing import Any, Final

from aiohttp import web

from bulkwatch.model import Platform

__all__ = [
    "DEFAULT_HUGE_SIZE",
    "Fault",
    "FaultInjector",
    "FaultKind",
    "FaultRule",
    "error_body",
    "fault_response",
    "reason_phrase",
]

# Over the daemon's default `max_body_bytes` (4 MiB), so the default fault trips its size cap.
DEFAULT_HUGE_SIZE: Final = 5 * 1024 * 1024
_EXTRA_REASONS: Final = {
    423: "Locked",
    429: "Too Many Requests",
    433: "Request Blocked",
    434: "Request Blocked",
    435: "Request Blocked",
    436: "Request Blocked",
}


class FaultKind(StrEnum):
    STATUS = "status"  # an HTTP error with the platform's JSON error body
    RATE_LIMIT = "rate_limit"  # 429, with Retry-After only when `retry_after` is set
    MALFORMED = "malformed"  # 200 with the normal body cut in half
    HTML = "html"  # a gateway's text/html error page (status default 502)
    EMPTY = "empty"  # 200 with an empty body
    WRONG_TYPES = "wrong_types"  # 200 with JSON whose fields have the wrong types
    HUGE = "huge"  # 200 with a valid JSON body of `size` bytes
    SLOW = "slow"  # the normal answer after `delay` seconds


@dataclass(frozen=True, slots=True)
class Fault:
    """What to answer instead of (or, for SLOW, before) the normal response."""

    kind: FaultKind
    status: int = 200
    retry_after: float | None = None
    delay: float = 0.0
    size: int = DEFAULT_HUGE_SIZE

    @classmethod
    def make(
        cls,
        kind: FaultKind | str | int,
        *,
        status: int | None = None,
        retry_after: float | None = None,
        delay: float | None = None,
        size: int | None = None,
    ) -> Fault:
        """Build a fault, filling per-kind defaults; an int `kind` means an HTTP status."""
        if isinstance(kind, int):
            status = kind
            kind = FaultKind.STATUS
        kind = FaultKind(kind)
        if kind is FaultKind.STATUS:
            if status is None or not 400 <= status <= 599:
                raise ValueError("a status fault needs a status between 400 and 599")
            if status == 429:
                kind = FaultKind.RATE_LIMIT
        elif kind is FaultKind.RATE_LIMIT:
            status = 429
        elif kind is FaultKind.HTML:
            status = 502 if status is None else status
        else:
            status = 200
        if retry_after is not None and retry_after < 0:
            raise ValueError("retry_after must not be negative")
        if delay is not None and delay < 0:
            raise ValueError("delay must not be negative")
        if kind is FaultKind.SLOW and delay is None:
            delay = 1.0
        if size is not None and size < 64:
            raise ValueError("size must be at least 64 bytes")
        return cls(
            kind=kind,
            status=status,
            retry_after=retry_after,
            delay=delay or 0.0,
            size=size or DEFAULT_HUGE_SIZE,
        )


@dataclass(slots=True, eq=False)
class FaultRule:
    """An installed fault; `remaining` None means until removed."""

    id: int
    fault: Fault
    store: str | None
    endpoint: str | None
    remaining: int | None
    probability: float
    applied: int = 0

    def as_dict(self) -> dict[str, Any]:
        """The rule as JSON for the control routes."""
        return {
            "id": self.id,
            "kind": self.fault.kind.value,
            "status": self.fault.status,
            "retry_after": self.fault.retry_after,
            "delay": self.fault.delay,
            "size": self.fault.size,
            "store": self.store,
            "endpoint": self.endpoint,
            "remaining": self.remaining,
            "probability": self.probability,
            "applied": self.applied,
        }


class FaultInjector:
    """The installed fault rules; `pick` is O(1) when none are installed."""

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng
        self._ids = itertools.count(1)
        self._global: list[FaultRule] = []
        self._by_store: dict[str, list[FaultRule]] = {}
        self._count = 0

    def add(
        self,
        fault: Fault,
        *,
        store: str | None = None,
        endpoint: str | None = None,
        times: int | None = 1,
        probability: float = 1.0,
    ) -> FaultRule:
        """Install a rule for the next `times` matching requests (None: until removed)."""
        if times is not None and times < 1:
            raise ValueError("times must be at least 1 (or None for until removed)")
        if not 0.0 < probability <= 1.0:
            raise ValueError("probability must be in (0, 1]")
        rule = FaultRule(next(self._ids), fault, store, endpoint, times, probability)
        bucket = self._global if store is None else self._by_store.setdefault(store, [])
        bucket.append(rule)
        self._count += 1
        return rule

    def remove(self, rule_id: int) -> bool:
        """Remove one rule by id; False when it was not installed (or already used up)."""
        for rule in self.rules():
            if rule.id == rule_id:
                self._discard(rule)
                return True
        return False

    def clear(self, store: str | None = None) -> None:
        """Remove every rule, or only the rules of one store."""
        if store is None:
            self._global.clear()
            self._by_store.clear()
        else:
            self._by_store.pop(store, None)
        self._count = len(self.rules())

    def rules(self) -> list[FaultRule]:
        """Every installed rule, store rules first."""
        out = [rule for rules in self._by_store.values() for rule in rules]
        return out + self._global

    def pick(self, store: str, endpoint: str) -> Fault | None:
        """The fault to apply to this request, consuming one use of its rule."""
        if not self._count:
            return None
        for rules in (self._by_store.get(store), self._global):
            for rule in rules or ():
                if rule.endpoint is not None and rule.endpoint != endpoint:
                    continue
                if rule.probability < 1.0 and self._rng.random() >= rule.probability:
                    continue
                rule.applied += 1
                if rule.remaining is not None:
                    rule.remaining -= 1
                    if rule.remaining == 0:
                        self._discard(rule)
                return rule.fault
        return None

    def _discard(self, rule: FaultRule) -> None:
        bucket = self._global if rule.store is None else self._by_store.get(rule.store, [])
        bucket.remove(rule)
        if rule.store is not None and not bucket:
            del self._by_store[rule.store]
        self._count -= 1


def reason_phrase(status: int) -> str:
    """The reason phrase for a status, including the platforms' non-standard ones."""
    if status in _EXTRA_REASONS:
        return _EXTRA_REASONS[status]
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def error_body(platform: Platform, status: int) -> bytes:
    """The platform's JSON error body: Shoplazza `{"error": ...}`, Shopline `{"errors": ...}`."""
    if platform is Platform.SHOPLINE:
        # The documented Shopline 429 body, typo included.
        message = "Too many request" if status == 429 else reason_phrase(status)
        return json.dumps({"errors": message}).encode()
    return json.dumps({"error": reason_phrase(status)}).encode()


_WRONG_TYPES: Final = {
    Platform.SHOPLAZZA: {
        "tasks": [{"query_id": ["12345"], "query_status": "done", "query": "url"}]
    },
    Platform.SHOPLINE: {
        "id": 12345,
        "status": 2,
        "type": None,
        "createdAt": 1680749309,
        "completedCount": "many",
        "url": ["https://example.com/a.jsonl"],
    },
}
_HTML_PAGE: Final = (
    "<!DOCTYPE html><html><head><title>{status} {reason}</title></head>"
    "<body><center><h1>{status} {reason}</h1></center><hr><center>nginx</center></body></html>"
)


@lru_cache(maxsize=8)
def _huge_body(platform: Platform, size: int) -> bytes:
    # Cached: a benchmark can ask for the same multi-megabyte body thousands of times.
    head = b'{"tasks":[],"padding":"' if platform is Platform.SHOPLAZZA else b'{"padding":"'
    tail = b'"}'
    return head + b"x" * (size - len(head) - len(tail)) + tail


def fault_response(
    fault: Fault, platform: Platform, normal_body: bytes, headers: dict[str, str]
) -> web.Response:
    """The response for every kind except SLOW, which only delays the normal one."""
    kind = fault.kind
    if kind is FaultKind.HTML:
        page = _HTML_PAGE.format(status=fault.status, reason=reason_phrase(fault.status))
        # A gateway's page: no platform request id header.
        return web.Response(
            status=fault.status,
            reason=reason_phrase(fault.status),
            text=page,
            content_type="text/html",
        )
    if kind in (FaultKind.STATUS, FaultKind.RATE_LIMIT):
        if fault.retry_after is not None:
            headers = {**headers, "Retry-After": f"{fault.retry_after:g}"}
        body = error_body(platform, fault.status)
    elif kind is FaultKind.MALFORMED:
        body = normal_body[: max(1, len(normal_body) // 2)] or b"{"
        if body == normal_body:
            body = b"{"
    elif kind is FaultKind.EMPTY:
        body = b""
    elif kind is FaultKind.WRONG_TYPES:
        body = json.dumps(_WRONG_TYPES[platform]).encode()
    elif kind is FaultKind.HUGE:
        body = _huge_body(platform, fault.size)
    else:
        raise ValueError(f"{kind.value} faults have no response of their own")
    return web.Response(
        status=fault.status,
        reason=reason_phrase(fault.status),
        body=body,
        headers=headers,
        content_type="application/json",
    )
