"""What both platform sources share: one bounded GET, failure classification, and tokens.

Every way a request can fail ends as one `PollError` with a `FailureKind`; the messages are
short, carry the platform's own error text when it gave one, and never a token.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import aiohttp

from bulkwatch import __version__
from bulkwatch.domain import EndpointKey, FailureKind, PollError
from bulkwatch.sources.ratelimit import RateLimiter

__all__ = [
    "USER_AGENT",
    "ApiClient",
    "Fingerprint",
    "HttpResponse",
    "TokenProvider",
    "decode_json",
    "envelope_error",
    "error_text",
    "invalid",
    "kind_for_status",
    "looks_like_auth",
    "parse_retry_after",
    "status_error",
]

USER_AGENT = f"bulkwatch/{__version__}"
_TEXT_LIMIT = 200
_CHUNK = 64 * 1024
_AUTH_WORDS = re.compile(r"credential|token|unauthori[sz]ed|access", re.IGNORECASE)
_SUCCESS_CODES = frozenset({"success", "ok", "0", "200", "true"})
_SECONDS = re.compile(r"^\d+(?:\.\d+)?$")
_TITLE = re.compile(rb"<title[^>]*>(.*?)</title>", re.IGNORECASE | re.DOTALL)
_WHAT_FAILED = {
    FailureKind.AUTH: "token rejected; renew the store's access token",
    FailureKind.FROZEN: "the store is frozen (payment required)",
    FailureKind.FORBIDDEN: "access denied; the token may lack a required access scope",
    FailureKind.BLOCKED: "blocked by the platform's security checks",
    FailureKind.RATE_LIMITED: "rate limited by the platform",
    FailureKind.CLIENT: "the platform rejected the request",
    FailureKind.SERVER: "platform server error",
    FailureKind.INVALID_RESPONSE: "unexpected HTTP status",
}


class TokenProvider:
    """A store's access token, re-read from its file whenever the file changes.

    Shopline tokens last about ten hours, so a rotated file must take effect without a restart.
    One `stat` per poll is the whole cost while the file stays the same.
    """

    def __init__(self, token: str | None, path: Path | None) -> None:
        self._token = token
        self._path = path
        self._seen: tuple[int, int, int] | None = None
        self.version = 0  # +1 whenever a new token is read: ends a wait after a 401

    def __repr__(self) -> str:
        # Never the token itself: a repr lands in tracebacks and debug logs.
        return f"TokenProvider(path={self._path!r}, version={self.version})"

    def current(self) -> str | None:
        """The token to send now, or None when none was ever configured."""
        if self._path is not None:
            self._refresh(self._path)
        return self._token

    def _refresh(self, path: Path) -> None:
        try:
            st = path.stat()
        except OSError:
            return  # mid-rotation (rename) or removed: the last good token is still the best bet
        # Inode and size catch an atomic rename or a rewrite within the mtime granularity.
        signature = (st.st_mtime_ns, st.st_size, st.st_ino)
        if signature == self._seen:
            return
        try:
            token = path.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError):
            return
        if token:  # an empty file is a writer caught halfway: read it again next poll
            if token != self._token:
                self.version += 1
            self._token = token
            self._seen = signature


@dataclass(frozen=True, slots=True)
class HttpResponse:
    """A complete response: status, body (at most the cap), request id, parsed Retry-After."""

    status: int
    body: bytes
    request_id: str | None
    retry_after: float | None
    error_text: str | None  # the platform's own error text (non-2xx only), already redacted

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


class ApiClient:
    """GETs from one store's API through the process's shared session, within bounds.

    Every request first takes a slot from `limiter`, the store's rate limit, which all of the
    store's endpoints and pages share; the wait for it is not part of the request `timeout`.
    """

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        timeout: float,
        max_body_bytes: int,
        request_id_header: str,
        limiter: RateLimiter | None = None,
    ) -> None:
        self._session = session
        self._limiter = limiter
        self._seconds = timeout
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._cap = max_body_bytes
        self._request_id_header = request_id_header

    async def get(
        self,
        key: EndpointKey,
        url: str,
        *,
        params: dict[str, str],
        headers: dict[str, str],
        secret: str,
        now: datetime,
    ) -> HttpResponse:
        """One GET; return any 2xx/4xx/5xx response, raise `PollError` for everything else."""
        headers = {"Accept": "application/json", "User-Agent": USER_AGENT, **headers}
        request_id: str | None = None
        if self._limiter is not None:
            await self._limiter.acquire()
        try:
            # Redirects are refused: following one would hand the token to another host.
            async with self._session.get(
                url, params=params, headers=headers, timeout=self._timeout, allow_redirects=False
            ) as resp:
                request_id = _clean(resp.headers.get(self._request_id_header), 100)
                status = resp.status
                retry_after = parse_retry_after(resp.headers.get("Retry-After"), now)
                location = resp.headers.get("Location", "")
                body, complete = await _read_capped(resp, 0 if 300 <= status < 400 else self._cap)
        except TimeoutError:  # asyncio's, and aiohttp's ServerTimeoutError, which subclasses it
            raise PollError(
                FailureKind.TIMEOUT,
                f"no complete response within {self._seconds:g} s",
                key=key,
                request_id=request_id,
            ) from None
        except aiohttp.ClientResponseError as exc:  # the client could not parse the response
            message = f"malformed HTTP response: {_clean(exc.message, _TEXT_LIMIT)}"
            raise invalid(message, key=key, request_id=request_id) from None
        except aiohttp.ClientPayloadError:
            raise PollError(
                FailureKind.NETWORK,
                "connection closed before the whole body arrived",
                key=key,
                request_id=request_id,
            ) from None
        except (aiohttp.ClientError, OSError) as exc:
            detail = _clean(str(exc) or type(exc).__name__, _TEXT_LIMIT)
            raise PollError(
                FailureKind.NETWORK, f"connection failed: {detail}", key=key, request_id=request_id
            ) from None
        if 300 <= status < 400:
            target = _clean(location.split("?", 1)[0], 100) or "nowhere"
            message = f"unexpected redirect to {target}; check base_url"
            raise invalid(message, key=key, http_status=status, request_id=request_id)
        ok = 200 <= status < 300
        if ok and not complete:
            message = f"body larger than the {self._cap}-byte limit (max_body_bytes)"
            raise invalid(message, key=key, http_status=status, request_id=request_id)
        text = None if ok else error_text(body, secret)
        return HttpResponse(status, body, request_id, retry_after, text)


async def _read_capped(resp: aiohttp.ClientResponse, cap: int) -> tuple[bytes, bool]:
    """Read at most `cap` bytes; the flag says whether that was the whole body."""
    if resp.content_length is not None:
        if resp.content_length > cap:
            resp.close()  # not worth reading: drop the connection rather than drain it
            return b"", False
        # The common case, and bounded by the cap: one read instead of a chunk loop.
        return await resp.read(), True
    buf = bytearray()
    async for chunk in resp.content.iter_chunked(_CHUNK):
        buf += chunk
        if len(buf) > cap:
            resp.close()
            return bytes(buf[:cap]), False
    return bytes(buf), True


def kind_for_status(status: int) -> FailureKind:
    """The failure kind of a non-2xx HTTP status."""
    if status == 401:
        return FailureKind.AUTH
    if status == 402:
        return FailureKind.FROZEN
    if status == 403:
        return FailureKind.FORBIDDEN
    if status == 423 or 433 <= status <= 436:
        return FailureKind.BLOCKED
    if status == 429:
        return FailureKind.RATE_LIMITED
    if 400 <= status < 500:
        return FailureKind.CLIENT
    if 500 <= status < 600:
        return FailureKind.SERVER
    return FailureKind.INVALID_RESPONSE


def status_error(
    resp: HttpResponse, key: EndpointKey, *, kind: FailureKind | None = None, where: str = ""
) -> PollError:
    """The `PollError` for a non-2xx response; `kind` overrides the status table."""
    kind = kind or kind_for_status(resp.status)
    message = _WHAT_FAILED[kind]
    if resp.retry_after is not None:
        message += f" (retry after {resp.retry_after:g} s)"
    if resp.error_text:
        message += f'; platform said: "{resp.error_text}"'
    return PollError(
        kind,
        f"{where}{message}",
        key=key,
        http_status=resp.status,
        request_id=resp.request_id,
        retry_after=resp.retry_after,
    )


def invalid(
    message: str,
    *,
    key: EndpointKey,
    http_status: int | None = None,
    request_id: str | None = None,
) -> PollError:
    """An INVALID_RESPONSE error: the platform answered, but not with anything readable."""
    return PollError(
        FailureKind.INVALID_RESPONSE,
        message,
        key=key,
        http_status=http_status,
        request_id=request_id,
    )


def decode_json(resp: HttpResponse, key: EndpointKey, *, where: str = "") -> Any:
    """The decoded JSON body, or INVALID_RESPONSE saying why it is not JSON."""
    try:
        return json.loads(resp.body)
    except RecursionError:
        reason = "body nests too deeply to read"
    except json.JSONDecodeError as exc:
        if resp.body.lstrip()[:1] == b"<":
            title = _TITLE.search(resp.body)
            reason = "body is an HTML page, not JSON"
            if title:
                reason += f" ({_clean(title.group(1).decode('utf-8', 'replace'), 80)})"
        else:
            reason = f"body is not valid JSON ({exc.msg} at byte {exc.pos})"
    except UnicodeDecodeError:
        reason = "body is not valid UTF-8 JSON"
    raise invalid(f"{where}{reason}", key=key, http_status=resp.status, request_id=resp.request_id)


def envelope_error(body: dict[str, Any], resp: HttpResponse, key: EndpointKey) -> PollError | None:
    """The error a `{"code": ..., "data": ...}` wrapper reports, or None when it says success."""
    code = body.get("code")
    if code is None or str(code).strip().lower() in _SUCCESS_CODES:
        return None
    said = _platform_text(body)
    message = f"the platform answered code {_clean(str(code), 40)!r}"
    if said:
        message += f'; platform said: "{said}"'
    kind = FailureKind.AUTH if looks_like_auth(f"{code} {said or ''}") else FailureKind.CLIENT
    return PollError(kind, message, key=key, http_status=resp.status, request_id=resp.request_id)


def looks_like_auth(text: str | None) -> bool:
    """Whether an error text is about credentials (Shoplazza answers 400 for bad tokens)."""
    return bool(text and _AUTH_WORDS.search(text))


def error_text(body: bytes, secret: str | None) -> str | None:
    """The platform's own error text from an error body, short, one line, token removed."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):  # not JSON: plain text, or a gateway's HTML page
        if body.lstrip()[:1] == b"<":
            title = _TITLE.search(body)
            raw = title.group(1).decode("utf-8", "replace") if title else None
        else:
            raw = body[:1024].decode("utf-8", "replace")
    else:
        raw = _platform_text(data) if isinstance(data, dict) else _flatten(data)
    if not raw:
        return None
    if secret:
        raw = raw.replace(secret, "[redacted]")  # before truncating, so no prefix survives
    return _clean(raw, _TEXT_LIMIT) or None


def _platform_text(body: dict[str, Any]) -> str | None:
    for field in ("errors", "error", "message", "msg"):
        value = body.get(field)
        if value not in (None, "", [], {}):
            return _flatten(value)
    return None


def _flatten(value: Any, depth: int = 0) -> str:
    """`errors` may be a string, a list or an object: make one line of any of them."""
    if depth > 3:
        return "..."
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return "; ".join(_flatten(item, depth + 1) for item in value)
    if isinstance(value, dict):
        return "; ".join(f"{k}: {_flatten(v, depth + 1)}" for k, v in value.items())
    return json.dumps(value)


def _clean(text: str | None, limit: int) -> str | None:
    """One line without control characters, at most `limit` characters."""
    if text is None:
        return None
    text = " ".join("".join(c if c.isprintable() else " " for c in text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds to wait from a Retry-After header (seconds or HTTP-date); None if unreadable."""
    if not value:
        return None
    value = value.strip()
    if _SECONDS.match(value):
        seconds = float(value)
    else:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        if now.tzinfo is None:
            now = now.replace(tzinfo=UTC)
        seconds = (when - now).total_seconds()
    return max(seconds, 0.0) if math.isfinite(seconds) else None
