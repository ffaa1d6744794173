"""Simulated stores and their tasks: the state behind the fake platform APIs.

Everything runs on the event loop's thread: the HTTP handlers, the control routes, the
automatic driver and a test's direct calls all change the same objects, without locks.

Statuses are kept raw, as the platform would send them: an int for Shoplazza (`query_status`),
a string for Shopline, so tests can also serve codes the daemon does not know.
"""

from __future__ import annotations

import random
import re
import zlib
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Final, Literal, TypedDict, get_args

from bulkwatch.model import Platform

__all__ = [
    "BODY_STYLES",
    "EMPTY_STYLES",
    "ERROR_REASONS",
    "SHOPLAZZA_TYPE",
    "SHOPLINE_TYPES",
    "EmptyStyle",
    "NotFoundError",
    "SimStore",
    "SimTask",
    "StoreSpec",
    "StoreStats",
    "TaskFields",
    "collect",
    "make_rng",
    "make_stores",
]

EmptyStyle = Literal[
    "object", "null", "empty", "404", "404_html", "id_null", "id_empty", "data_null"
]
BODY_STYLES: Final = {
    Platform.SHOPLAZZA: ("tasks", "querys", "wrapped"),
    Platform.SHOPLINE: ("plain", "wrapped"),
}
EMPTY_STYLES: Final = get_args(EmptyStyle)
_NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")  # bulkwatch's store name rule
SHOPLAZZA_TYPE: Final = "DATA_QUERY"
SHOPLINE_TYPES: Final = ("QUERY", "MUTATION", "MUTATION_GENERAL")
ERROR_REASONS: Final = {
    "TIMEOUT": "Process timeout",
    "ACCESS_DENIED": "No access permission",
    "NO_DATA": "No data found",
}


class NotFoundError(LookupError):
    """An unknown store or task: the control routes answer 404."""


class TaskFields(TypedDict, total=False):
    """Task fields a caller may set; a key left out keeps (or derives) the current value."""

    url: str | None
    partial_data_url: str | None
    completed_count: int
    error_code: str | None
    reason: str | None
    created_at: float
    completed_at: float | None
    expired_at: float | None


@dataclass(slots=True, eq=False)
class SimTask:
    """One task as the platform knows it. Timestamps are epoch seconds."""

    id: str
    platform: Platform
    type: str
    status: int | str
    created_at: float
    url: str | None = None
    partial_data_url: str | None = None
    completed_count: int = 0
    error_code: str | None = None
    reason: str | None = None
    completed_at: float | None = None
    expired_at: float | None = None
    # Bumped on every change (and on removal): the driver skips a due step whose version no
    # longer matches, so a manual change or a superseding task takes the task out of its hands.
    version: int = 0

    @property
    def terminal(self) -> bool:
        """Whether the task has reached a status the platform never leaves on its own."""
        if self.platform is Platform.SHOPLAZZA:
            return self.status == 2
        return self.status in ("CANCELED", "COMPLETED", "FAILED", "EXPIRED")

    def as_dict(self) -> dict[str, Any]:
        """The task as JSON for the control routes (snake_case, epoch seconds)."""
        return {
            "id": self.id,
            "platform": self.platform.value,
            "type": self.type,
            "status": self.status,
            "url": self.url,
            "partial_data_url": self.partial_data_url,
            "completed_count": self.completed_count,
            "error_code": self.error_code,
            "reason": self.reason,
            "created_at": self.created_at,
            "completed_at": self.completed_at,
            "expired_at": self.expired_at,
        }


@dataclass(frozen=True, slots=True)
class StoreSpec:
    """How to set up one simulated store.

    `body_style`: Shoplazza `tasks` (default), `querys` or `wrapped` (`{"code", "data"}`);
    Shopline `plain` (default) or `wrapped` (`{"data": {...}}`). `empty_style` is what the
    Shopline endpoint answers with no current task: `object` (200 `{}`), `null`, `empty`,
    `404`, `404_html`, `id_null`, `id_empty` or `data_null` (see `simulator.variants`).
    `require_content_type` makes Shoplazza answer 400 without `Content-Type:
    application/json`, as its gateway does.
    """

    name: str
    platform: Platform
    token: str | None = None
    body_style: str | None = None
    empty_style: EmptyStyle = "object"
    operation_types: tuple[str, ...] = ("QUERY", "MUTATION")
    store_id: str | None = None
    require_content_type: bool = False
    max_tasks: int = 1000
    # A Shopline app's credentials (secret derived from the key unless given): `oauth`.
    app_key: str | None = None
    app_secret: str | None = None


@dataclass(slots=True)
class StoreStats:
    """What one store received; `endpoints` counts requests per endpoint."""

    requests: int = 0
    unauthorized: int = 0
    faults: int = 0
    first_request_at: float | None = None
    last_request_at: float | None = None
    endpoints: Counter[str] = field(default_factory=Counter)

    def as_dict(self) -> dict[str, Any]:
        """The counters as JSON."""
        return {
            "requests": self.requests,
            "unauthorized": self.unauthorized,
            "faults": self.faults,
            "first_request_at": self.first_request_at,
            "last_request_at": self.last_request_at,
            "endpoints": dict(self.endpoints),
        }


