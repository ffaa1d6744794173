"""How daemons share one state: which replica polls which store (`Leases`), the error a
fenced poll write raises when its replica no longer holds the store (`LeaseLostError`), and
the refusal of a daemon that may not share the state with those running (`StateInUseError`).

Re-exported by `store/base.py` with the other protocols; a module of its own so that the
contract of sharing reads in one place.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

__all__ = ["Claimed", "Holder", "LeaseLostError", "Leases", "StateInUseError"]


class StateInUseError(Exception):
    """Another bulkwatch daemon uses the state in a way that excludes this one: a SQLite
    file's daemon, or on PostgreSQL a daemon without `state.replicas` beside any other."""


class LeaseLostError(Exception):
    """A poll write was refused, and nothing of it written: `owner` (this replica) no longer
    holds an unexpired lease on `store`, which another replica may poll by now."""

    def __init__(self, store: str, owner: str) -> None:
        super().__init__(f"store {store}: replica {owner} no longer holds its lease")
        self.store = store
        self.owner = owner


@dataclass(frozen=True, slots=True)
class Claimed:
    """What one claim took: `stores` by name, and among them those `taken_over` (their
    lease had been another owner's, and had expired)."""

    stores: list[str]
    taken_over: list[str]


@dataclass(frozen=True, slots=True)
class Holder:
    """Who holds a store's lease, until when (None: it never expires, a single process's)."""

    store: str
    owner: str
    expires_at: datetime | None


class Leases(Protocol):
    """Which replica polls which store: a lease per store, held by one owner (a replica's id)
    until it expires. Expiry is judged by the database's clock, never a replica's."""

    async def take(
        self, owner: str, stores: Collection[str], limit: int, ttl: timedelta
    ) -> Claimed:
        """Take up to `limit` of `stores` that nobody holds or whose lease expired, for `ttl`:
        the stores taken, by name, and which of them were taken over from another owner.
        Also keeps `owner` live (see `owners`) for `ttl`."""

    async def renew(self, owner: str, ttl: timedelta) -> list[str]:
        """Extend `owner`'s unexpired leases to `ttl` from now and keep it live; return the
        stores it still holds, by name (an expired lease is not renewed: claim it again)."""

    async def release(self, owner: str, stores: Collection[str] | None = None) -> None:
        """Free `owner`'s leases of `stores` at once; None: all of them, and `owner` leaves."""

    async def owners(self) -> list[str]:
        """The live owners (claimed or renewed within their TTL, not left), by id."""

    async def holders(self, stores: Collection[str]) -> list[Holder]:
        """The unexpired leases of `stores`, by store: a bounded read (one row per store
        named), for status pages."""
