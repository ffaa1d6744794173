"""Reloading the config on SIGHUP: what changed, and the loop that applies it.

`plan_reload` compares the running settings with newly loaded ones: the stores added, removed
or changed (any resolved setting, its token included), the notifiers likewise, and the fields
that only a restart applies (`state`, `server`, `instance`, `log`, `retry`, `delivery`,
`shutdown_grace`), which keep their running values. `Engine.reload` applies a plan; the
stores and notifiers it does not name go on untouched, their polls on their schedule.

`reload_on_request` is the daemon's side: each time `requested` is set (the SIGHUP handler
does), it loads the config again; an invalid one is logged in one error line and changes
nothing. `bulkwatch_config_last_reload_successful` and
`bulkwatch_config_last_reload_success_timestamp_seconds` show the last outcome.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import structlog

from bulkwatch.config import ConfigError, ResolvedStore, Settings, resolve_stores
from bulkwatch.notifiers.base import NotifierConfig
from bulkwatch.notifiers.log import LogNotifierConfig
from bulkwatch.telemetry.metrics import Metrics

__all__ = ["RESTART_FIELDS", "ReloadPlan", "notifier_configs", "plan_reload", "reload_on_request"]

log = structlog.get_logger("bulkwatch")

# Settings a running daemon cannot take over: its state file, its listening socket, its
# identity in events, its log setup, and the delivery machinery already running.
RESTART_FIELDS = ("state", "server", "instance", "log", "retry", "delivery", "shutdown_grace")


def notifier_configs(settings: Settings) -> list[NotifierConfig]:
    """The notifiers to run: the configured ones, or a `log` notifier when there are none
    and `log.events` does not already write each event to the log."""
    if settings.notifiers or settings.log.events:
        return list(settings.notifiers)
    return [LogNotifierConfig(name="log")]


@dataclass(frozen=True)
class ReloadPlan:
    """What a reload changes; `settings` is the new config with the restart-only fields kept
    as they run."""

    settings: Settings
    stores: tuple[ResolvedStore, ...]  # every store after the reload
    added: tuple[ResolvedStore, ...] = ()
    removed: tuple[ResolvedStore, ...] = ()  # as they ran
    changed: tuple[ResolvedStore, ...] = ()  # as they will run
    notifiers: tuple[NotifierConfig, ...] = ()  # every notifier after the reload
    notifiers_rebuilt: tuple[str, ...] = ()  # added or changed
    notifiers_removed: tuple[str, ...] = ()
    defaults_changed: bool = False
    restart_needed: tuple[str, ...] = field(default=())

    @property
    def summary(self) -> dict[str, object]:
        """The plan as log fields: names only, never a setting's value."""
        return {
            "stores_added": sorted(s.name for s in self.added),
            "stores_removed": sorted(s.name for s in self.removed),
            "stores_changed": sorted(s.name for s in self.changed),
            "notifiers_changed": sorted(self.notifiers_rebuilt),
            "notifiers_removed": sorted(self.notifiers_removed),
        }


def plan_reload(running: Settings, stores: tuple[ResolvedStore, ...], new: Settings) -> ReloadPlan:
    """Compare the `running` settings (whose resolved `stores` run now) with `new`."""
    restart = tuple(f for f in RESTART_FIELDS if getattr(running, f) != getattr(new, f))
    kept = new.model_copy(update={f: getattr(running, f) for f in restart})
    old_by_name = {s.name: s for s in stores}
    new_stores = resolve_stores(kept)
    new_by_name = {s.name: s for s in new_stores}
    old_notifiers = {n.name: n for n in notifier_configs(running)}
    new_notifiers = notifier_configs(kept)
    return ReloadPlan(
        settings=kept,
        stores=new_stores,
        added=tuple(s for s in new_stores if s.name not in old_by_name),
        removed=tuple(s for s in stores if s.name not in new_by_name),
        changed=tuple(s for s in new_stores if s.name in old_by_name and old_by_name[s.name] != s),
        notifiers=tuple(new_notifiers),
        notifiers_rebuilt=tuple(n.name for n in new_notifiers if old_notifiers.get(n.name) != n),
        notifiers_removed=tuple(
            name for name in old_notifiers if name not in {n.name for n in new_notifiers}
        ),
        defaults_changed=running.defaults != kept.defaults,
        restart_needed=restart,
    )


async def reload_on_request(
    requested: asyncio.Event,
    load: Callable[[], Settings],
    apply: Callable[[Settings], Awaitable[ReloadPlan]],
    metrics: Metrics,
) -> None:
    """Forever: wait for `requested`, load the config with `load` and `apply` it."""
    metrics.config_reload_ok.set(1)
    metrics.config_reload_time.set(time.time())
    while True:
        await requested.wait()
        requested.clear()
        problems = await _reload(load, apply)
        if problems:
            metrics.config_reload_ok.set(0)
            log.error("config reload failed; the running config stays", problems=problems)
        else:
            metrics.config_reload_ok.set(1)
            metrics.config_reload_time.set(time.time())


async def _reload(
    load: Callable[[], Settings], apply: Callable[[Settings], Awaitable[ReloadPlan]]
) -> list[str]:
    """Load and apply the config; the problems that stopped it ([] when it is applied)."""
    try:
        settings = load()
    except ConfigError as exc:
        return exc.problems
    try:
        plan = await apply(settings)
    except Exception as exc:  # noqa: BLE001 - nothing was swapped in: the old config runs
        return [f"{type(exc).__name__}: {exc}"]
    if plan.restart_needed:
        log.warning(
            "config reloaded; some changes need a restart",
            restart_needed=list(plan.restart_needed),
            **plan.summary,
        )
    else:
        log.info("config reloaded", **plan.summary)
    return []
