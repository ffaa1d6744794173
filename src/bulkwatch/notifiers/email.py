"""The `email` notifier: one mail per event over SMTP (aiosmtplib), plain text + HTML.

`security` is `starttls` (default, port 587), `ssl` (implicit TLS, port 465) or `none` (port 25,
no TLS at all, not even opportunistic). Logging in needs TLS: a password is never sent over a
plain connection. Each mail has a `Message-ID` derived from the event id, so a redelivered event
is recognisable as the same message.

Outcomes: an SMTP 4xx reply (greylisting, mailbox busy, temporary auth failure), timeouts,
refused connections and TLS errors are retried; a 5xx reply (sender or every recipient
rejected, message refused, login rejected) and a server that lacks STARTTLS or AUTH are
permanent. When only some recipients are rejected the mail counts as delivered to the others.
"""

from __future__ import annotations

import html
import re
import ssl
from email.message import EmailMessage
from email.utils import formatdate, parseaddr
from pathlib import Path
from typing import Literal

import aiosmtplib
import structlog
from aiosmtplib import SMTPResponse
from pydantic import ConfigDict, Field, SecretStr, field_validator, model_validator

from bulkwatch.common.durations import Duration
from bulkwatch.common.secret_file import fill_secret_from_file
from bulkwatch.notifiers.base import DeliveryError, NotifierConfig, NotifierType, OutgoingEvent
from bulkwatch.notifiers.templates import MessageTemplate, render

__all__ = ["TYPE", "EmailNotifier", "EmailNotifierConfig", "build_email"]

_log = structlog.get_logger("bulkwatch")

Security = Literal["none", "starttls", "ssl"]
_DEFAULT_PORTS: dict[str, int] = {"none": 25, "starttls": 587, "ssl": 465}
_SUBJECT_MAX = 200
_LINK = re.compile(r"https?://[^\s<>\"]+")

DEFAULT_SUBJECT = "[bulkwatch] $headline"
DEFAULT_BODY = (
    "$headline\n\n$details\n\n-- \nbulkwatch event $event_id ($type) from $source at $time"
)


def _check_address(value: str) -> str:
    _, address = parseaddr(value)
    local, _, domain = address.rpartition("@")
    if not local or not domain or "\n" in value or "\r" in value:
        raise ValueError(f"{value!r} is not an e-mail address")
    return value


class EmailNotifierConfig(NotifierConfig):
    """Config of the `email` notifier. The YAML key of `from_` is `from`."""

    # Failed values may be the password; keep inputs out of error messages.
    model_config = ConfigDict(hide_input_in_errors=True, populate_by_name=True)

    type: Literal["email"] = "email"
    host: str = Field(min_length=1)
    port: int | None = Field(default=None, ge=1, le=65535)
    security: Security = "starttls"
    username: str | None = None
    password: SecretStr | None = None
    password_file: Path | None = None
    from_: str = Field(alias="from")
    to: list[str] = Field(min_length=1)
    timeout: Duration = Field(default=30.0, gt=0)
    tls_verify: bool = True
    ca_file: Path | None = None
    subject: MessageTemplate = DEFAULT_SUBJECT
    body: MessageTemplate = DEFAULT_BODY

    @field_validator("from_")
    @classmethod
    def _check_from(cls, value: str) -> str:
        return _check_address(value)

    @field_validator("to")
    @classmethod
    def _check_to(cls, value: list[str]) -> list[str]:
        for address in value:
            _check_address(address)
        return value

    @field_validator("ca_file")
    @classmethod
    def _check_ca_file(cls, value: Path | None) -> Path | None:
        if value is None:
            return None
        try:
            ssl.create_default_context(cafile=str(value))
        except FileNotFoundError:
            raise ValueError(f"{value} does not exist") from None
        except (OSError, ssl.SSLError):
            raise ValueError(f"{value} is not a readable PEM file of CA certificates") from None
        return value

    @model_validator(mode="after")
    def _check_login(self) -> EmailNotifierConfig:
        fill_secret_from_file(self, "password")
        if (self.username is None) != (self.password is None):
            raise ValueError("username and password (or password_file) go together")
        if self.password is not None and self.security == "none":
            raise ValueError("a login needs security: starttls or ssl (never a plain connection)")
        return self

    @property
    def effective_port(self) -> int:
        """`port`, or the usual port of `security`."""
        return self.port or _DEFAULT_PORTS[self.security]


def _one_line(value: str) -> str:
    return " ".join(value.split())


def _html(text: str) -> str:
    """The plain-text body as HTML: escaped, line breaks kept, links clickable."""
    parts: list[str] = []
    last = 0
    for match in _LINK.finditer(text):
        parts.append(html.escape(text[last : match.start()]))
        href = html.escape(match.group(0))
        parts.append(f'<a href="{href}">{href}</a>')
        last = match.end()
    parts.append(html.escape(text[last:]))
    return (
        '<!DOCTYPE html>\n<html><body><div style="font-family: sans-serif; white-space: pre-wrap">'
        + "".join(parts)
        + "</div></body></html>\n"
    )


