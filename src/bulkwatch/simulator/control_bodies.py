"""The JSON bodies the `/_sim` control routes accept, checked by pydantic (unknown keys refused)."""

from __future__ import annotations

from typing import Final, Literal, cast

from pydantic import BaseModel, ConfigDict, Field

from bulkwatch.model import Platform
from bulkwatch.simulator.model import EmptyStyle, TaskFields
from bulkwatch.simulator.variants import AuthFailure, CreatedTimes, ListOrder, PastEnd, Redirect

__all__ = [
    "Advance",
    "FaultBody",
    "Latency",
    "StoreCreate",
    "StorePatch",
    "TaskCreate",
    "TaskUpdate",
    "VariantsPatch",
]

_FIELDS: Final = frozenset(TaskFields.__annotations__)


class Body(BaseModel):
    """A control request body: unknown keys are an error."""

    model_config = ConfigDict(extra="forbid")


class TaskUpdate(Body):
    status: int | str | None = None
    url: str | None = None
    partial_data_url: str | None = None
    completed_count: int = Field(default=0, ge=0)
    error_code: str | None = None
    reason: str | None = None
    created_at: float = 0.0
    completed_at: float | None = None
    expired_at: float | None = None

    def fields(self) -> TaskFields:
        # Only what the caller sent: absent keys keep or derive their values.
        return cast(TaskFields, {k: getattr(self, k) for k in self.model_fields_set & _FIELDS})


class TaskCreate(TaskUpdate):
    id: str | None = None
    type: str | None = None


class Advance(Body):
    fail: bool = False


class FaultBody(Body):
    """The parameters of `Simulator.inject`."""

    kind: str | int
    store: str | None = None
    endpoint: str | None = None
    times: int | None = 1
    probability: float = 1.0
    status: int | None = None
    retry_after: float | None = None
    delay: float | None = None
    size: int | None = None


class StoreCreate(Body):
    name: str
    platform: Platform
    token: str | None = None
    body_style: str | None = None
    empty_style: EmptyStyle = "object"
    operation_types: tuple[Literal["QUERY", "MUTATION"], ...] = ("QUERY", "MUTATION")
    require_content_type: bool = False
    max_tasks: int = 1000


class StorePatch(Body):
    token: str | None = None
    body_style: str | None = None
    empty_style: EmptyStyle | None = None
    require_content_type: bool | None = None


class VariantsPatch(Body):
    list_order: ListOrder | None = None
    past_end: PastEnd | None = None
    no_task: EmptyStyle | None = None
    failed_code: int | None = None
    auth_failure: AuthFailure | None = None
    redirect: Redirect | None = None
    created_times: CreatedTimes | None = None
    token_lifetime: float | None = Field(default=None, gt=0)  # null: tokens never expire


class Latency(Body):
    seconds: float = Field(ge=0)
