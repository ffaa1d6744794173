"""The Shoplazza source: the store's data-query task list, read page by page.

The list has no total, no has-more flag and no documented order: `sources.listing` finds the
end new tasks appear at and reads up to `max_pages` pages from it, and a task seen twice (the
list moved while we paged) counts once.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import aiohttp

from bulkwatch.config import ResolvedStore, ShoplazzaStore
from bulkwatch.model import (
    EndpointKey,
    FailureKind,
    Platform,
    PollError,
    PollResult,
    TaskSnapshot,
    TaskStatus,
    Unchanged,
)
from bulkwatch.sources.common import HttpSource
from bulkwatch.sources.fields import as_id, as_int, read_datetime, read_text, short, type_name
from bulkwatch.sources.http.client import decode_json
from bulkwatch.sources.http.failures import (
    envelope_error,
    invalid,
    invalid_answer,
    looks_like_auth,
    status_error,
)
from bulkwatch.sources.http.recording import Recording
from bulkwatch.sources.http.response import Fingerprint, HttpResponse
from bulkwatch.sources.listing import ListMemory, ListReader, Page

__all__ = ["OPERATION_TYPE", "ShoplazzaSource"]

OPERATION_TYPE = "DATA_QUERY"
_LIST_KEYS = ("tasks", "querys")  # "querys" is what some versions and SDKs call the list
# The platform documents none of these; read whichever spelling a version happens to send.
_CREATED = ("created_at", "createdAt", "create_time")
_COMPLETED = ("completed_at", "completedAt", "finished_at")
_EXPIRES = ("expired_at", "expires_at", "expiredAt")
# Past the last page, a 404 or a 400 is the end of the list (page 1 never is).
_PAST_END = frozenset({400, 404})
_BARE_TEXTS = frozenset({"", "bad request", "400 bad request"})
_BARE_400 = (
    "HTTP 400 before any successful poll of store {0.store}: either its access token is wrong "
    "or expired, or its domain does not name this store (check both); "
)


class ShoplazzaSource(HttpSource):
    """Polls one Shoplazza store's `data/tasks` list: one endpoint, key "tasks"."""

    request_id_header = "Request-Id"

    def __init__(
        self,
        config: ShoplazzaStore,
        store: ResolvedStore,
        session: aiohttp.ClientSession,
        recording: Recording | None = None,
    ) -> None:
        super().__init__(store, session, recording)
        self._url = f"{config.url_base()}/openapi/{config.api_version}/data/tasks"
        self._limit = config.page_limit
        self._max_pages = config.max_pages
        self._status_map = config.effective_status_map()
        self._domain = config.domain
        self._lists: dict[EndpointKey, ListMemory] = {}
        # Until a poll succeeds, a bare 400 most likely means a wrong token or domain.
        self._never_polled = True

    def auth_headers(self, token: str) -> dict[str, str]:
        return {"Access-Token": token, "Content-Type": "application/json"}

    async def poll_since(
        self, key: EndpointKey, now: datetime, known: bytes | None
    ) -> PollResult | Unchanged:
        """Read the list from the end new tasks appear at (`sources.listing`); raise
        `PollError`. `Unchanged` when page 1 is the whole list fingerprinted `known`."""
        token = await self._token_for(key, now)
        fingerprint = Fingerprint()
        request_ids: list[str] = []

        async def fetch(page: int, limit: int) -> Page:
            return await self._fetch(
                key, token, page, limit, now=now, fingerprint=fingerprint, request_ids=request_ids
            )

        first = await fetch(1, self._limit)
        digest = fingerprint.add_nothing()
        # The same first page as a one-page list already judged: the same list.
        if digest == known:
            return Unchanged(key, digest, request_ids[0] if request_ids else None)
        memory = self._lists.setdefault(key, ListMemory())
        reader = ListReader(
            fetch,
            limit=self._limit,
            max_pages=self._max_pages,
            memory=memory,
            id_of=_entry_id,
            created_of=_entry_created,
        )
        pages, listing = await reader.read(first)
        self._never_polled = False
        tasks: dict[str, TaskSnapshot] = {}
        first_page: dict[str, int] = {}
        problems: list[str] = []
        entries_seen = 0
        for page in pages:
            entries_seen += len(page.entries)
            for index, entry in enumerate(page.entries):
                where = f"page {page.number} {page.path}[{index}]"
                snapshot = self._snapshot(entry, where, now, problems)
                if snapshot is None:
                    continue
                if snapshot.task_id in tasks:
                    problems.append(
                        f"{where}: duplicate query_id {short(snapshot.task_id)} "
                        f"(first seen on page {first_page[snapshot.task_id]}); skipped"
                    )
                    continue
                tasks[snapshot.task_id] = snapshot
                first_page[snapshot.task_id] = page.number
        request_id = request_ids[0] if request_ids else None
        if entries_seen and not tasks:
            # Not one readable entry: the body is garbage, not a list of odd tasks.
            raise invalid(
                f"none of the {entries_seen} task entries could be read: {problems[0]}",
                key=key,
                http_status=200,
                request_id=request_id,
            )
        return PollResult(
            key=key,
            tasks=tuple(tasks.values()),
            exclusive=False,
            request_id=request_id,
            problems=tuple(problems),
            fingerprint=fingerprint.add_nothing(),
            listing=listing,
        )

    async def read_page(self, key: EndpointKey, page: int, limit: int, now: datetime) -> Page:
        """One page of the list as a poll reads it (`Page.past_end` says how a page after the
        last one was answered); `PollError` for anything else."""
        token = await self._token_for(key, now)
        return await self._fetch(
            key, token, page, limit, now=now, fingerprint=Fingerprint(), request_ids=[]
        )

    async def _fetch(
        self,
        key: EndpointKey,
        token: str,
        page: int,
        limit: int,
        *,
        now: datetime,
        fingerprint: Fingerprint,
        request_ids: list[str],
    ) -> Page:
        params = {"page": str(page), "limit": str(limit)}
        resp = await self._client.get(
            key, self._url, params=params, headers=self._headers(token), secret=token, now=now
        )
        if resp.request_id:
            request_ids.append(resp.request_id)
        fingerprint.add(resp)
        if page > 1 and resp.status in _PAST_END:
            return Page(page, (), past_end=str(resp.status))
        entries, path = _task_list(resp, key, page, self._never_polled)
        if len(entries) > limit:
            # A server that ignores paging: taking the page whole would judge (and announce)
            # every task it lists on every poll, at a cost no one bounded.
            raise invalid_answer(
                resp,
                key,
                f"page {page} lists {len(entries)} tasks, more than the {limit} asked for: "
                "the server ignores the page size",
            )
        if page > 1 and not entries:
            return Page(page, entries, path, past_end="empty")
        return Page(page, entries, path)

    def _snapshot(
        self, entry: Any, where: str, now: datetime, problems: list[str]
    ) -> TaskSnapshot | None:
        """One list entry as a snapshot, or None (with a problem) when it cannot be tracked."""
        if not isinstance(entry, dict):
            problems.append(f"{where}: expected an object, got {type_name(entry)}; skipped")
            return None
        raw_id = entry.get("query_id")
        task_id = as_id(raw_id)
        if task_id is None:
            what = "missing query_id" if raw_id in (None, "") else f"bad query_id {short(raw_id)}"
            problems.append(f"{where}: {what}; skipped")
            return None
        raw_status = entry.get("query_status")
        code = as_int(raw_status)
        if code is None:
            # Reading it as UNKNOWN would fire a made-up transition; skipping loses nothing,
            # since a task missing from the list is never an event.
            what = (
                f"missing query_status of task {short(task_id)}"
                if raw_status is None
                else f"query_status {short(raw_status)} of task {short(task_id)} is not an integer"
            )
            problems.append(f"{where}: {what}; skipped")
            return None
        query = entry.get("query")
        url = None
        if isinstance(query, dict):
            url = read_text(query.get("url"), f"{where}.query.url", problems)
        elif query is not None:
            problems.append(f"{where}.query: expected an object, got {type_name(query)}")
        return TaskSnapshot(
            platform=Platform.SHOPLAZZA,
            store=self.store,
            task_id=task_id,
            operation_type=OPERATION_TYPE,
            status=self._status_map.get(code, TaskStatus.UNKNOWN),
            raw_status=code,
            observed_at=now,
            url=url,
            created_at=_first_time(entry, _CREATED, where, problems),
            completed_at=_first_time(entry, _COMPLETED, where, problems),
            expires_at=_first_time(entry, _EXPIRES, where, problems),
        )


