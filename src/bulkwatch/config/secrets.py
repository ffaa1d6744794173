"""Every secret a config holds, for `common.redact` to keep out of what leaves the process.

A secret is any `SecretStr` (tokens, webhook secrets, Slack URLs, SMTP passwords, apprise
URLs, the API token, a Shopline app's secret), the password in the state database URL, and
every value of a mapping hidden from `repr` (webhook headers, which
often carry an `Authorization`, and a command's environment). A command's `argv` is not
searched: put what a command must keep secret in its `env`. A model with a `username` and a
`password` also yields what SMTP `AUTH PLAIN` sends for them.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from pydantic import BaseModel, SecretStr

from bulkwatch.common.redact import smtp_plain
from bulkwatch.common.urls import url_passwords

__all__ = ["secrets_of"]


def _values(value: Any) -> Iterator[str]:
    """The values of a hidden mapping (header and environment values), not its keys."""
    if isinstance(value, dict):
        for item in value.values():
            text = item.get_secret_value() if isinstance(item, SecretStr) else item
            if isinstance(text, str):
                yield text
                yield text.split()[-1] if text.split() else ""  # "Bearer <token>": the token


def _secrets(value: Any) -> Iterator[str]:
    if isinstance(value, SecretStr):
        yield value.get_secret_value()
    elif isinstance(value, BaseModel):
        for name, info in type(value).model_fields.items():
            field = getattr(value, name)
            yield from _secrets(field)
            if info.repr is False:
                yield from _values(field)
        user, password = getattr(value, "username", None), getattr(value, "password", None)
        if isinstance(user, str) and isinstance(password, SecretStr):
            yield smtp_plain(user, password.get_secret_value())
    elif isinstance(value, dict):
        for item in value.values():
            yield from _secrets(item)
    elif isinstance(value, list | tuple | set | frozenset):
        for item in value:
            yield from _secrets(item)


def secrets_of(settings: BaseModel) -> set[str]:
    """Every secret value in `settings` (empty strings left out)."""
    found = set(_secrets(settings))
    url = getattr(getattr(settings, "state", None), "url", None)
    if isinstance(url, str):
        found.update(url_passwords(url))  # a PostgreSQL password (state.url)
    return {s for s in found if s}
