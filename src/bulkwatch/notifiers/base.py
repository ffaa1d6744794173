"""The notifier contract: a config model per type, a `Notifier` that sends one event, and the
`NotifierType` that ties a type's name to its config model and factory."""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:
    import aiohttp

__all__ = [
    "DeliveryError",
    "Notifier",
    "NotifierConfig",
    "NotifierContext",
    "NotifierType",
    "OutgoingEvent",
]


class NotifierConfig(BaseModel):
    """Fields every notifier takes. Each type subclasses this with its own fields."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=64)
    type: str
    events: list[str] = Field(default_factory=lambda: ["*"])
    stores: list[str] = Field(default_factory=lambda: ["*"])

    def machine_problems(self) -> list[str]:
        """What on this machine stops this notifier from ever delivering (a missing program,
        an unreadable file), one `field: problem` line each. `bulkwatch run` and
        `check-config --machine` ask; a type with such needs overrides this."""
        return []

    def matches(self, event_type: str, store: str) -> bool:
        """True when the event passes this notifier's `events` and `stores` globs."""
        return any(fnmatch.fnmatchcase(event_type, g) for g in self.events) and any(
            fnmatch.fnmatchcase(store, g) for g in self.stores
        )


@dataclass(frozen=True, slots=True)
class OutgoingEvent:
    """An event as read from the outbox: the CloudEvent and its exact JSON body."""

    id: str
    type: str
    store: str
    body: bytes  # the CloudEvents structured-mode JSON
    cloudevent: Mapping[str, Any]
    attempt: int  # 1 for the first attempt


class DeliveryError(Exception):
    """A failed delivery. `permanent` dead-letters at once; else it is retried."""

    def __init__(
        self, message: str, *, permanent: bool = False, retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.permanent = permanent
        self.retry_after = retry_after


@dataclass(frozen=True, slots=True)
class NotifierContext:
    """What the app lends a notifier: the process-wide HTTP session and the instance name."""

    session: aiohttp.ClientSession
    instance: str


@runtime_checkable
class Notifier(Protocol):
    """Sends one event. Returns on success; raises `DeliveryError` on failure."""

    name: str

    async def send(self, event: OutgoingEvent) -> None: ...

    async def aclose(self) -> None: ...


ConfigT = TypeVar("ConfigT", bound=NotifierConfig)


@dataclass(frozen=True, slots=True)
class NotifierType(Generic[ConfigT]):
    """One kind of notifier: its `type` name, its config model and how to build it.

    `factory` receives a config of its own `config_model`; `build` is the one place where a
    config known only as a `NotifierConfig` is checked to be of that model.
    """

    name: str
    config_model: type[ConfigT]
    factory: Callable[[ConfigT, NotifierContext], Notifier]

    def build(self, config: NotifierConfig, context: NotifierContext) -> Notifier:
        """The notifier for `config`; TypeError when it is not a `config_model`."""
        if not isinstance(config, self.config_model):
            raise TypeError(
                f"the {self.name} notifier needs a {self.config_model.__name__}, "
                f"got {type(config).__name__}"
            )
        return self.factory(config, context)
