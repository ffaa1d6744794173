"""Signing a request to the Shopline app API (the token refresh) with the app secret.

A POST is signed over its body followed by the timestamp header's value (milliseconds since
the epoch, as decimal digits): `sign = hex(HMAC-SHA256(app_secret, body + timestamp))`. The
refresh has no body, so its signature covers the timestamp alone. The three headers `appkey`,
`timestamp` and `sign` carry it.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime

__all__ = ["app_headers", "sign", "timestamp_ms"]


def timestamp_ms(now: datetime) -> str:
    """The `timestamp` header of a request made at `now`: whole milliseconds since the epoch."""
    return str(round(now.timestamp() * 1000))


def sign(app_secret: str, body: str, timestamp: str) -> str:
    """The `sign` header: lowercase hex HMAC-SHA256 of `body + timestamp`, keyed by the secret."""
    source = (body + timestamp).encode("utf-8")
    return hmac.new(app_secret.encode("utf-8"), source, hashlib.sha256).hexdigest()


def app_headers(app_key: str, app_secret: str, now: datetime, body: str = "") -> dict[str, str]:
    """The headers that authenticate an app request with `body`, made at `now`."""
    timestamp = timestamp_ms(now)
    return {
        "appkey": app_key,
        "timestamp": timestamp,
        "sign": sign(app_secret, body, timestamp),
        "Content-Type": "application/json",
    }
