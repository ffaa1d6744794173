"""The Shoplazza source: the store's data-query task list, read page by page.

The list has no total, no has-more flag and no documented order, so paging stops at the first
short page or at `max_pages`, and a task seen twice (the list moved while we paged) counts once.
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
from bulkwatch.sources.http.response import Fingerprint, HttpResponse

__all__ = ["OPERATION_TYPE", "ShoplazzaSource"]

OPERATION_TYPE = "DATA_QUERY"
_LIST_KEYS = ("tasks", "querys")  # "querys" is what some versions and SDKs call the list
# The platform documents none of these; read whichever spelling a version happens to send.
_CREATED = ("created_at", "createdAt", "create_time")
_COMPLETED = ("completed_at", "completedAt", "finished_at")
_EXPIRES = ("expired_at", "expires_at", "expiredAt")


class ShoplazzaSource(HttpSource):
    """Polls one Shoplazza store's `data/tasks` list: one endpoint, key "tasks"."""

    request_id_header = "Request-Id"

    def __init__(
        self, config: ShoplazzaStore, store: ResolvedStore, session: aiohttp.ClientSession
    ) -> None:
        super().__init__(store, session)
        self._url = f"{config.url_base()}/openapi/{config.api_version}/data/tasks"
        self._limit = config.page_limit
        self._max_pages = config.max_pages
        self._status_map = config.effective_status_map()

    def auth_headers(self, token: str) -> dict[str, str]:
        return {"Access-Token": token, "Content-Type": "application/json"}

    async def poll_since(
        self, key: EndpointKey, now: datetime, known: bytes | None
    ) -> PollResult | Unchanged:
        """Read the list from page 1 until a short page or `max_pages`; raise `PollError`.
        `Unchanged` when page 1 is the whole list fingerprinted `known`, byte for byte."""
        token = self._token_for(key)
        headers = self._headers(token)
        tasks: dict[str, TaskSnapshot] = {}
        first_page: dict[str, int] = {}
        problems: list[str] = []
        request_id: str | None = None
        entries_seen = 0
        fingerprint = Fingerprint()
        for page in range(1, self._max_pages + 1):
            params = {"page": str(page), "limit": str(self._limit)}
            resp = await self._client.get(
                key, self._url, params=params, headers=headers, secret=token, now=now
            )
            request_id = request_id or resp.request_id
            digest = fingerprint.add(resp)
            # The same first page as a one-page list already judged: the same list.
            if page == 1 and digest == known:
                return Unchanged(key, digest, request_id)
            entries, path = _task_list(resp, key, page)
            entries_seen += len(entries)
            for index, entry in enumerate(entries):
                where = f"page {page} {path}[{index}]"
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
                first_page[snapshot.task_id] = page
            if len(entries) < self._limit:
                break
        if entries_seen and not tasks:
            # Not one readable entry: the body is garbage, not a list of odd tasks.
            raise invalid(
                f"none of the {entries_seen} task entries could be read: {problems[0]}",
                key=key,
                http_status=resp.status,
                request_id=request_id,
            )
        return PollResult(
            key=key,
            tasks=tuple(tasks.values()),
            exclusive=False,
            request_id=request_id,
            problems=tuple(problems),
            fingerprint=digest,
        )

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


def _task_list(resp: HttpResponse, key: EndpointKey, page: int) -> tuple[list[Any], str]:
    """The page's task entries and where they sat in the body; `PollError` if unreadable."""
    where = "" if page == 1 else f"page {page}: "
    if not resp.ok:
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
