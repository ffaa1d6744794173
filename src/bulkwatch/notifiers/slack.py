"""The `slack` notifier: a Block Kit message through a Slack incoming webhook.

The message has a header (`title` template), a line of text (`text` template, also the
notification's fallback text), the task's fields, buttons to the result files and a context
line with the event type and id. The webhook URL is a credential (anyone holding it can post),
so it is a secret: never logged, never in `repr` or error messages.

Slack answers 200 `ok`; 4xx answers such as `invalid_token`, `no_service` or
`channel_not_found` are permanent (dead-lettered at once, with Slack's error code); 408, 429
(honouring `Retry-After`), 5xx, timeouts and network errors are retried.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Literal

import aiohttp
from pydantic import ConfigDict, Field, SecretStr, field_validator, model_validator

from bulkwatch.common.durations import Duration
from bulkwatch.common.secret_file import fill_secret_from_file
from bulkwatch.notifiers.base import NotifierConfig, NotifierType, OutgoingEvent
from bulkwatch.notifiers.http import check_url, failure, post
from bulkwatch.notifiers.templates import MessageTemplate, placeholders, render

__all__ = ["TYPE", "SlackNotifier", "SlackNotifierConfig", "build_message"]

# Block Kit limits: longer values make Slack reject the whole message with invalid_blocks.
_HEADER_MAX = 150
_TEXT_MAX = 3000
_FIELD_MAX = 2000
_BUTTON_URL_MAX = 3000
# Slack's error bodies are short codes ("invalid_token"); anything else is not echoed.
_ERROR_CODE = re.compile(r"^[a-z0-9_]{1,64}$")
_FIELDS = (
    ("store", "Store"),
    ("task_id", "Task"),
    ("transition", "Status"),
    ("completed_count", "Rows"),
    ("operation_type", "Operation"),
    ("error", "Error"),
    ("expires_at", "Expires at"),
    ("superseded_by", "Superseded by"),
)
_BUTTONS = (("url", "Download result"), ("partial_data_url", "Partial data"))


class SlackNotifierConfig(NotifierConfig):
    """Config of the `slack` notifier: `webhook_url` (or `webhook_url_file`) and templates."""

    # A failed value may be the webhook URL, which is a credential.
    model_config = ConfigDict(hide_input_in_errors=True)

    type: Literal["slack"] = "slack"
    webhook_url: SecretStr | None = None
    webhook_url_file: Path | None = None
    timeout: Duration = Field(default=10.0, gt=0)
    title: MessageTemplate = "$title"
    text: MessageTemplate = "$headline"

    @field_validator("webhook_url")
    @classmethod
    def _check_webhook_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            check_url(value.get_secret_value())
        return value

    @model_validator(mode="after")
    def _one_url(self) -> SlackNotifierConfig:
        if self.webhook_url_file is None:
            if self.webhook_url is None:
                raise ValueError("webhook_url: field required (or webhook_url_file)")
            return self
        fill_secret_from_file(self, "webhook_url", check_url)
        return self


def _mrkdwn(value: str) -> str:
    """Escape text for Slack mrkdwn: only &, < and > are control characters there."""
    return value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _cut(value: str, limit: int) -> str:
    return value if len(value) <= limit else value[: limit - 1] + "…"


def build_message(event: OutgoingEvent, title: str, text: str) -> dict[str, Any]:
    """The Slack message for one event, from the `title` and `text` templates."""
    values = placeholders(event)
    header = _cut(render(title, event).strip() or event.type, _HEADER_MAX)
    body = _cut(
        render(text, event, escape=_mrkdwn).strip() or _mrkdwn(values["headline"]), _TEXT_MAX
    )
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": header, "emoji": True}},
        {"type": "section", "text": {"type": "mrkdwn", "text": body}},
    ]
    fields = [
        {"type": "mrkdwn", "text": _cut(f"*{label}*\n{_mrkdwn(values[name])}", _FIELD_MAX)}
        for name, label in _FIELDS
        if values[name]
    ]
    if fields:
        blocks.append({"type": "section", "fields": fields})
    buttons = [
        {
            "type": "button",
            "text": {"type": "plain_text", "text": label},
            "url": values[name],
        }
        for name, label in _BUTTONS
        if values[name].startswith(("https://", "http://")) and len(values[name]) <= _BUTTON_URL_MAX
    ]
    if buttons:
        blocks.append({"type": "actions", "elements": buttons})
    context = f"`{values['type']}` · id `{values['event_id']}`"
    if values["source"]:
        context += f" · {_mrkdwn(values['source'])}"
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": context}]})
    return {"text": body, "blocks": blocks}


class SlackNotifier:
    """Posts one Block Kit message per event through the app's shared aiohttp session."""

    def __init__(self, config: SlackNotifierConfig, session: aiohttp.ClientSession) -> None:
        if config.webhook_url is None:  # pragma: no cover - the config validator requires it
            raise ValueError("slack notifier without a webhook_url")
        self.name = config.name
        self._url = config.webhook_url
        self._session = session
        self._title = config.title
        self._text = config.text
        self._timeout_s = config.timeout

    async def send(self, event: OutgoingEvent) -> None:
        """POST the message; return on 2xx, raise `DeliveryError` otherwise."""
        body = json.dumps(build_message(event, self._title, self._text)).encode()
        headers = {"Content-Type": "application/json"}
        answer = await post(
            self._session,
            self._url.get_secret_value(),
            body,
            headers,
            timeout_s=self._timeout_s,
            read=256,
            peer="Slack",
        )
        if not answer.ok:
            message = f"HTTP {answer.status} from Slack"
            if _ERROR_CODE.match(answer.text):
                message += f": {answer.text}"
            raise failure(answer, message)

    async def aclose(self) -> None:
        """Nothing to release: the session belongs to the app."""


TYPE = NotifierType(
    "slack", SlackNotifierConfig, lambda config, ctx: SlackNotifier(config, ctx.session)
)
