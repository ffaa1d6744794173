"""The `webhook` notifier: POSTs the CloudEvent, signed the Standard Webhooks way.

The outbox body is sent byte for byte, so the signature covers exactly what was stored and a
redelivery is identical to the first attempt (apart from the timestamp and signature).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import aiohttp
from pydantic import ConfigDict, Field, SecretStr, field_validator, model_validator

from bulkwatch.common.durations import Duration
from bulkwatch.common.secret_file import fill_secret_from_file
from bulkwatch.notifiers.base import DeliveryError, NotifierConfig, NotifierType, OutgoingEvent
from bulkwatch.notifiers.http import Answer, check_url, failure, post

__all__ = [
    "CONTENT_TYPE",
    "TYPE",
    "WebhookNotifier",
    "WebhookNotifierConfig",
    "sign",
]

CONTENT_TYPE = "application/cloudevents+json"
_SECRET_PREFIX = "whsec_"  # noqa: S105 - the format prefix, not a secret
_SECRET_HINT = "must be 'whsec_' followed by base64 (a Standard Webhooks secret)"  # noqa: S105
# Headers bulkwatch sets itself: letting config override them would break the contract.
_RESERVED_HEADERS = frozenset(
    {"content-type", "content-length", "webhook-id", "webhook-timestamp", "webhook-signature"}
)


def _decode_secret(value: str) -> bytes:
    """The HMAC key of a `whsec_` secret; ValueError (without the secret) when malformed."""
    if not value.startswith(_SECRET_PREFIX):
        raise ValueError(_SECRET_HINT)
    encoded = value.removeprefix(_SECRET_PREFIX)
    try:
        # Secrets are often written without padding; Standard Webhooks libraries accept that.
        key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except binascii.Error:
        raise ValueError(_SECRET_HINT) from None
    if not key:
        raise ValueError(f"{_SECRET_HINT}; the key is empty")
    return key


class WebhookNotifierConfig(NotifierConfig):
    """Config of the `webhook` notifier. `secret`/`secret_file` turn on signing."""

    # The input of a failed validation may be a secret: keep it out of error messages.
    model_config = ConfigDict(hide_input_in_errors=True)

    type: Literal["webhook"] = "webhook"
    url: str
    secret: SecretStr | None = None
    secret_file: Path | None = None
    timeout: Duration = Field(default=10.0, gt=0)
    # Extra headers often carry tokens (Authorization): keep them out of repr.
    headers: dict[str, str] = Field(default_factory=dict, repr=False)

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        check_url(value)
        return value

    @field_validator("secret")
    @classmethod
    def _check_secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            _decode_secret(value.get_secret_value())
        return value

    @field_validator("headers")
    @classmethod
    def _check_headers(cls, value: dict[str, str]) -> dict[str, str]:
        reserved = sorted(name for name in value if name.lower() in _RESERVED_HEADERS)
        if reserved:
            raise ValueError(f"{', '.join(reserved)} is set by bulkwatch and cannot be overridden")
        return value

    @model_validator(mode="after")
    def _read_secret_file(self) -> WebhookNotifierConfig:
        fill_secret_from_file(self, "secret", _decode_secret)
        return self


def sign(key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    """The Standard Webhooks `webhook-signature` value for one message."""
    digest = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


class WebhookNotifier:
    """POSTs events to one URL through the app's shared aiohttp session."""

    def __init__(
        self,
        config: WebhookNotifierConfig,
        session: aiohttp.ClientSession,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.name = config.name
        self._url = config.url
        self._session = session
        self._clock = clock
        self._timeout_s = config.timeout
        self._key = _decode_secret(config.secret.get_secret_value()) if config.secret else None
        self._headers = dict(config.headers)

    async def send(self, event: OutgoingEvent) -> None:
        """POST the event; return on 2xx, raise `DeliveryError` otherwise."""
        headers = {**self._headers, "Content-Type": CONTENT_TYPE}
        if self._key is not None:
            timestamp = int(self._clock())
            headers["webhook-id"] = event.id
            headers["webhook-timestamp"] = str(timestamp)
            headers["webhook-signature"] = sign(self._key, event.id, timestamp, event.body)
        answer = await post(
            self._session, self._url, event.body, headers, timeout_s=self._timeout_s
        )
        if not answer.ok:
            raise _failure(answer)

    async def aclose(self) -> None:
        """Nothing to release: the session belongs to the app."""


def _failure(answer: Answer) -> DeliveryError:
    message = f"HTTP {answer.status} from webhook"
    if 300 <= answer.status < 400:
        message += " (redirects are not followed)"
    return failure(answer, message)


TYPE = NotifierType(
    "webhook",
    WebhookNotifierConfig,
    lambda config, ctx: WebhookNotifier(config, ctx.session),
)
