"""Shopline access tokens that expire, and their renewal: `POST /admin/oauth/token/refresh`.

With `Variants.token_lifetime` set, a Shopline store's token is accepted for that long after
it was first used or issued; a store with app credentials (`StoreSpec.app_key`) renews it on
a request signed with its app secret (`sign` = hex HMAC-SHA256 of the body followed by the
`timestamp` header, in milliseconds, within 10 minutes of the simulator's clock). A renewal
issues a new token and keeps the previous one working for 5 more minutes, as the platform
does. Without a lifetime, tokens never expire, but a renewal still retires the previous one.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import math
from datetime import UTC, datetime
from typing import Any, Final

from aiohttp import web

from bulkwatch.model import Platform
from bulkwatch.simulator.model import SimStore

__all__ = ["GRACE", "REFRESH_PATH", "authorised", "refresh"]

REFRESH_PATH: Final = "admin/oauth/token/refresh"
GRACE: Final = 300.0  # the previous token keeps working this long after a renewal
_TIMESTAMP_WINDOW: Final = 600.0
_PLATFORM_LIFETIME: Final = 36000.0  # what a renewal answers when tokens do not expire


def authorised(st: SimStore, header: str | None, now: float, lifetime: float | None) -> bool:
    """Whether the `Authorization` header carries a token the Shopline store accepts now."""
    if header is None or not header.startswith("Bearer "):
        return False
    token = header.removeprefix("Bearer ")
    if token == st.token:
        if lifetime is None:
            return True
        # The configured token's life starts at its first use.
        return now < st.issued.setdefault(token, now + lifetime)
    until = st.issued.get(token)  # a previous token, within its last 5 minutes
    return until is not None and now < until


async def refresh(
    st: SimStore, request: web.Request, now: float, lifetime: float | None, headers: dict[str, str]
) -> web.Response:
    """The answer to a token renewal: a new token, or why not."""
    if st.platform is not Platform.SHOPLINE:
        return _answer(404, {"error": "Not Found"}, headers)
    if request.method != "POST":
        return _answer(405, {"errors": "Method Not Allowed"}, headers)
    body = (await request.read()).decode("utf-8", "replace")
    problem = _check(st, request, body, now)
    if problem is not None:
        st.refused_refreshes += 1
        status, code, message = problem
        return _answer(status, {"code": code, "i18nCode": code, "message": message}, headers)
    st.refreshes += 1
    life = lifetime or _PLATFORM_LIFETIME
    expires = now + life
    st.issued = {t: until for t, until in st.issued.items() if until > now}
    st.issued[st.token] = min(st.issued.get(st.token, math.inf), now + GRACE)
    st.set_token_keeping_issued(_new_token(st, expires))
    if lifetime is not None:
        st.issued[st.token] = expires
    data = {
        "accessToken": st.token,
        "expireTime": datetime.fromtimestamp(expires, UTC).isoformat(timespec="milliseconds"),
        "scope": "read_products",
    }
    return _answer(
        200, {"code": 200, "i18nCode": "SUCCESS", "message": None, "data": data}, headers
    )


def _check(
    st: SimStore, request: web.Request, body: str, now: float
) -> tuple[int, str, str] | None:
    """(HTTP status, code, message) of a refused renewal; None when it is granted."""
    key = request.headers.get("appkey")
    if st.app_key is None or key != st.app_key:
        return 401, "APP_KEY_INVALID", "appkey is not an app installed on this store"
    stamp = request.headers.get("timestamp", "")
    if not stamp.isdigit() or abs(int(stamp) / 1000 - now) > _TIMESTAMP_WINDOW:
        return 401, "TIMESTAMP_INVALID", "timestamp missing or more than 10 minutes off"
    source = (body + stamp).encode("utf-8")
    expected = hmac.new(st.app_secret.encode("utf-8"), source, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(request.headers.get("sign", ""), expected):
        return 401, "SIGN_INVALID", "sign verification failed"
    if st.revoked:
        # The platform's own refusal, in its envelope: HTTP 200, code not 200.
        return 200, "APP_UNAUTHORIZED", "the merchant has not authorised this app"
    return None


def _new_token(st: SimStore, expires: float) -> str:
    """A JWT-shaped token, as the platform's are, with its `exp` claim."""
    claims = {"storeId": st.store_id, "exp": int(expires), "n": st.refreshes}
    part = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    digest = hashlib.sha256(f"{st.app_secret}:{part}".encode()).digest()
    signature = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
    return f"eyJhbGciOiJIUzI1NiJ9.{part}.{signature}"


def _answer(status: int, body: dict[str, Any], headers: dict[str, str]) -> web.Response:
    return web.Response(
        status=status,
        body=json.dumps(body).encode(),
        headers=headers,
        content_type="application/json",
    )
