"""The settings of where the state lives (`state:`) and of the web server (`server:`).

`state` also says whether this process is one of several replicas sharing the stores
(`replicas`, PostgreSQL only; docs/scaling.md), how long a store's lease lasts without a
renewal (`lease_ttl`), and the name the replica goes by (`replica_id`).
"""

from __future__ import annotations

import functools
import os
import socket
from pathlib import Path
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationInfo, field_validator, model_validator

from bulkwatch.common.durations import Duration
from bulkwatch.common.secret_file import fill_secret_from_file
from bulkwatch.config.frozen import FrozenModel

__all__ = ["ServerSettings", "StateSettings", "default_replica_id"]

_POSTGRES_SCHEMES = ("postgresql://", "postgres://")
_REPLICA_ID = r"^[A-Za-z0-9][A-Za-z0-9_.:@-]*$"


def _check_postgres_url(value: str) -> None:
    """Refuse a PostgreSQL URL that cannot name a server; never echo it (it may hold a
    password)."""
    try:
        urlsplit(value).port  # noqa: B018 - reading it is the check
    except ValueError:
        raise ValueError(
            "the PostgreSQL state URL does not parse (is the port a number? is a password "
            "with '@', '/' or ':' percent-encoded?); use postgresql://user@host:5432/database"
        ) from None


@functools.cache
def default_replica_id() -> str:
    """`<host name>-<pid>`: unique per process on a host, and names the host in logs. Taken
    once, so every reload and report of this process shows the same id."""
    return f"{socket.gethostname()}-{os.getpid()}"


class StateSettings(FrozenModel):
    url: str = "sqlite:///bulkwatch.db"
    retention: Duration = 30 * 86400.0
    # PostgreSQL only: connections the process keeps at most. Polls and deliveries each hold
    # one for a few statements; those beyond the pool wait for a connection, not fail.
    pool_size: int = Field(default=10, ge=1, le=500)
    # PostgreSQL only: several processes share the stores, each polling those it holds a
    # lease for. Off: this process polls every store and refuses to share the database.
    replicas: bool = False
    # How long a lease lasts without a renewal: a replica that dies loses its stores after
    # this long; a live one renews every third of it.
    lease_ttl: Duration = Field(default=30.0, ge=3.0, le=300.0)
    # This replica's name in the leases, logs, metrics and status; unique per process.
    # None: `<host name>-<pid>`.
    replica_id: str | None = Field(default=None, pattern=_REPLICA_ID, max_length=128)

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        if value.lower().startswith(_POSTGRES_SCHEMES):
            _check_postgres_url(value)
            return value
        if not value.startswith("sqlite:///"):
            raise ValueError(
                "use sqlite:///relative.db, sqlite:////absolute.db or "
                "postgresql://user@host:5432/database"
            )
        return value

    @field_validator("replicas")
    @classmethod
    def _replicas_need_postgres(cls, value: bool, info: ValidationInfo) -> bool:
        url = info.data.get("url")  # absent when the URL itself was refused
        if value and isinstance(url, str) and not url.lower().startswith(_POSTGRES_SCHEMES):
            raise ValueError(
                "replicas share the stores through PostgreSQL; a SQLite state file has one "
                "daemon (set state.url to a postgresql:// URL, or replicas: false)"
            )
        return value

    @property
    def postgres(self) -> bool:
        """The state is in PostgreSQL (several processes may share it), not a SQLite file."""
        return self.url.lower().startswith(_POSTGRES_SCHEMES)

    @property
    def replica(self) -> str:
        """This process's replica id: `replica_id`, else `<host name>-<pid>`."""
        return self.replica_id or default_replica_id()


_MIN_TOKEN = 16  # a guessable token is worse than none: it suggests a protection


class ServerSettings(FrozenModel):
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(default=9464, ge=0, le=65535)
    # The bearer token that unlocks the API's writes (re-queueing dead deliveries); without
    # one the status page and the API are read-only. Never logged, never shown.
    api_token: SecretStr | None = None
    api_token_file: Path | None = None

    @field_validator("api_token")
    @classmethod
    def _long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < _MIN_TOKEN:
            raise ValueError(f"must be at least {_MIN_TOKEN} characters")
        return value

    @model_validator(mode="after")
    def _read_token_file(self) -> ServerSettings:
        fill_secret_from_file(self, "api_token", _check_token_length)
        return self


def _check_token_length(token: str) -> None:
    if len(token) < _MIN_TOKEN:
        raise ValueError(f"must be at least {_MIN_TOKEN} characters")
