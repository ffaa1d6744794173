"""What the HTTP notifiers share: their URL check, one POST with transport failures turned into
`DeliveryError`, and which answers are retried.

The User-Agent is not set here: it is a default header of the session the notifier is given.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import aiohttp
from yarl import URL

from bulkwatch.common.retry_after import parse_retry_after
from bulkwatch.model import utcnow
from bulkwatch.notifiers.base import DeliveryError

__all__ = ["Answer", "check_url", "failure", "post"]

_RETRYABLE_4XX = frozenset({408, 429})


def check_url(value: str) -> None:
    """ValueError unless `value` is an http:// or https:// URL with a host."""
    try:
        url = URL(value)
    except ValueError:
        raise ValueError("not a valid URL") from None
    if url.scheme not in {"http", "https"} or not url.host:
        raise ValueError("must be an http:// or https:// URL with a host")


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    retry_after: str | None  # the raw Retry-After header
    text: str  # the first `read` bytes of the body, decoded

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


def failure(answer: Answer, message: str) -> DeliveryError:
    """The `DeliveryError` of a non-2xx answer: retried after 408, 429 and 5xx (waiting at
    least its Retry-After), permanent after anything else."""
    if answer.status in _RETRYABLE_4XX or answer.status >= 500:
        return DeliveryError(message, retry_after=parse_retry_after(answer.retry_after, utcnow()))
    return DeliveryError(message, permanent=True)


async def post(
    session: aiohttp.ClientSession,
    url: str,
    body: bytes,
    headers: Mapping[str, str],
    *,
    timeout_s: float,
    read: int = 0,
    peer: str = "",
) -> Answer:
    """POST `body`; return the answer, or raise a retryable `DeliveryError` for a failure of
    the transport. `peer` prefixes connection errors ("cannot connect to Slack: ...")."""
    prefix = f"cannot connect to {peer}: " if peer else ""
    try:
        async with session.post(
            url,
            data=body,
            headers=headers,
            timeout=aiohttp.ClientTimeout(total=timeout_s),
            allow_redirects=False,
            raise_for_status=False,
        ) as response:
            text = ""
            if read:
                text = (await response.content.read(read)).decode("utf-8", "replace").strip()
            return Answer(response.status, response.headers.get("Retry-After"), text)
    except TimeoutError:
        # aiohttp's own timeout errors subclass TimeoutError as well.
        raise DeliveryError(f"timeout after {timeout_s:g}s") from None
    except aiohttp.ClientConnectorDNSError:
        raise DeliveryError(f"{prefix}DNS lookup failed") from None
    except aiohttp.ClientSSLError as exc:
        raise DeliveryError(f"{prefix}TLS error: {type(exc).__name__}") from None
    except aiohttp.ClientConnectorError as exc:
        raise DeliveryError(prefix + _connect_message(exc.os_error)) from None
    except aiohttp.ServerDisconnectedError:
        raise DeliveryError("server disconnected before responding") from None
    except aiohttp.ClientError as exc:
        # Never str(exc): aiohttp quotes the request URL, which can hold a token, in some.
        raise DeliveryError(f"HTTP client error: {type(exc).__name__}") from None


def _connect_message(error: OSError) -> str:
    if isinstance(error, ConnectionRefusedError):
        return "connection refused"
    if isinstance(error, ConnectionResetError):
        return "connection reset"
    return f"connection failed: {error.strerror or type(error).__name__}"
