"""Store leases for the SQLite store: one process owns every store, so leases live in memory.

A SQLite state file has one writer, so there is never a second replica to share the stores
with: nothing is written, leases never expire (nobody could take them over), and the protocol
otherwise holds (one owner per store, release frees at once) for code written against it.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import timedelta

from bulkwatch.store.leasing import Claimed, Holder

__all__ = ["LocalLeases"]


class LocalLeases:
    """The `Leases` of a single process."""

    def __init__(self) -> None:
        self._held: dict[str, str] = {}  # store -> owner
        self._owners: set[str] = set()

    async def take(
        self, owner: str, stores: Collection[str], limit: int, ttl: timedelta
    ) -> Claimed:
        """Take up to `limit` of `stores` that nobody holds; nothing is ever taken over here
        (no lease expires)."""
        self._owners.add(owner)
        free = sorted(s for s in set(stores) if s not in self._held)[: max(limit, 0)]
        for store in free:
            self._held[store] = owner
        return Claimed(free, [])

    async def renew(self, owner: str, ttl: timedelta) -> list[str]:
        """The stores `owner` holds (they never expire here)."""
        self._owners.add(owner)
        return sorted(s for s, o in self._held.items() if o == owner)

    async def release(self, owner: str, stores: Collection[str] | None = None) -> None:
        """Free `owner`'s leases of `stores` (None: all, and `owner` leaves)."""
        if stores is None:
            self._owners.discard(owner)
        wanted = set(self._held) if stores is None else set(stores)
        for store in wanted:
            if self._held.get(store) == owner:
                del self._held[store]

    async def owners(self) -> list[str]:
        """The owners that claimed or renewed and did not leave, by id."""
        return sorted(self._owners)

    async def holders(self, stores: Collection[str]) -> list[Holder]:
        """The held leases of `stores`, by store (they never expire)."""
        return [Holder(s, self._held[s], None) for s in sorted(set(stores)) if s in self._held]
