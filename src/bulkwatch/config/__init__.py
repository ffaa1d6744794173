"""Configuration: the settings model (`settings`), loaded once at start (`load`, with its
checks in `errors`, `notifiers` and `tokens`) and passed down; nothing else reads the
environment or the config file."""

from __future__ import annotations

from bulkwatch.config.errors import ConfigError
from bulkwatch.config.load import load_settings
from bulkwatch.config.resolved import ResolvedStore, resolve_stores
from bulkwatch.config.settings import (
    DEFAULT_BURST,
    PLATFORM_RATE_LIMITS,
    Defaults,
    DeliverySettings,
    RetrySettings,
    Settings,
    ShoplazzaStore,
    ShoplineStore,
    StateSettings,
    StoreSettings,
)

__all__ = [
    "DEFAULT_BURST",
    "PLATFORM_RATE_LIMITS",
    "ConfigError",
    "Defaults",
    "DeliverySettings",
    "ResolvedStore",
    "RetrySettings",
    "Settings",
    "ShoplazzaStore",
    "ShoplineStore",
    "StateSettings",
    "StoreSettings",
    "load_settings",
    "resolve_stores",
]
