"""One bounded GET against a store's API, and reading the JSON it returned.

Every way the request itself can fail ends as one `PollError` with a `FailureKind`;
`failures` turns an answer the platform gave into one.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import aiohttp
from yarl import URL

from bulkwatch.common.retry_after import parse_retry_after
from bulkwatch.model import EndpointKey, FailureKind, PollError
from bulkwatch.sources.http.failures import (
    error_text,
    html_title,
    invalid,
    invalid_answer,
    one_line,
)
from bulkwatch.sources.http.ratelimit import RateLimiter
from bulkwatch.sources.http.recording import Recording
from bulkwatch.sources.http.response import HttpResponse

__all__ = ["MAX_REDIRECTS", "ApiClient", "decode_json"]

_CHUNK = 64 * 1024
MAX_REDIRECTS = 3
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_PROBED = frozenset({"date", "content-type", "retry-after"})


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
        recording: Recording | None = None,
    ) -> None:
        self._session = session
        self._recording = recording
        self._limiter = limiter
        self._seconds = timeout
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._cap = max_body_bytes
        self._request_id_header = request_id_header
        # The same few URLs every poll: each is built once (yarl's query encoding is not free).
        self._urls: dict[tuple[str, tuple[tuple[str, str], ...]], URL] = {}

    def _url(self, url: str, params: dict[str, str]) -> URL:
        key = (url, tuple(params.items()))
        built = self._urls.get(key)
        if built is None:
            built = self._urls[key] = URL(url).with_query(params)
        return built

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
        """One GET with exactly these `headers`; return any 2xx/4xx/5xx response, raise
        `PollError` for everything else.

        A redirect to the same host (scheme, host and port) is followed, at most
        `MAX_REDIRECTS` hops, with the same headers; one to another host is refused before
        anything is sent there, since the headers carry the store's token.
        """
        target = self._url(url, params)
        for _hop in range(MAX_REDIRECTS + 1):
            resp, location = await self._get_once(key, target, headers, secret, now)
            if location is None:
                if self._recording is not None:
                    self._recording.responses.append(resp)
                return resp
            target = self._redirect_target(key, target, location, resp)
        raise invalid_answer(resp, key, f"more than {MAX_REDIRECTS} redirects; check base_url")

    def _redirect_target(
        self, key: EndpointKey, current: URL, location: str, resp: HttpResponse
    ) -> URL:
        """Where a redirect leads, if it stays on the host the token was meant for."""
        try:
            target = current.join(URL(location)) if location else None
        except ValueError:
            target = None
        if target is None or not target.is_absolute():
            raise invalid_answer(
                resp,
                key,
                f"redirect without a usable Location ({one_line(location, 100) or 'none'})",
            )
        if target.origin() != current.origin():
            elsewhere = one_line(str(target.origin()), 100)
            if self._recording is not None:
                self._recording.refused.append(elsewhere or "?")
            raise invalid_answer(
                resp,
                key,
                f"redirected to another host ({elsewhere}); not followed, and the token was "
                "not sent there: check the store's domain/handle and base_url",
            )
        if self._recording is not None:
            self._recording.followed.append((current.path, target.path))
        return target

    async def _get_once(
        self, key: EndpointKey, url: URL, headers: dict[str, str], secret: str, now: datetime
    ) -> tuple[HttpResponse, str | None]:
        """One request: the response, and the Location of a redirect (None otherwise)."""
        request_id: str | None = None
        if self._limiter is not None:
            await self._limiter.acquire()
        try:
            # aiohttp's own redirect handling is off: `get` decides which to follow.
            async with self._session.get(
                url, headers=headers, timeout=self._timeout, allow_redirects=False
            ) as resp:
                request_id = one_line(resp.headers.get(self._request_id_header), 100)
                status = resp.status
                retry_after = parse_retry_after(resp.headers.get("Retry-After"), now)
                location = resp.headers.get("Location", "")
                seen = None if self._recording is None else _seen_headers(resp)
                body, complete = await _read_capped(resp, 0 if 300 <= status < 400 else self._cap)
        except TimeoutError:  # asyncio's, and aiohttp's ServerTimeoutError, which subclasses it
            raise PollError(
                FailureKind.TIMEOUT,
                f"no complete response within {self._seconds:g} s",
                key=key,
                request_id=request_id,
            ) from None
        except aiohttp.ClientResponseError as exc:  # the client could not parse the response
            message = f"malformed HTTP response: {one_line(exc.message)}"
            raise invalid(message, key=key, request_id=request_id) from None
        except aiohttp.ClientPayloadError:
            raise PollError(
                FailureKind.NETWORK,
                "connection closed before the whole body arrived",
                key=key,
                request_id=request_id,
            ) from None
        except (aiohttp.ClientError, OSError) as exc:
            detail = one_line(str(exc) or type(exc).__name__)
            raise PollError(
                FailureKind.NETWORK, f"connection failed: {detail}", key=key, request_id=request_id
            ) from None
        redirect = status in _REDIRECTS
        if 300 <= status < 400 and not redirect:
            message = f"unexpected HTTP {status}; check base_url"
            raise invalid(message, key=key, http_status=status, request_id=request_id)
        ok = 200 <= status < 300
        if ok and not complete:
            message = f"body larger than the {self._cap}-byte limit (max_body_bytes)"
            raise invalid(message, key=key, http_status=status, request_id=request_id)
        text = None if ok or redirect else error_text(body, secret)
        response = HttpResponse(status, body, request_id, retry_after, text, seen)
        return response, (location if redirect else None)


def _seen_headers(resp: aiohttp.ClientResponse) -> dict[str, str]:
    """The response headers `bulkwatch probe` reports (the date, rate limits, content type)."""
    return {
        name: value
        for name, value in resp.headers.items()
        if name.lower() in _PROBED or "limit" in name.lower()
    }


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


def decode_json(resp: HttpResponse, key: EndpointKey, *, where: str = "") -> Any:
    """The decoded JSON body, or INVALID_RESPONSE saying why it is not JSON."""
    try:
        return json.loads(resp.body)
    except RecursionError:
        reason = "body nests too deeply to read"
    except json.JSONDecodeError as exc:
        if resp.body.lstrip()[:1] == b"<":
            title = html_title(resp.body)
            reason = "body is an HTML page, not JSON"
            if title is not None:
                reason += f" ({one_line(title, 80)})"
        else:
            reason = f"body is not valid JSON ({exc.msg} at byte {exc.pos})"
    except UnicodeDecodeError:
        reason = "body is not valid UTF-8 JSON"
    raise invalid_answer(resp, key, f"{where}{reason}")
