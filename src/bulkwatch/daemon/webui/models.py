"""What the API takes and returns, as pydantic models: the handlers validate and serialise
with them, and the OpenAPI document is generated from them, so the two cannot drift."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, BeforeValidator, ConfigDict, Field

from bulkwatch.model import Platform, TaskStatus
from bulkwatch.store.base import DeliveryStatus

__all__ = [
    "DeadDeliveryOut",
    "DeadList",
    "DeadQuery",
    "DeliveryOut",
    "EndpointOut",
    "EventList",
    "EventOut",
    "EventQuery",
    "InvalidParam",
    "Problem",
    "ReplicaOut",
    "RequeueRequest",
    "RequeueResult",
    "StoreList",
    "StoreOut",
    "StoreQuery",
    "StoreState",
    "Summary",
    "TaskList",
    "TaskOut",
    "TaskQueryParams",
]

StoreState = Literal["up", "failing", "down", "pending"]
_RFC3339 = re.compile(r"\d{4}-\d\d-\d\d[Tt ]\d\d:\d\d")


def _rfc3339(value: object) -> object:
    # pydantic would also read a number as seconds since 1970; a query gives only text.
    if isinstance(value, str) and not _RFC3339.match(value):
        raise ValueError("must be an RFC 3339 date-time with an offset (2026-11-23T10:00:00Z)")
    return value


Timestamp = Annotated[AwareDatetime, BeforeValidator(_rfc3339)]
Cursor = Annotated[str, Field(min_length=1, max_length=512, pattern=r"^[A-Za-z0-9_-]+={0,2}$")]


class _Out(BaseModel):
    model_config = ConfigDict(frozen=True)


class _Query(BaseModel):
    """Query parameters: unknown ones are an error, not silently ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)


# --- problems (RFC 9457) -------------------------------------------------------------------


class InvalidParam(_Out):
    name: str = Field(description="The query parameter, path segment or body field")
    reason: str


class Problem(_Out):
    """An error, as `application/problem+json`."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str
    instance: str | None = None
    invalid_params: list[InvalidParam] | None = Field(default=None, alias="invalid-params")

    model_config = ConfigDict(frozen=True, populate_by_name=True)


# --- stores ---------------------------------------------------------------------------------


class EndpointOut(_Out):
    endpoint: str = Field(description="tasks (Shoplazza), QUERY or MUTATION (Shopline)")
    failing: bool
    consecutive_failures: int
    last_poll_at: datetime | None = Field(description="Last poll run (or skipped in backoff)")
    last_success_at: datetime | None
    last_error: str | None
    next_poll_at: datetime | None = Field(description="When the scheduler runs it next")


class StoreOut(_Out):
    name: str
    platform: Platform
    state: StoreState = Field(
        description="up; failing: an endpoint's last poll failed; down: store.down was "
        "announced; pending: not polled yet"
    )
    up: bool
    interval_s: float
    last_poll_at: datetime | None
    last_success_at: datetime | None
    last_error: str | None
    next_poll_at: datetime | None
    backoff_until: datetime | None = Field(description="Polls are skipped until then")
    owner: str | None = Field(
        default=None,
        description="With replicas (state.replicas): the replica holding the store's lease, "
        "which polls it; null without replicas, or while no replica holds it",
    )
    endpoints: list[EndpointOut]


class StoreList(_Out):
    stores: list[StoreOut]
    total: int = Field(description="Configured stores matching the filter")
    next_cursor: str | None


class StoreQuery(_Query):
    platform: Platform | None = None
    limit: int = Field(default=100, ge=1, le=500)
    cursor: Cursor | None = None


class ReplicaOut(_Out):
    id: str = Field(description="state.replica_id, by default <host name>-<pid>")
    stores_owned: int = Field(description="Stores it holds a lease for, and polls")
    share: int = Field(description="Its fair share: ceil(stores / live replicas)")
    live_replicas: int
    renewal_age_s: float | None = Field(
        description="Seconds since its last successful lease renewal was sent"
    )


class Summary(_Out):
    ok: bool = Field(description="Every store up, no endpoint failing, no dead delivery")
    instance: str
    stores: int
    down: int
    failing: int
    pending: int = Field(description="Deliveries waiting to be sent")
    dead: int = Field(description="Deliveries that gave up")
    troubled: list[str] = Field(description="Down or failing stores, the first 100 by name")
    last_poll_at: datetime | None
    replica: ReplicaOut | None = Field(
        default=None, description="This replica and its leases; null without replicas"
    )


# --- tasks ----------------------------------------------------------------------------------


class TaskOut(_Out):
    store: str
    platform: Platform
    task_id: str
    endpoint: str
    operation_type: str
    status: TaskStatus
    raw_status: str | int | None
    completed_count: int | None
    error_code: str | None
    reason: str | None
    created_at: datetime | None
    completed_at: datetime | None
    expires_at: datetime | None
    result_url: str | None = Field(description="The result file, only while it is valid")
    first_seen_at: datetime
    changed_at: datetime
    observed_at: datetime
    gone: bool = Field(description="Shopline: replaced by a newer task")


class TaskList(_Out):
    tasks: list[TaskOut]
    next_cursor: str | None


class TaskQueryParams(_Query):
    store: str | None = Field(default=None, min_length=1, max_length=64)
    status: TaskStatus | None = None
    platform: Platform | None = None
    since: Timestamp | None = Field(
        default=None, description="Only tasks first seen at or after (RFC 3339, with offset)"
    )
    limit: int = Field(default=50, ge=1, le=500)
    cursor: Cursor | None = None


# --- events and deliveries ------------------------------------------------------------------


class DeliveryOut(_Out):
    id: int
    notifier: str
    status: DeliveryStatus
    attempts: int
    created_at: datetime
    next_attempt_at: datetime
    delivered_at: datetime | None
    last_error: str | None


class EventOut(_Out):
    id: str
    type: str
    store: str
    subject: str | None
    time: datetime | None
    data: dict[str, Any] | None
    deliveries: list[DeliveryOut]


class EventList(_Out):
    events: list[EventOut]
    next_cursor: str | None


class EventQuery(_Query):
    limit: int = Field(default=50, ge=1, le=200)
    cursor: Cursor | None = None


class DeadDeliveryOut(DeliveryOut):
    event_id: str
    event_type: str
    store: str


class DeadList(_Out):
    deliveries: list[DeadDeliveryOut]
    total: int = Field(description="Dead deliveries in all (of the notifier, if given)")
    next_cursor: str | None


class DeadQuery(_Query):
    notifier: str | None = Field(default=None, min_length=1, max_length=64)
    limit: int = Field(default=100, ge=1, le=500)
    cursor: Cursor | None = None


class RequeueRequest(BaseModel):
    """Which dead deliveries to send again: `ids`, or every one (of `notifier`, if given)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    ids: list[Annotated[int, Field(ge=1, le=2**63 - 1)]] | None = Field(
        default=None, max_length=1000
    )
    notifier: str | None = Field(default=None, min_length=1, max_length=64)


class RequeueResult(_Out):
    requeued: int
