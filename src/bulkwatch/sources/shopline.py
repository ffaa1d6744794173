"""The Shopline source: the store's current bulk operation, one endpoint per operation type.

The endpoint shows at most one task, and another app can replace it at any time, so results
are `exclusive`: a different id there means the previous task left our view.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import aiohttp

from bulkwatch.config import ResolvedStore, ShoplineStore
from bulkwatch.model import EndpointKey, Platform, PollResult, TaskSnapshot, TaskStatus, Unchanged
from bulkwatch.sources.common import HttpSource
from bulkwatch.sources.fields import as_id, read_datetime, read_int, read_text, short, type_name
from bulkwatch.sources.http.client import decode_json
from bulkwatch.sources.http.failures import envelope_error, invalid_answer, status_error
from bulkwatch.sources.http.recording import Recording
from bulkwatch.sources.http.refresh import REFRESH_AHEAD, AppCredentials, RefreshingTokenProvider
from bulkwatch.sources.http.response import Fingerprint, HttpResponse
from bulkwatch.sources.http.tokens import TokenProvider
from bulkwatch.store.base import TokenState

__all__ = ["OPERATION_TYPES", "ShoplineSource"]

OPERATION_TYPES = frozenset({"QUERY", "MUTATION", "MUTATION_GENERAL"})
_STATUSES = {status.value: status for status in TaskStatus if status is not TaskStatus.UNKNOWN}


class ShoplineSource(HttpSource):
    """Polls one Shopline store's `current_bulk_operation.json`, once per operation type.

    With the app's credentials (`app_key`, `app_secret`) and a `tokens` state to keep them
    in, the access token is renewed before it expires (`RefreshingTokenProvider`); without
    either, the configured token is sent as it is (the probe never renews a token: a renewal
    retires the token the daemon uses).
    """

    request_id_header = "traceId"

    def __init__(
        self,
        config: ShoplineStore,
        store: ResolvedStore,
        session: aiohttp.ClientSession,
        recording: Recording | None = None,
        tokens: TokenState | None = None,
    ) -> None:
        super().__init__(store, session, recording)
        self._url = (
            f"{config.url_base()}/admin/openapi/{config.api_version}/current_bulk_operation.json"
        )
        app = config.app_credentials()
        if app is not None and tokens is not None:
            self._tokens = RefreshingTokenProvider(
                TokenProvider(config.token(), config.access_token_file),
                store=store.name,
                app=AppCredentials(f"{config.url_base()}/admin/oauth/token/refresh", *app),
                state=tokens,
                session=session,
                timeout=store.timeout,
                ahead=max(REFRESH_AHEAD, 3 * store.interval),
                limiter=self.limiter,
            )

    def auth_headers(self, token: str) -> dict[str, str]:
        return {
            "Authorization": f"Bearer {token}",
            "Content-Type": "application/json; charset=utf-8",
        }

    async def poll_since(
        self, key: EndpointKey, now: datetime, known: bytes | None
    ) -> PollResult | Unchanged:
        """The current task of `key`'s operation type (none is a valid answer); `Unchanged`
        when the response is the one fingerprinted `known`; or `PollError`."""
        token = await self._token_for(key, now)
        headers = self._headers(token)
        resp = await self._client.get(
            key, self._url, params={"type": key.endpoint}, headers=headers, secret=token, now=now
        )
        # "No current task" is undocumented; a 404 is one of the ways it has been seen. (One
        # on an endpoint that never showed a task may be a wrong path: the poller says so.)
        if not resp.ok and resp.status != 404:
            raise status_error(resp, key)
        fingerprint = Fingerprint().add(resp)
        if fingerprint == known:
            return Unchanged(key, fingerprint, resp.request_id)
        if resp.status == 404:
            html = resp.body.lstrip()[:1] == b"<"
            return _result(key, resp, fingerprint, no_task="404 html" if html else "404")
        if not resp.body.strip():
            return _result(key, resp, fingerprint, no_task="empty body")
        body, shape = _task_object(decode_json(resp, key), resp, key)
        if body is None:
            return _result(key, resp, fingerprint, no_task=shape)
        problems: list[str] = []
        snapshot = self._snapshot(body, key, now, problems, resp)
        return _result(key, resp, fingerprint, snapshot, problems)

    def _snapshot(
        self,
        body: dict[str, Any],
        key: EndpointKey,
        now: datetime,
        problems: list[str],
        resp: HttpResponse,
    ) -> TaskSnapshot:
        task_id = as_id(body.get("id"))
        if task_id is None:
            keys = ", ".join(short(k, 20) for k in list(body)[:5])
            raise invalid_answer(
                resp,
                key,
                f"bulk operation without a usable id (id {short(body.get('id'))}; keys: {keys})",
            )
        raw_status = body.get("status")
        if not isinstance(raw_status, str):
            # Only one task is shown: reading it as UNKNOWN would invent a transition (or a
            # superseded task) from a garbled body, so the whole poll is refused instead.
            what = "missing" if raw_status is None else f"{type_name(raw_status)}, not a string"
            raise invalid_answer(
                resp, key, f"bulk operation {short(task_id)} has a status that is {what}"
            )
        status = _STATUSES.get(raw_status.strip().upper(), TaskStatus.UNKNOWN)
        return TaskSnapshot(
            platform=Platform.SHOPLINE,
            store=self.store,
            task_id=task_id,
            operation_type=_operation_type(body.get("type"), key.endpoint, problems),
            status=status,
            raw_status=raw_status,
            observed_at=now,
            url=read_text(body.get("url"), "url", problems),
            partial_data_url=read_text(body.get("partialDataUrl"), "partialDataUrl", problems),
            error_code=read_text(body.get("errorCode"), "errorCode", problems),
            reason=read_text(body.get("reason"), "reason", problems),
            completed_count=read_int(body.get("completedCount"), "completedCount", problems),
            created_at=read_datetime(body.get("createdAt"), "createdAt", problems),
            completed_at=read_datetime(body.get("completedAt"), "completedAt", problems),
            expires_at=read_datetime(body.get("expiredAt"), "expiredAt", problems),
        )


def _operation_type(value: Any, polled: str, problems: list[str]) -> str:
    if value is None or value == "":
        return polled
    if not isinstance(value, str):
        problems.append(f"type: expected a string, got {type_name(value)}; read as {polled}")
        return polled
    # A type we do not know yet is still the platform's word for it: keep it.
    upper = value.strip().upper()
    return upper if upper in OPERATION_TYPES else value


def _task_object(
    body: Any, resp: HttpResponse, key: EndpointKey
) -> tuple[dict[str, Any] | None, str]:
    """The task object inside the body, or None and how the body said there is no current
    task: `null`, `{}`, `data null`, `id null`, `id ""`."""
    if body is None:
        return None, "null"
    if not isinstance(body, dict):
        raise invalid_answer(
            resp, key, f"body is {type_name(body)}; expected a bulk operation object"
        )
    # The documented body is the task itself; a wrapper is told apart by having no id.
    if "id" not in body and ("data" in body or "code" in body):
        error = envelope_error(body, resp, key)
        if error is not None:
            raise error
        body = body.get("data")
        if body is None:
            return None, "data null"
        if not isinstance(body, dict):
            raise invalid_answer(
                resp, key, f"data is {type_name(body)}; expected a bulk operation object"
            )
    if not body:
        return None, "{}"
    # An object with an empty id (and its other fields empty too, as Go servers send a zero
    # struct) says "no task" as plainly as no object.
    if "id" in body and body["id"] in (None, ""):
        return None, "id null" if body["id"] is None else 'id ""'
    return body, ""


def _result(
    key: EndpointKey,
    resp: HttpResponse,
    fingerprint: bytes,
    snapshot: TaskSnapshot | None = None,
    problems: list[str] | None = None,
    *,
    no_task: str | None = None,
) -> PollResult:
    return PollResult(
        key=key,
        tasks=(snapshot,) if snapshot is not None else (),
        exclusive=True,
        request_id=resp.request_id,
        http_status=resp.status,
        problems=tuple(problems or ()),
        fingerprint=fingerprint,
        no_task=no_task,
    )
