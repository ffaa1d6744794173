"""Each store's effective settings, resolved once: its own value, else the defaults', else the
platform's. Everything that runs a store (its source, its poll job, health) reads this."""

from __future__ import annotations

from dataclasses import dataclass

from bulkwatch.config.settings import (
    DEFAULT_BURST,
    PLATFORM_RATE_LIMITS,
    Settings,
    ShoplazzaStore,
    ShoplineStore,
)
from bulkwatch.model import Platform

__all__ = ["ResolvedStore", "resolve_stores"]

_MAX_DEFAULT_JITTER = 10.0


@dataclass(frozen=True, slots=True)
class ResolvedStore:
    """One configured store with every setting it runs on decided."""

    config: ShoplazzaStore | ShoplineStore
    interval: float
    jitter: float
    timeout: float
    rate_limit: float  # requests per second
    burst: int
    max_body_bytes: int

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def platform(self) -> Platform:
        return Platform(self.config.platform)

    @property
    def endpoints(self) -> tuple[str, ...]:
        return self.config.endpoints

    @property
    def staleness(self) -> float:
        """How long without a poll before health calls an endpoint stale: two intervals, the
        jitter one run may add, the time a slow poll may take, and a few seconds of slack."""
        return 2 * self.interval + self.jitter + self.timeout + 5


def _resolve(store: ShoplazzaStore | ShoplineStore, settings: Settings) -> ResolvedStore:
    d = settings.defaults
    interval = store.interval or d.interval
    if store.jitter is not None:
        jitter = store.jitter
    elif d.jitter is not None:
        jitter = d.jitter
    else:
        jitter = min(interval * 0.1, _MAX_DEFAULT_JITTER)
    return ResolvedStore(
        config=store,
        interval=interval,
        jitter=jitter,
        timeout=store.timeout or d.timeout,
        rate_limit=store.rate_limit or d.rate_limit or PLATFORM_RATE_LIMITS[store.platform],
        burst=store.burst or d.burst or DEFAULT_BURST,
        max_body_bytes=d.max_body_bytes,
    )


def resolve_stores(settings: Settings, *, enabled_only: bool = True) -> tuple[ResolvedStore, ...]:
    """Every configured store (only the enabled ones unless told otherwise), resolved."""
    return tuple(
        _resolve(store, settings) for store in settings.stores if store.enabled or not enabled_only
    )
