"""The settings model: every field of the config, its defaults and its checks.

Build it with `load_settings` (in `load`), which also validates each notifier with its type's
model and reads the token files.
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from bulkwatch.common.durations import Duration
from bulkwatch.common.secret_file import fill_secret_from_file
from bulkwatch.config.frozen import FrozenModel
from bulkwatch.config.state import ServerSettings, StateSettings
from bulkwatch.model import TaskStatus
from bulkwatch.notifiers.base import NotifierConfig

__all__ = [
    "DEFAULT_BURST",
    "PLATFORM_RATE_LIMITS",
    "Defaults",
    "DeliverySettings",
    "RetrySettings",
    "Settings",
    "ShoplazzaStore",
    "ShoplineStore",
    "StateSettings",
    "StoreSettings",
]

_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"
# The platforms' sustained rates (Shoplazza about 2/s, Shopline about 4/s per app and store)
# with a burst far below their buckets of about 40: bulkwatch never runs a bucket dry.
PLATFORM_RATE_LIMITS: dict[str, float] = {"shoplazza": 2.0, "shopline": 4.0}
DEFAULT_BURST = 5  # a default Shoplazza poll (max_pages 5) or both Shopline types at once
DEFAULT_STATUS_MAP: dict[int, TaskStatus] = {
    0: TaskStatus.CREATED,
    1: TaskStatus.RUNNING,
    2: TaskStatus.COMPLETED,
}


class Defaults(FrozenModel):
    interval: Duration = Field(default=60.0, gt=0)
    jitter: Duration | None = None  # default: 10 % of the interval, at most 10 s
    timeout: Duration = Field(default=10.0, gt=0)
    max_body_bytes: int = Field(default=4 * 1024 * 1024, gt=0)
    stall_after: Duration = 6 * 3600.0
    expiry_warning: Duration = 3600.0
    down_after: int = Field(default=3, ge=1)
    # Requests per second and burst for every store; None: the platform's default below.
    rate_limit: float | None = Field(default=None, gt=0)
    burst: int | None = Field(default=None, ge=1, le=40)
    # After a failed poll the store's next polls wait: exponentially from the interval up to
    # `backoff_max`; `auth_retry` after a rejected token or a frozen store; `blocked_retry`
    # after a security block (also the longest Retry-After honoured).
    backoff_max: Duration = Field(default=900.0, gt=0)
    auth_retry: Duration = Field(default=600.0, gt=0)
    blocked_retry: Duration = Field(default=1800.0, gt=0)


class _StoreBase(FrozenModel):
    name: str = Field(pattern=_NAME, max_length=64)
    access_token: SecretStr | None = None
    access_token_file: Path | None = None
    base_url: str | None = None
    interval: Duration | None = Field(default=None, gt=0)
    jitter: Duration | None = None
    timeout: Duration | None = Field(default=None, gt=0)
    rate_limit: float | None = Field(default=None, gt=0)  # requests per second
    burst: int | None = Field(default=None, ge=1, le=40)
    enabled: bool = True

    @field_validator("base_url")
    @classmethod
    def _check_base_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _one_token_source(self) -> _StoreBase:
        if self.access_token is not None and self.access_token_file is not None:
            raise ValueError("give access_token or access_token_file, not both")
        return self

    def token(self) -> str | None:
        return self.access_token.get_secret_value() if self.access_token else None


class ShoplazzaStore(_StoreBase):
    platform: Literal["shoplazza"]
    domain: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9-]*$")
    api_version: str = "2022-01"
    page_limit: int = Field(default=100, ge=1, le=250)
    max_pages: int = Field(default=5, ge=1, le=100)
    status_map: dict[int, TaskStatus] = Field(default_factory=dict)

    def url_base(self) -> str:
        return self.base_url or f"https://{self.domain}.myshoplaza.com"

    def effective_status_map(self) -> dict[int, TaskStatus]:
        return {**DEFAULT_STATUS_MAP, **self.status_map}

    @property
    def endpoints(self) -> tuple[str, ...]:
        return ("tasks",)


OperationType = Literal["QUERY", "MUTATION"]
_ALL_OPERATION_TYPES: tuple[OperationType, ...] = ("QUERY", "MUTATION")


class ShoplineStore(_StoreBase):
    platform: Literal["shopline"]
    handle: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9-]*$")
    api_version: str = "v20260301"
    operation_types: list[OperationType] = Field(
        default_factory=lambda: list(_ALL_OPERATION_TYPES), min_length=1
    )

    # A custom or public app's credentials: with them bulkwatch refreshes the access token
    # (which lasts 10 hours) before it expires. Never logged, never shown.
    app_key: str | None = Field(default=None, min_length=1, max_length=256)
    app_secret: SecretStr | None = None
    app_secret_file: Path | None = None

    @field_validator("operation_types")
    @classmethod
    def _unique(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("operation types must not repeat")
        return value

    @model_validator(mode="after")
    def _app_credentials(self) -> ShoplineStore:
        fill_secret_from_file(self, "app_secret")
        if (self.app_key is None) != (self.app_secret is None):
            given, missing = (
                ("app_key", "app_secret (or app_secret_file)")
                if self.app_secret is None
                else ("app_secret", "app_key")
            )
            raise ValueError(f"{given} needs {missing}: give both to refresh the token, or none")
        if self.app_secret is not None and not self.app_secret.get_secret_value().strip():
            raise ValueError("app_secret is empty")
        return self

    def app_credentials(self) -> tuple[str, str] | None:
        """(app key, app secret) when the token is to be refreshed, else None."""
        if self.app_key is None or self.app_secret is None:
            return None
        return self.app_key, self.app_secret.get_secret_value()

    def url_base(self) -> str:
        return self.base_url or f"https://{self.handle}.myshopline.com"

    @property
    def endpoints(self) -> tuple[str, ...]:
        return tuple(self.operation_types)


StoreSettings = Annotated[ShoplazzaStore | ShoplineStore, Field(discriminator="platform")]


class RetrySettings(FrozenModel):
    initial: Duration = Field(default=5.0, gt=0)
    max_delay: Duration = Field(default=600.0, gt=0)
    max_attempts: int = Field(default=20, ge=1)
    max_age: Duration = Field(default=86400.0, gt=0)


class DeliverySettings(FrozenModel):
    concurrency: int = Field(default=16, ge=1, le=1024)
    batch: int = Field(default=200, ge=1, le=10000)
    idle_interval: Duration = Field(default=1.0, gt=0)
    # PostgreSQL: how long a delivery handed to one replica is withheld from the others (a
    # replica that dies with it in flight); then another attempts it, under the same id.
    claim_timeout: Duration = Field(default=300.0, ge=5)


class LogSettings(FrozenModel):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["auto", "json", "console"] = "auto"
    # One info line per event recorded, and per delivery made (failed deliveries are logged
    # at warning or error whatever these say): a console that shows the daemon working.
    events: bool = True
    deliveries: bool = True


class Settings(BaseSettings):
    """The whole configuration. Build it with `load_settings`."""

    model_config = SettingsConfigDict(
        env_prefix="BULKWATCH_",
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
    )

    instance: str = Field(default_factory=socket.gethostname, min_length=1, max_length=128)
    state: StateSettings = StateSettings()
    server: ServerSettings = ServerSettings()
    defaults: Defaults = Defaults()
    retry: RetrySettings = RetrySettings()
    delivery: DeliverySettings = DeliverySettings()
    log: LogSettings = LogSettings()
    shutdown_grace: Duration = Field(default=10.0, gt=0)
    stores: list[StoreSettings] = Field(default_factory=list)
    notifiers: list[NotifierConfig] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique_names(self) -> Settings:
        for what, names in (
            ("stores", [s.name for s in self.stores]),
            ("notifiers", [n.name for n in self.notifiers]),
        ):
            dupes = sorted({n for n in names if names.count(n) > 1})
            if dupes:
                raise ValueError(f"{what}: duplicate name {', '.join(dupes)}")
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Environment overrides the file; the file arrives as init arguments.
        return (env_settings, init_settings)
