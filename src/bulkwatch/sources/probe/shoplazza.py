"""`bulkwatch probe` for a Shoplazza store: one poll as the daemon makes it (with no memory of
earlier ones), then one page past the end of the list, if that poll did not read one."""

from __future__ import annotations

from collections import Counter
from datetime import datetime

from bulkwatch.config import ShoplazzaStore
from bulkwatch.model import PollError, PollResult, TaskStatus
from bulkwatch.sources.listing import NEWEST_FIRST, OLDEST_FIRST
from bulkwatch.sources.probe.report import StoreReport
from bulkwatch.sources.shoplazza import ShoplazzaSource

__all__ = ["probe_shoplazza"]

_LIST_CHECKS = ("list order", "list length", "past the end", "statuses")


async def probe_shoplazza(
    source: ShoplazzaSource, config: ShoplazzaStore, report: StoreReport, now: datetime
) -> tuple[PollError | None, str]:
    """The list checks; returns the first request's error (None when it answered) and the
    path it asked for, for the shared `auth` and `api version` lines."""
    key = source.endpoints[0]
    path = f"/openapi/{config.api_version}/data/tasks"
    try:
        result = await source.poll_since(key, now, None)
    except PollError as exc:
        report.skip(*_LIST_CHECKS, why="the list could not be read")
        return exc, path
    assert isinstance(result, PollResult)  # noqa: S101 - no fingerprint given, so never Unchanged
    listing = result.listing
    assert listing is not None  # noqa: S101 - the list source always says what it read
    if listing.order in (NEWEST_FIRST, OLDEST_FIRST):
        report.add(
            "list order",
            "ok",
            listing.order,
            f"{listing.order}: the created times on page 1 say so",
        )
    else:
        why = (
            "fewer than 2 tasks on page 1"
            if len(result.tasks) < 2
            else "the entries carry no created time"
        )
        report.add(
            "list order",
            "ok",
            "unknown",
            f"unknown ({why}); bulkwatch learns it from where new ids appear and reads both "
            "ends of the list until then",
        )
    window = config.max_pages * config.page_limit
    if listing.length is None:
        report.add(
            "list length",
            "fail",
            None,
            f"more than {listing.read} tasks, beyond what a poll reads ({window})",
            "raise max_pages; tasks beyond the window are not watched",
        )
    elif listing.length > window:
        pages = -(-listing.length // config.page_limit)
        report.add(
            "list length",
            "fail",
            listing.length,
            f"{listing.length} tasks; a poll reads {window} "
            f"(max_pages {config.max_pages} x page_limit {config.page_limit})",
            f"raise max_pages to {pages} or more; tasks beyond the window are not watched",
        )
    else:
        report.add(
            "list length",
            "ok",
            listing.length,
            f"{listing.length} tasks; a poll reads up to {window} "
            f"(max_pages {config.max_pages} x page_limit {config.page_limit})",
        )
    await _past_end(source, config, report, seen=listing.past_end, length=listing.length, now=now)
    _statuses(report, result)
    return None, path


async def _past_end(
    source: ShoplazzaSource,
    config: ShoplazzaStore,
    report: StoreReport,
    *,
    seen: str | None,
    length: int | None,
    now: datetime,
) -> None:
    """The `past the end` line: how a page after the last one is answered."""
    if seen is None and length is not None:
        page = max(2, -(-length // config.page_limit) + 1)
        try:
            answer = await source.read_page(source.endpoints[0], page, config.page_limit, now)
        except PollError as exc:
            report.add(
                "past the end",
                "fail",
                str(exc.http_status or exc.kind.value),
                f"page {page} (after the last) failed: {exc.message}",
                "report it with this output: bulkwatch reads 200-empty, 404 and 400 as the end",
            )
            return
        seen = answer.past_end
        if seen is None:
            report.add(
                "past the end",
                "fail",
                "entries",
                f"page {page} (after the last) still had {len(answer.entries)} entries: the "
                "platform may ignore `page`",
                "report it with this output",
            )
            return
    if seen is None:
        report.skip("past the end", why="the list's length is not known")
        return
    how = "HTTP 200 with an empty list" if seen == "empty" else f"HTTP {seen}"
    report.add("past the end", "ok", seen, f"{how}; bulkwatch reads it as the end of the list")


def _statuses(report: StoreReport, result: PollResult) -> None:
    """The `statuses` line: each raw status seen, with what `status_map` makes of it."""
    counts = Counter(t.raw_status for t in result.tasks)
    mapped = {t.raw_status: t.status for t in result.tasks}
    value = {str(raw): _name(mapped[raw]) for raw in sorted(counts, key=str)}
    shown = ", ".join(
        f"{raw} ({_name(mapped[raw]) or 'not in status_map'}) x{n}"
        for raw, n in sorted(counts.items(), key=lambda item: str(item[0]))
    )
    unknown = sorted(str(raw) for raw in counts if mapped[raw] is TaskStatus.UNKNOWN)
    if not counts:
        report.add("statuses", "ok", {}, "no tasks in the list")
    elif unknown:
        report.add(
            "statuses",
            "fail",
            value,
            shown,
            f"add {', '.join(unknown)} to status_map (e.g. status_map: {{{unknown[0]}: FAILED}} "
            "if that is what it means); until then each fires task.unknown",
        )
    else:
        report.add("statuses", "ok", value, shown)


def _name(status: TaskStatus) -> str | None:
    return None if status is TaskStatus.UNKNOWN else status.value
