"""How a platform's answer becomes a `PollError`: the status table and the platform's own words.

The messages are short, one line, carry the platform's error text when it gave one, and never
a token.
"""

from __future__ import annotations

import json
import re
from typing import Any

from bulkwatch.model import EndpointKey, FailureKind, PollError
from bulkwatch.sources.http.response import HttpResponse

__all__ = [
    "envelope_error",
    "error_text",
    "html_title",
    "invalid",
    "invalid_answer",
    "kind_for_status",
    "looks_like_auth",
    "one_line",
    "status_error",
]

_TEXT_LIMIT = 200
_AUTH_WORDS = re.compile(r"credential|token|unauthori[sz]ed|access", re.IGNORECASE)
_SUCCESS_CODES = frozenset({"success", "ok", "0", "200", "true"})
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


def invalid_answer(resp: HttpResponse, key: EndpointKey, message: str) -> PollError:
    """An INVALID_RESPONSE error about `resp`, with its status and request id."""
    return invalid(message, key=key, http_status=resp.status, request_id=resp.request_id)


def envelope_error(body: dict[str, Any], resp: HttpResponse, key: EndpointKey) -> PollError | None:
    """The error a `{"code": ..., "data": ...}` wrapper reports, or None when it says success."""
    code = body.get("code")
    if code is None or str(code).strip().lower() in _SUCCESS_CODES:
        return None
    said = _platform_text(body)
    message = f"the platform answered code {one_line(str(code), 40)!r}"
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
            raw = html_title(body)
        else:
            raw = body[:1024].decode("utf-8", "replace")
    else:
        raw = _platform_text(data) if isinstance(data, dict) else _flatten(data)
    if not raw:
        return None
    if secret:
        raw = raw.replace(secret, "[redacted]")  # before truncating, so no prefix survives
    return one_line(raw, _TEXT_LIMIT) or None


def html_title(body: bytes) -> str | None:
    """The `<title>` of an HTML page (a gateway's error page, say), or None when it has none."""
    title = _TITLE.search(body)
    return title.group(1).decode("utf-8", "replace") if title else None


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


def one_line(text: str | None, limit: int = _TEXT_LIMIT) -> str | None:
    """One line without control characters, at most `limit` characters."""
    if text is None:
        return None
    # Request ids, mostly: nothing to clean. (Every whitespace but " " is unprintable.)
    if len(text) <= limit and " " not in text and text.isprintable():
        return text
    text = " ".join("".join(c if c.isprintable() else " " for c in text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
