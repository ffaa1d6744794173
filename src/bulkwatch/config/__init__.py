"""Configuration: the settings model (`settings`), loaded once at start (`load`, with its
checks in `errors`, `notifiers` and `tokens`) and passed down; nothing else reads the
environment or the config file."""

from __future__ import annotations

from bulkwatch.config import settings
from bulkwatch.config.errors import ConfigError
from bulkwatch.config.load import load_settings
from bulkwatch.config.resolved import ResolvedStore, resolve_stores
from bulkwatch.config.settings import (
    DEFAULT_BURST as DEFAULT_BURST,
)
from bulkwatch.config.settings import (
    PLATFORM_RATE_LIMITS as PLATFORM_RATE_LIMITS,
)
from bulkwatch.config.settings import (
    Defaults as Defaults,
)
from bulkwatch.config.settings import (
    DeliverySettings as DeliverySettings,
)
from bulkwatch.config.settings import (
    RetrySettings as RetrySettings,
)
from bulkwatch.config.settings import (
    Settings as Settings,
)
from bulkwatch.config.settings import (
    ShoplazzaStore as ShoplazzaStore,
)
from bulkwatch.config.settings import (
    ShoplineStore as ShoplineStore,
)
from bulkwatch.config.settings import (
    StateSettings as StateSettings,
)
from bulkwatch.config.settings import (
    StoreSettings as StoreSettings,
)

# Besides the settings model's own names (`settings.__all__`, imported above):
__all__ = ["ConfigError", "ResolvedStore", "load_settings", "resolve_stores"]
__all__ += settings.__all__
