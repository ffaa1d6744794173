"""What the page and the API handlers share: the context they read, the error for a
parameter that means nothing here, and the opaque cursors of paged lists."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import SecretStr

from bulkwatch.config.resolved import ResolvedStore
from bulkwatch.daemon.status import DaemonStatus
from bulkwatch.store.base import StateStore
from bulkwatch.telemetry.metrics import Metrics

__all__ = ["BadParamError", "WebContext", "decode_cursor", "encode_cursor"]


class BadParamError(ValueError):
    """A query parameter that parsed but means nothing here (a cursor from elsewhere)."""

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(f"{name}: {reason}")
        self.name = name
        self.reason = reason


@dataclass(frozen=True, slots=True)
class WebContext:
    """Everything the page and the API read, handed over by web.py (never the engine)."""

    state: StateStore
    status: DaemonStatus
    clock: Callable[[], datetime]
    metrics: Metrics
    api_token: SecretStr | None
    wake_dispatcher: Callable[[], None]

    @property
    def stores(self) -> tuple[ResolvedStore, ...]:
        """The configured stores by name, as of the last config reload."""
        return self.status.configured

    def configured(self, name: str) -> ResolvedStore | None:
        return next((s for s in self.stores if s.name == name), None)


# --- cursors: opaque to clients, a JSON list inside ---------------------------------------


def encode_cursor(value: list[Any]) -> str:
    raw = json.dumps(value, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, shape: Sequence[type]) -> list[Any]:
    try:
        value = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (binascii.Error, ValueError):
        raise BadParamError("cursor", "not a cursor this API handed out") from None
    if not (
        isinstance(value, list)
        and len(value) == len(shape)
        and all(isinstance(v, t) for v, t in zip(value, shape, strict=True))
    ):
        raise BadParamError("cursor", "not a cursor of this list")
    return value
