"""Reading a paged list whose order, length and end the platform does not document.

The Shoplazza task list has no total, no has-more flag and no documented order. A poll reads
at most `max_pages` pages from the end where new tasks appear, so which end that is decides
whether a busy store's new tasks are seen at all. `ListReader` finds out at runtime:

- **Order.** Created times on page 1, where present, say it at once. Otherwise the ids do:
  ids the last poll did not read that come *before* a known id on page 1 were added at the
  front (newest first); ones *after* a known id on the last page were appended (oldest first).
  Until one of them is seen, both ends are read, so no new task is missed meanwhile.
- **Length.** One-entry pages (`limit=1`) answer whether entry N exists: starting from the last
  known length, two requests find the new one when the list barely moved, a gallop and a
  binary search when it moved a lot. That finds the last page of an oldest-first list.
- **The end.** A page after the last one may be an empty 200, a 404 or a 400 (all seen on
  such APIs): on any page but the first, each of them is the end of the list, not a failure,
  so a list whose length is a multiple of `limit` polls like any other.

What the poll read is returned as a `Listing`: the daemon says so (metric, warning, status)
whenever it is not the whole list.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from itertools import pairwise
from typing import Any

from bulkwatch.model import Listing

__all__ = [
    "MAX_LENGTH",
    "NEWEST_FIRST",
    "OLDEST_FIRST",
    "UNKNOWN",
    "ListMemory",
    "ListReader",
    "Page",
]

NEWEST_FIRST, OLDEST_FIRST, UNKNOWN = "newest first", "oldest first", "unknown"
# Longer lists than this are not measured: at most ~17 probes before giving up.
MAX_LENGTH = 100_000


@dataclass(frozen=True, slots=True)
class Page:
    """One page as read: its entries, where they sat in the body, and whether it was past the
    end (then `past_end` says how the platform answered: "empty", "404", "400")."""

    number: int
    entries: Sequence[Any]
    path: str = ""
    past_end: str | None = None


# fetch(page, limit) -> Page; raises PollError for anything that is not a page or its end.
Fetch = Callable[[int, int], Awaitable[Page]]


@dataclass(slots=True)
class ListMemory:
    """What one endpoint's polls learnt of its list, kept between polls (in memory)."""

    order: str = UNKNOWN
    length: int | None = None
    ids: frozenset[str] = frozenset()
    past_end: str | None = None


@dataclass(slots=True)
class _Read:
    pages: dict[int, Page] = field(default_factory=dict)
    past_end: str | None = None


