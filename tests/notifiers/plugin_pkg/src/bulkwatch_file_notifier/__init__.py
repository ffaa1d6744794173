"""A third-party bulkwatch notifier: appends each event's CloudEvent JSON to a file.

It is the example of docs/plugins.md, and the tests install it to prove that plugins are
discovered through the `bulkwatch.notifiers` entry point, validated and called.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Literal

from pydantic import field_validator

from bulkwatch.notifiers.base import (
    DeliveryError,
    Notifier,
    NotifierConfig,
    NotifierContext,
    OutgoingEvent,
)
from bulkwatch.notifiers.registry import NotifierType

__all__ = ["TYPE", "JsonlFileConfig", "JsonlFileNotifier"]


class JsonlFileConfig(NotifierConfig):
    """`type: jsonl-file`: `path` is the file to append to; its folder must exist."""

    type: Literal["jsonl-file"] = "jsonl-file"
    path: Path

    @field_validator("path")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        if not value.is_absolute():
            raise ValueError("must be an absolute path")
        return value


class JsonlFileNotifier:
    """Appends one line per event; a missing folder is a failure worth retrying."""

    def __init__(self, config: JsonlFileConfig) -> None:
        self.name = config.name
        self._path = config.path

    async def send(self, event: OutgoingEvent) -> None:
        """Append the event; raise a retryable DeliveryError when the file cannot be written."""
        try:
            # File I/O blocks; keep it off the event loop that serves every other delivery.
            await asyncio.to_thread(self._append, event.body)
        except OSError as exc:
            raise DeliveryError(f"cannot write {self._path}: {exc.strerror}") from None

    def _append(self, body: bytes) -> None:
        with self._path.open("ab") as out:
            out.write(body + b"\n")

    async def aclose(self) -> None:
        """Nothing to release: the file is opened per event."""


def _factory(config: NotifierConfig, context: NotifierContext) -> Notifier:
    if not isinstance(config, JsonlFileConfig):
        raise TypeError(f"jsonl-file needs a JsonlFileConfig, got {type(config).__name__}")
    return JsonlFileNotifier(config)


TYPE = NotifierType("jsonl-file", JsonlFileConfig, _factory)