@dataclass(slots=True, eq=False)
class SimStore:
    """One store's settings, tasks and counters.

    Shoplazza keeps every task in `tasks`, oldest first (the list endpoint shows it reversed);
    Shopline keeps only the current task per slot (`QUERY`, `MUTATION`) in `current`.
    """

    name: str
    platform: Platform
    token: str
    body_style: str
    empty_style: EmptyStyle
    operation_types: tuple[str, ...]
    store_id: str
    require_content_type: bool
    max_tasks: int
    tasks: dict[str, SimTask] = field(default_factory=dict)
    current: dict[str, SimTask] = field(default_factory=dict)
    stats: StoreStats = field(default_factory=StoreStats)
    superseded: int = 0
    bearer: str = ""
    # Renewal (`oauth`): tokens accepted besides the current one (-> until), counters.
    app_key: str | None = None
    app_secret: str = ""
    issued: dict[str, float] = field(default_factory=dict)
    refreshes: int = 0
    refused_refreshes: int = 0
    revoked: bool = False

    @classmethod
    def from_spec(cls, spec: StoreSpec) -> SimStore:
        """Validate a spec and fill its defaults."""
        if not _NAME.fullmatch(spec.name):
            raise ValueError(f"invalid store name {spec.name!r}: letters, digits, _ . - (max 64)")
        platform = Platform(spec.platform)
        styles = BODY_STYLES[platform]
        body_style = spec.body_style or styles[0]
        if body_style not in styles:
            raise ValueError(f"{spec.name}: body_style must be one of {', '.join(styles)}")
        if spec.empty_style not in EMPTY_STYLES:
            raise ValueError(f"{spec.name}: empty_style must be one of {', '.join(EMPTY_STYLES)}")
        slots = tuple(spec.operation_types)
        if not slots or not set(slots) <= {"QUERY", "MUTATION"}:
            raise ValueError(f"{spec.name}: operation_types must be QUERY and/or MUTATION")
        if spec.max_tasks < 1:
            raise ValueError(f"{spec.name}: max_tasks must be at least 1")
        token = spec.token or f"sim-{spec.name}"
        # Stable across runs and seeds, so a store keeps its id when the simulator restarts.
        store_id = spec.store_id or str(1_600_000_000_000 + zlib.crc32(spec.name.encode()))
        return cls(
            name=spec.name,
            platform=platform,
            token=token,
            body_style=body_style,
            empty_style=spec.empty_style,
            operation_types=slots,
            store_id=store_id,
            require_content_type=spec.require_content_type,
            max_tasks=spec.max_tasks,
            bearer=f"Bearer {token}",
            app_key=spec.app_key,
            app_secret=spec.app_secret or f"{spec.app_key}-secret",
        )

    def set_token(self, token: str) -> None:
        """Change the token the store accepts (a test simulating an expired token)."""
        self.set_token_keeping_issued(token)
        self.issued.clear()

    def set_token_keeping_issued(self, token: str) -> None:
        """Change the current token, previous ones still accepted as `issued` says."""
        self.token = token
        self.bearer = f"Bearer {token}"

    def find(self, task_id: str) -> SimTask:
        """A task the endpoint currently shows, by id."""
        task = self.tasks.get(task_id)
        if task is None:
            task = next((t for t in self.current.values() if t.id == task_id), None)
        if task is None:
            raise NotFoundError(f"store {self.name} has no task {task_id!r}")
        return task

    def all_tasks(self) -> list[SimTask]:
        """Newest first: the Shoplazza list, or the Shopline current tasks."""
        if self.platform is Platform.SHOPLAZZA:
            return list(reversed(self.tasks.values()))
        return sorted(self.current.values(), key=lambda t: t.created_at, reverse=True)

    def domain(self) -> str:
        """The store's `domain` (Shoplazza) or `handle` (Shopline) for a bulkwatch config."""
        out = "".join(c if c.isalnum() or c == "-" else "-" for c in self.name)
        return out if out[0].isalnum() else f"s{out}"

    def config(self, base_url: str) -> dict[str, Any]:
        """A dict ready to go under `stores:` in a bulkwatch config."""
        conf: dict[str, Any] = {"name": self.name, "platform": self.platform.value}
        conf["domain" if self.platform is Platform.SHOPLAZZA else "handle"] = self.domain()
        conf["access_token"] = self.token
        conf["base_url"] = base_url
        if self.platform is Platform.SHOPLINE:
            conf["operation_types"] = list(self.operation_types)
            if self.app_key is not None:
                conf.update(app_key=self.app_key, app_secret=self.app_secret)
        return conf


def make_rng(seed: int | str | None, purpose: str) -> random.Random:
    """An independent generator per purpose, so manual calls do not shift the driver's draws."""
    return random.Random() if seed is None else random.Random(f"{seed}:{purpose}")


def make_stores(n_shoplazza: int, n_shopline: int, **options: Any) -> list[StoreSpec]:
    """Specs for stores named `lazza-1..N` and `line-1..M`; `options` go to every `StoreSpec`."""
    specs = [
        StoreSpec(name=f"lazza-{i}", platform=Platform.SHOPLAZZA, **options)
        for i in range(1, n_shoplazza + 1)
    ]
    specs += [
        StoreSpec(name=f"line-{i}", platform=Platform.SHOPLINE, **options)
        for i in range(1, n_shopline + 1)
    ]
    return specs


def collect(stores: Iterable[StoreSpec]) -> dict[str, SimStore]:
    """Build the stores of specs, refusing duplicate names."""
    out: dict[str, SimStore] = {}
    for spec in stores:
        if spec.name in out:
            raise ValueError(f"duplicate store name {spec.name!r}")
        out[spec.name] = SimStore.from_spec(spec)
    return out