def build_email(event: OutgoingEvent, config: EmailNotifierConfig) -> EmailMessage:
    """The mail for one event: subject and body from the templates, HTML alternative."""
    message = EmailMessage()
    # A header cannot hold a line break; a template value could bring one.
    subject = _one_line(render(config.subject, event)) or event.type
    message["Subject"] = subject[:_SUBJECT_MAX]
    message["From"] = config.from_
    message["To"] = ", ".join(config.to)
    message["Date"] = formatdate(localtime=False, usegmt=True)
    message["Message-ID"] = f"<{event.id}@bulkwatch>"
    message["X-Bulkwatch-Event-Id"] = event.id
    message["X-Bulkwatch-Event-Type"] = event.type
    text = render(config.body, event)
    message.set_content(text)
    message.add_alternative(_html(text), subtype="html")
    return message


class EmailNotifier:
    """Sends one mail per event; a new SMTP connection each time (events are rare)."""

    def __init__(self, config: EmailNotifierConfig) -> None:
        self.name = config.name
        self._config = config
        self._port = config.effective_port
        self._tls: ssl.SSLContext | None = None
        if config.security != "none":
            context = ssl.create_default_context(
                cafile=str(config.ca_file) if config.ca_file else None
            )
            if not config.tls_verify:
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
            self._tls = context

    async def send(self, event: OutgoingEvent) -> None:
        """Send the mail; return when the server accepted it for at least one recipient."""
        message = build_email(event, self._config)
        try:
            refused = await self._deliver(message)
        except aiosmtplib.SMTPRecipientsRefused as exc:
            raise DeliveryError(
                "every recipient was refused: "
                + "; ".join(f"{r.recipient}: {_reply(r)}" for r in exc.recipients),
                permanent=all(r.code >= 500 for r in exc.recipients),
            ) from None
        except aiosmtplib.SMTPAuthenticationError as exc:
            raise DeliveryError(
                f"SMTP login refused: {_reply(exc)}", permanent=exc.code >= 500
            ) from None
        except aiosmtplib.SMTPResponseException as exc:
            # Sender refused, message refused, greeting or EHLO refused: the code decides.
            raise DeliveryError(f"SMTP {_reply(exc)}", permanent=exc.code >= 500) from None
        except aiosmtplib.SMTPTimeoutError:
            raise DeliveryError(f"SMTP timeout after {self._config.timeout:g}s") from None
        except ssl.SSLError as exc:
            raise DeliveryError(f"TLS error: {exc.reason or type(exc).__name__}") from None
        except aiosmtplib.SMTPException as exc:
            # Connection refused or lost, and the like; the message names host and port only.
            raise DeliveryError(f"SMTP error: {_one_line(exc.message)}") from None
        except OSError as exc:
            raise DeliveryError(
                f"SMTP connection failed: {exc.strerror or type(exc).__name__}"
            ) from None
        if refused:
            _log.warning(
                "e-mail not accepted for some recipients",
                notifier=self.name,
                event_id=event.id,
                refused={address: response.code for address, response in refused.items()},
            )

    async def _deliver(self, message: EmailMessage) -> dict[str, SMTPResponse]:
        """One SMTP session; the steps are explicit so a server lacking STARTTLS or AUTH is
        told apart (permanent) from a network problem (retried)."""
        cfg = self._config
        client = aiosmtplib.SMTP(
            hostname=cfg.host,
            port=self._port,
            use_tls=cfg.security == "ssl",
            start_tls=False,
            tls_context=self._tls,
            timeout=cfg.timeout,
        )
        async with client:
            await client.ehlo()
            if cfg.security == "starttls":
                if not client.supports_extension("starttls"):
                    raise DeliveryError("the SMTP server does not offer STARTTLS", permanent=True)
                await client.starttls()
                await client.ehlo()  # extensions must be asked again over TLS (RFC 3207)
            if cfg.username is not None and cfg.password is not None:
                if not client.supports_extension("auth"):
                    raise DeliveryError("the SMTP server does not offer AUTH", permanent=True)
                await client.login(cfg.username, cfg.password.get_secret_value())
            refused, _ = await client.send_message(message)
        return refused

    async def aclose(self) -> None:
        """Nothing to release: each send opens and closes its own connection."""


def _reply(exc: aiosmtplib.SMTPResponseException) -> str:
    return f"{exc.code} {_one_line(exc.message)}"


TYPE = NotifierType("email", EmailNotifierConfig, lambda config, _: EmailNotifier(config))
