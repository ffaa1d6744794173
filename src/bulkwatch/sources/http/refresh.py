"""Shopline access tokens that bulkwatch renews itself: `RefreshingTokenProvider`.

A custom or public app's access token lasts 10 hours. With the app's key and secret, the
token is renewed before it expires by `POST /admin/oauth/token/refresh` (signed with the app
secret, `signing`); the platform answers `{"code": 200, "data": {"accessToken", "expireTime",
...}}` and retires the previous token 5 minutes later. The current token and its expiry are
kept in the state store, so a restart goes on with it; a digest of the configured token it
descends from tells a stale chain from a fresh authorisation.

No token and no secret ever reaches a log line or an error message.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import structlog

from bulkwatch.common.redact import register_secrets
from bulkwatch.model import EndpointKey, FailureKind, PollError
from bulkwatch.sources.fields import read_datetime
from bulkwatch.sources.http.budget import RequestBudget
from bulkwatch.sources.http.failures import error_text, kind_for_status, one_line
from bulkwatch.sources.http.ratelimit import RateLimiter
from bulkwatch.sources.http.signing import app_headers
from bulkwatch.sources.http.tokens import TokenProvider
from bulkwatch.store.base import StoredToken, TokenState

__all__ = [
    "DOCUMENTED_LIFETIME",
    "REFRESH_AHEAD",
    "AppCredentials",
    "RefreshingTokenProvider",
    "jwt_expiry",
    "token_seed",
]

log = structlog.get_logger("bulkwatch")

DOCUMENTED_LIFETIME = timedelta(hours=10)  # assumed when an answer gives no expiry
REFRESH_AHEAD = 1800.0  # seconds before expiry a token is renewed (at least)
_CAP = 64 * 1024  # a refresh answer is a few hundred bytes


@dataclass(frozen=True, slots=True)
class AppCredentials:
    """What renewing one store's token takes: the endpoint and the app's key and secret."""

    url: str  # https://{handle}.myshopline.com/admin/oauth/token/refresh
    app_key: str
    app_secret: str

    def __repr__(self) -> str:
        return f"AppCredentials(url={self.url!r})"  # never the key's secret


def token_seed(token: str) -> str:
    """A digest naming a configured token (stored beside the tokens refreshed from it)."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def jwt_expiry(token: str) -> datetime | None:
    """The `exp` claim of a JWT-shaped token (Shopline's are), unverified; None otherwise."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (ValueError, RecursionError):
        return None
    exp = claims.get("exp") if isinstance(claims, dict) else None
    if not isinstance(exp, int | float) or isinstance(exp, bool) or not math.isfinite(exp):
        return None
    try:
        return datetime.fromtimestamp(exp, UTC)
    except (OverflowError, OSError, ValueError):
        return None


class RefreshingTokenProvider:
    """A Shopline store's token, renewed with the app's credentials before it expires.

    `configured` is the token from the config (inline or a file, which may still rotate: a new
    configured token starts a new chain). A token is renewed once less than `ahead` seconds
    of it are left (never more than half its life). A refused refresh raises an AUTH
    `PollError` saying to authorise the app again; any other failed refresh only fails the
    poll once the current token has expired (until then it is logged and tried again at the
    next poll).
    """

    def __init__(
        self,
        configured: TokenProvider,
        *,
        store: str,
        app: AppCredentials,
        state: TokenState,
        session: aiohttp.ClientSession,
        timeout: float,
        ahead: float = REFRESH_AHEAD,
        limiter: RateLimiter | None = None,
    ) -> None:
        self._configured = configured
        self._store = store
        self._app = app
        self._state = state
        self._http = RequestBudget(session, timeout, limiter)
        self._ahead = ahead
        self._lock = asyncio.Lock()  # the store's endpoints poll at once: one refresh
        self._seed: str | None = None
        self._token: str | None = None
        self._expires: datetime | None = None
        self._obtained: datetime | None = None
        self._changes = 0

    def __repr__(self) -> str:
        return f"RefreshingTokenProvider(store={self._store!r}, version={self.version})"

    @property
    def version(self) -> int:
        """Changes with the configured token (a rotated file) and with every renewal."""
        return self._configured.version + self._changes

    @property
    def expires_at(self) -> datetime | None:
        """When the token in use expires (None: not known yet)."""
        return self._expires

    def current(self) -> str | None:
        configured = self._configured.current()
        if configured is None or token_seed(configured) != self._seed:
            return configured
        return self._token

    async def token_at(self, key: EndpointKey, now: datetime) -> str | None:
        async with self._lock:
            await self._adopt(now)
            if self._token is not None and self._due(now):
                await self._renew(key, now)
            return self._token

    async def _adopt(self, now: datetime) -> None:
        """Start from the configured token, or from the stored one refreshed from it."""
        configured = self._configured.current()
        if configured is None:
            self._seed = self._token = None
            return
        seed = token_seed(configured)
        if seed == self._seed:
            return
        try:
            stored = await self._state.load_token(self._store)
        except Exception as exc:  # noqa: BLE001 - the configured token is the next best thing
            log.warning("cannot read the stored access token", store=self._store, error=str(exc))
            stored = None
        self._seed = seed
        if stored is not None and stored.seed == seed:
            register_secrets([stored.token])  # renewed before a restart: as secret as any
            self._token, self._expires = stored.token, stored.expires_at
            self._obtained = stored.refreshed_at
        else:
            # An unknown expiry is renewed at once: the token may be hours old already.
            self._token, self._expires, self._obtained = configured, jwt_expiry(configured), None
        self._changes += 1

    def _due(self, now: datetime) -> bool:
        if self._expires is None:
            return True
        ahead = self._ahead
        if self._obtained is not None:  # a token we renewed: at most half its life ahead
            life = (self._expires - self._obtained).total_seconds()
            ahead = max(0.0, min(ahead, life / 2))
        return now >= self._expires - timedelta(seconds=ahead)

    async def _renew(self, key: EndpointKey, now: datetime) -> None:
        try:
            token, expires = await self._request(key, now)
        except PollError as exc:
            still_valid = self._expires is None or now < self._expires
            if exc.kind is FailureKind.AUTH or not still_valid:
                raise
            log.warning(
                "access token refresh failed; the current token is still valid",
                store=self._store,
                expires_at=self._expires.isoformat() if self._expires else "unknown",
                error=str(exc),
            )
            return
        # From now on no log line, stored error or event shows it.
        register_secrets([token])
        self._token, self._expires, self._obtained = token, expires, now
        self._changes += 1
        assert self._seed is not None  # set by _adopt  # noqa: S101
        stored = StoredToken(self._store, token, expires, self._seed, now)
        try:
            await self._state.save_token(stored)
        except Exception as exc:  # noqa: BLE001 - polling goes on with the token in memory
            log.warning(
                "cannot store the refreshed access token", store=self._store, error=str(exc)
            )
        log.info("access token refreshed", store=self._store, expires_at=expires.isoformat())

    async def _request(self, key: EndpointKey, now: datetime) -> tuple[str, datetime]:
        """One refresh: the new token and its expiry, or `PollError`."""
        headers = app_headers(self._app.app_key, self._app.app_secret, now)
        await self._http.slot()
        request_id: str | None = None
        try:
            async with self._http.session.post(
                self._app.url,
                data=b"",
                headers=headers,
                timeout=self._http.timeout,
                allow_redirects=False,
            ) as resp:
                request_id = one_line(resp.headers.get("traceId"), 100)
                status = resp.status
                body = bytearray()
                async for chunk in resp.content.iter_chunked(_CAP):
                    body += chunk
                    if len(body) > _CAP:
                        break
        except TimeoutError:
            what = "token refresh: no complete answer"
            raise self._http.timed_out(what, key, request_id) from None
        except (aiohttp.ClientError, OSError) as exc:
            raise self._http.unreachable(exc, key, doing="token refresh: ") from None
        return self._answer(key, status, bytes(body), request_id, now)

    def _answer(
        self, key: EndpointKey, status: int, body: bytes, request_id: str | None, now: datetime
    ) -> tuple[str, datetime]:
        said = self._redact(error_text(body, None))

        def fail(kind: FailureKind, message: str) -> PollError:
            if said:
                message += f'; platform said: "{said}"'
            return PollError(kind, message, key=key, http_status=status, request_id=request_id)

        if status == 429 or status >= 500:
            raise fail(kind_for_status(status), f"token refresh: HTTP {status}")
        if 400 <= status < 500:
            raise fail(FailureKind.AUTH, self._refused(f"HTTP {status}{_code_of(body)}"))
        if not 200 <= status < 300:
            raise fail(FailureKind.INVALID_RESPONSE, f"token refresh: unexpected HTTP {status}")
        try:
            data: Any = json.loads(body)
        except (ValueError, RecursionError):
            raise fail(FailureKind.INVALID_RESPONSE, "token refresh: answer is not JSON") from None
        if not isinstance(data, dict):
            raise fail(FailureKind.INVALID_RESPONSE, "token refresh: answer is not an object")
        code = data.get("code")
        if str(code).strip() != "200":
            detail = f"code {one_line(str(code), 40)}{_code_of(body)}"
            raise fail(FailureKind.AUTH, self._refused(detail))
        payload = data.get("data")
        token = payload.get("accessToken") if isinstance(payload, dict) else None
        if not isinstance(token, str) or not token.strip():
            raise fail(FailureKind.INVALID_RESPONSE, "token refresh: answer without accessToken")
        assert isinstance(payload, dict)  # noqa: S101 - narrowed above
        problems: list[str] = []
        expires = read_datetime(payload.get("expireTime"), "expireTime", problems)
        if problems:
            log.warning("token refresh: odd expireTime", store=self._store, problems=problems)
        return token.strip(), expires or jwt_expiry(token) or now + DOCUMENTED_LIFETIME

    def _refused(self, detail: str) -> str:
        return (
            f"the platform refused to refresh the access token ({detail}): re-authorise the "
            f"app for store {self._store} in Shopline (check app_key and app_secret), then put "
            "its new access token in access_token or access_token_file"
        )

    def _redact(self, text: str | None) -> str | None:
        for secret in (self._app.app_secret, self._token, self._configured.current()):
            if text and secret:
                text = text.replace(secret, "[redacted]")
        return text


def _code_of(body: bytes) -> str:
    """ ", " and the platform's `i18nCode` (SIGN_INVALID, say) when the answer names one."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        return ""
    code = data.get("i18nCode") if isinstance(data, dict) else None
    return f", {one_line(code, 60)}" if isinstance(code, str) and code else ""