def _first_time(
    entry: dict[str, Any], names: tuple[str, ...], where: str, problems: list[str]
) -> datetime | None:
    for name in names:
        if entry.get(name) not in (None, ""):
            return read_datetime(entry[name], f"{where}.{name}", problems)
    return None


def _entry_id(entry: Any) -> str | None:
    return as_id(entry.get("query_id")) if isinstance(entry, dict) else None


def _entry_created(entry: Any) -> datetime | None:
    if not isinstance(entry, dict):
        return None
    return _first_time(entry, _CREATED, "", [])


def _task_list(
    resp: HttpResponse, key: EndpointKey, page: int, never_polled: bool = False
) -> tuple[list[Any], str]:
    """The page's task entries and where they sat in the body; `PollError` if unreadable."""
    where = "" if page == 1 else f"page {page}: "
    if not resp.ok:
        bare = (resp.error_text or "").strip().lower() in _BARE_TEXTS
        if resp.status == 400 and never_polled and bare:
            # Shoplazza answers a bare 400 "Bad Request" to bad credentials too.
            raise status_error(resp, key, kind=FailureKind.AUTH, where=_BARE_400.format(key))
        auth = resp.status == 400 and looks_like_auth(resp.error_text)
        raise status_error(resp, key, kind=FailureKind.AUTH if auth else None, where=where)

    def bad(message: str) -> PollError:
        return invalid_answer(resp, key, where + message)

    if not resp.body.strip():
        raise bad("empty body; expected an object with a 'tasks' list")
    body = decode_json(resp, key, where=where)
    if not isinstance(body, dict):
        raise bad(f"body is {type_name(body)}; expected an object with a 'tasks' list")
    error = envelope_error(body, resp, key)
    if error is not None:
        raise error
    container, prefix = body, ""
    if not any(name in body for name in _LIST_KEYS) and "data" in body:
        container, prefix = body["data"], "data."
        if container is None:
            return [], "data"  # a success envelope without data: no tasks on this page
        if not isinstance(container, dict):
            raise bad(f"data is {type_name(container)}; expected an object with a 'tasks' list")
    for name in _LIST_KEYS:
        if name in container:
            entries = container[name]
            if entries is None:  # a JSON null list, as Go servers send an empty slice
                return [], prefix + name
            if not isinstance(entries, list):
                raise bad(f"{prefix}{name} is {type_name(entries)}; expected a list")
            return entries, prefix + name
    keys = ", ".join(short(k, 20) for k in list(container)[:5]) or "none"
    raise bad(f"no 'tasks' or 'querys' list in the {prefix.rstrip('.') or 'body'} (keys: {keys})")