class ListReader:
    """Reads one poll's pages of a list; `pages` in list order, and the `Listing`."""

    def __init__(
        self,
        fetch: Fetch,
        *,
        limit: int,
        max_pages: int,
        memory: ListMemory,
        id_of: Callable[[Any], str | None],
        created_of: Callable[[Any], datetime | None],
    ) -> None:
        self._fetch = fetch
        self._limit = limit
        self._max_pages = max_pages
        self._memory = memory
        self._id_of = id_of
        self._created_of = created_of
        self._read = _Read()

    async def read(self, first: Page) -> tuple[list[Page], Listing]:
        """Every page this poll reads, given page 1 (already read); updates the memory."""
        memory, limit, pages = self._memory, self._limit, self._read.pages
        pages[1] = first
        length: int | None
        if len(first.entries) < limit:
            length = len(first.entries)  # one page holds the whole list
        elif memory.order == OLDEST_FIRST:
            length = await self._length(limit)
            if length is None:  # beyond any list a store has: read from the front
                await self._head()
            else:
                last = -(-length // limit)
                await self._pages(range(last, max(1, last - self._max_pages + 1) - 1, -1))
        else:
            length = await self._head()
            if length is None and memory.order == NEWEST_FIRST:
                window = self._max_pages * limit
                length = None if await self._exists(window + 1) else window
            elif length is None:
                length = await self._length(self._max_pages * limit)
                if length is not None:
                    await self._tail(-(-length // limit))
        ordered = [pages[n] for n in sorted(pages) if pages[n].past_end is None]
        self._learn(ordered, length)
        read = sum(len(p.entries) for p in ordered)
        listing = Listing(read=read, length=length, order=memory.order, past_end=memory.past_end)
        return ordered, listing

    async def _page(self, number: int) -> Page:
        page = self._read.pages.get(number)
        if page is None:
            page = self._read.pages[number] = await self._fetch(number, self._limit)
            if page.past_end is not None:
                self._read.past_end = page.past_end
        return page

    async def _pages(self, numbers: range) -> None:
        for number in numbers:
            await self._page(number)

    async def _head(self) -> int | None:
        """Pages 2..max_pages until the list ends: its length, None when it goes on."""
        for number in range(2, self._max_pages + 1):
            page = await self._page(number)
            if page.past_end is not None or len(page.entries) < self._limit:
                return (number - 1) * self._limit + len(page.entries)
        return None

    async def _tail(self, last: int) -> None:
        """From the last page backwards, beyond the head, until a page shows a task the last
        poll read (the rest was read then) or `max_pages` pages were read."""
        stop = max(self._max_pages, last - self._max_pages)
        for number in range(last, stop, -1):
            page = await self._page(number)
            if any(self._id_of(e) in self._memory.ids for e in page.entries):
                return

    async def _exists(self, position: int) -> bool:
        """Whether the list has an entry at `position` (1-based): one one-entry page."""
        page = await self._fetch(position, 1)
        if page.past_end is not None:
            self._read.past_end = page.past_end
        return page.past_end is None and len(page.entries) > 0

    async def _length(self, at_least: int) -> int | None:
        """The list's length, knowing it has `at_least` entries: from the last known length,
        two requests when it barely moved; a gallop and a binary search otherwise. None when
        it seems longer than `MAX_LENGTH` (a server that ignores `page` never ends)."""
        low, high = at_least, None
        hint = self._memory.length
        if hint is not None and hint > low:
            if await self._exists(hint):
                low = hint
            else:
                high = hint
        step = 1
        while high is None:
            if low + step > MAX_LENGTH:
                return None
            if await self._exists(low + step):
                low += step
                step *= 2
            else:
                high = low + step
        while high - low > 1:
            middle = (low + high) // 2
            if await self._exists(middle):
                low = middle
            else:
                high = middle
        return low

    def _learn(self, ordered: list[Page], length: int | None) -> None:
        """Update the memory: the order (from this poll's evidence), length, ids, end."""
        memory = self._memory
        evidence = self._evidence(ordered, length)
        if evidence is not None:
            memory.order = evidence
        memory.length = length
        memory.ids = frozenset(
            i for page in ordered for i in map(self._id_of, page.entries) if i is not None
        )
        if self._read.past_end is not None:
            memory.past_end = self._read.past_end

    def _evidence(self, ordered: list[Page], length: int | None) -> str | None:
        """Which end new tasks appear at, if this poll shows it; None when it does not."""
        first = ordered[0].entries if ordered else ()
        times = [self._created_of(e) for e in first]
        if len(times) > 1 and all(t is not None for t in times):
            known = [t for t in times if t is not None]
            if known[0] > known[-1] and all(a >= b for a, b in pairwise(known)):
                return NEWEST_FIRST
            if known[0] < known[-1] and all(a <= b for a, b in pairwise(known)):
                return OLDEST_FIRST
        seen = self._memory.ids
        if not seen:
            return None
        head = [self._id_of(e) in seen for e in first]
        newest = True in head and head.index(True) > 0
        oldest = False
        last = ordered[-1] if ordered else None
        if last is not None and length is not None and _holds_end(last, length, self._limit):
            tail = [self._id_of(e) in seen for e in last.entries]
            oldest = True in tail and tail[-1] is False
        if newest != oldest:
            return NEWEST_FIRST if newest else OLDEST_FIRST
        return None


def _holds_end(page: Page, length: int, limit: int) -> bool:
    """Whether `page` is the list's last page."""
    return (page.number - 1) * limit + len(page.entries) == length
