"""The `apprise` notifier: any Apprise URL (Telegram, Discord, Teams, ntfy, Matrix, ...).

Apprise is an optional extra (`pip install 'bulkwatch[apprise]'`) and is imported only when a
config uses this type. Its URLs embed tokens, so they are secrets: hidden from `repr`, never in
logs or error messages. The URLs are checked when the config loads, which also loads Apprise's
plugins once, at start-up rather than during the first delivery.

Apprise sends through blocking libraries on its own worker threads; a delivery waits at most
`timeout` for them. It reports only success or failure per service, so every failure is
retried (a service that keeps refusing ends up as a dead letter after `retry.max_attempts`).
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Literal

from pydantic import ConfigDict, Field, SecretStr, model_validator

from bulkwatch.common.durations import Duration
from bulkwatch.common.secret_file import read_secret_file
from bulkwatch.notifiers.base import DeliveryError, NotifierConfig, NotifierType, OutgoingEvent
from bulkwatch.notifiers.templates import MessageTemplate, render

if TYPE_CHECKING:
    import apprise

__all__ = ["TYPE", "AppriseNotifier", "AppriseNotifierConfig", "import_apprise"]

INSTALL_HINT = "the apprise notifier needs Apprise: install bulkwatch[apprise]"


def import_apprise() -> ModuleType:
    """The `apprise` module; ImportError with an install hint when it is missing."""
    try:
        import apprise  # noqa: PLC0415 - optional dependency, imported on first use
    except ImportError:
        raise ImportError(INSTALL_HINT) from None
    # Apprise logs through the standard library, which bulkwatch does not route; unrouted
    # warnings reach Python's last-resort handler on stderr, and Apprise's quote the URL,
    # tokens and all. Outcomes are reported through DeliveryError instead.
    quiet = logging.getLogger("apprise")
    if not any(isinstance(h, logging.NullHandler) for h in quiet.handlers):
        quiet.addHandler(logging.NullHandler())
    quiet.propagate = False
    return apprise


class AppriseNotifierConfig(NotifierConfig):
    """Config of the `apprise` notifier: `urls` (and/or `urls_file`), templates, timeout."""

    # A failed value may be a URL with a token in it.
    model_config = ConfigDict(hide_input_in_errors=True)

    type: Literal["apprise"] = "apprise"
    urls: list[SecretStr] = Field(default_factory=list)
    # One URL per line; blank lines and lines starting with # are skipped.
    urls_file: Path | None = None
    timeout: Duration = Field(default=30.0, gt=0)
    title: MessageTemplate = "$title"
    body: MessageTemplate = "$headline\n\n$details"

    @model_validator(mode="after")
    def _check_urls(self) -> AppriseNotifierConfig:
        urls = list(self.urls)
        if self.urls_file is not None:
            content = read_secret_file("urls_file", self.urls_file)
            lines = (line.strip() for line in content.splitlines())
            urls += [SecretStr(line) for line in lines if line and not line.startswith("#")]
        if not urls:
            raise ValueError("urls: give at least one Apprise URL (in urls or urls_file)")
        try:
            module = import_apprise()
        except ImportError as exc:
            raise ValueError(str(exc)) from None
        for index, url in enumerate(urls):
            if module.Apprise.instantiate(url.get_secret_value()) is None:
                raise ValueError(
                    f"urls[{index}]: not a URL Apprise can use (check the service's scheme and "
                    "the parts it requires; see the Apprise wiki)"
                )
        # The model is frozen; this runs once, during validation, before anyone sees it.
        object.__setattr__(self, "urls", urls)
        return self


class AppriseNotifier:
    """Sends a title and body through every configured Apprise URL."""

    def __init__(self, config: AppriseNotifierConfig) -> None:
        module = import_apprise()
        self.name = config.name
        self._title = config.title
        self._body = config.body
        self._timeout = config.timeout
        self._apprise: apprise.Apprise = module.Apprise()
        for url in config.urls:
            self._apprise.add(url.get_secret_value())

    async def send(self, event: OutgoingEvent) -> None:
        """Notify every URL; raise a retryable `DeliveryError` unless all succeeded."""
        title = render(self._title, event)
        body = render(self._body, event) or event.type
        try:
            async with asyncio.timeout(self._timeout):
                result = await self._apprise.async_notify(body=body, title=title)
        except TimeoutError:
            # The worker thread finishes on its own; its outcome no longer matters.
            raise DeliveryError(f"Apprise timed out after {self._timeout:g}s") from None
        if not result:
            raise DeliveryError(_describe(result, len(self._apprise)))

    async def aclose(self) -> None:
        """Nothing to release."""


def _describe(result: object, total: int) -> str:
    """Which services failed, by service name only (their URLs hold tokens)."""
    services = getattr(result, "results", None)
    if not isinstance(services, tuple):
        return f"Apprise could not notify all of {total} service(s)"
    failed = [
        f"{getattr(s, 'name', '?')} {getattr(getattr(s, 'status', None), 'name', 'FAILURE')}"
        for s in services
        if not s
    ]
    if not failed:
        return f"Apprise could not notify all of {total} service(s)"
    return f"Apprise: {len(failed)} of {total} service(s) failed: {', '.join(failed)}"


TYPE = NotifierType("apprise", AppriseNotifierConfig, lambda config, _: AppriseNotifier(config))
