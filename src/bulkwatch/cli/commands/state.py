"""`bulkwatch status` and `bulkwatch deliveries list|retry`: reading and requeueing what the
state database holds, while the daemon runs or not."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from bulkwatch.config import Settings
from bulkwatch.model import isoformat, utcnow
from bulkwatch.store.base import DeliveryStatus, StateStore
from bulkwatch.store.factory import open_store, sqlite_file

__all__ = ["NoStateError", "deliveries_list", "deliveries_retry", "open_state", "status"]


class NoStateError(Exception):
    """The state database does not exist yet; reading commands never create it."""


@asynccontextmanager
async def open_state(settings: Settings) -> AsyncIterator[StateStore]:
    """The existing state store of `settings`, open for the block and closed after it;
    `NoStateError` when its SQLite database file does not exist (it is never created here)."""
    _require_database(settings.state.url)
    store = open_store(settings.state)
    await store.open()
    try:
        yield store
    finally:
        await store.close()


def _require_database(url: str) -> None:
    path = sqlite_file(url)
    if path is not None and not Path(path).exists():
        raise NoStateError(
            f"state.url: no state database at {Path(path).absolute()} yet "
            "(`bulkwatch run` or `bulkwatch once` with this config creates it)"
        )


async def status(settings: Settings, only: str | None, *, as_json: bool) -> int:
    """`bulkwatch status`: tracked tasks per store, with each store's health; with replicas,
    the live ones and which of them polls each store (who holds its lease)."""
    names = [s.name for s in settings.stores if only in (None, s.name)]
    async with open_state(settings) as store:
        tasks = await store.list_tasks(only)
        health = {h.store: h for h in await store.list_health()}
        notes = await store.list_notes(only)
        owners = {h.store: h.owner for h in await store.leases.holders(names)}
        replicas = await store.leases.owners()
    rows = [
        {
            "store": t.snapshot.store,
            "platform": t.snapshot.platform.value,
            "endpoint": t.endpoint,
            "task_id": t.task_id,
            "status": t.snapshot.status.value,
            "raw_status": t.snapshot.raw_status,
            "changed_at": isoformat(t.changed_at),
            "url": t.snapshot.url,
            "superseded": t.gone,
        }
        for t in tasks
    ]
    if as_json:
        down = sorted(h for h in health if health[h].down)
        found = [{"store": n[0], "endpoint": n[1], "note": n[2], "detail": n[3]} for n in notes]
        out = {"tasks": rows, "down": down, "notes": found, "owners": owners, "replicas": replicas}
        print(json.dumps(out))
        return 0
    if replicas:
        print(f"replicas live: {', '.join(replicas)}")
    for name in names:
        h = health.get(name)
        mark = "DOWN" if h is not None and h.down else "up"
        mine = [r for r in rows if r["store"] == name]
        polled = f", polled by {owners.get(name, 'nobody (no lease)')}" if replicas else ""
        print(f"{name} ({mark}): {len(mine)} tracked task(s){polled}")
        for _store, endpoint, note, detail in (n for n in notes if n[0] == name):
            print(f"  ! {endpoint} {note}: {detail}")
        for r in mine:
            gone = " (superseded)" if r["superseded"] else ""
            print(
                f"  {r['endpoint']:<9} {r['task_id']:<40} {r['status']:<10} {r['changed_at']}{gone}"
            )
    return 0


async def deliveries_list(
    settings: Settings, status_name: str, notifier: str | None, *, as_json: bool
) -> int:
    """`bulkwatch deliveries list`: dead deliveries by default."""
    async with open_state(settings) as store:
        rows = await store.outbox.list_deliveries(DeliveryStatus(status_name), notifier=notifier)
    if as_json:
        print(
            json.dumps(
                [
                    {
                        "id": d.id,
                        "event_id": d.event_id,
                        "notifier": d.notifier,
                        "type": d.event_type,
                        "store": d.store,
                        "subject": _subject(d.body, d.store),
                        "attempts": d.attempts,
                        "last_error": d.last_error,
                        "created_at": isoformat(d.created_at),
                    }
                    for d in rows
                ]
            )
        )
        return 0
    if not rows:
        print(f"no {status_name} deliveries")
    for d in rows:
        print(
            f"{d.id:>6} {isoformat(d.created_at)} {d.notifier:<16} {d.event_type:<28} "
            f"{_subject(d.body, d.store)}  attempts={d.attempts} error={d.last_error or '-'}"
        )
    return 0


def _subject(body: bytes, store: str) -> str:
    """The CloudEvent's subject (`store/task`, or the store for a store event)."""
    try:
        subject = json.loads(body).get("subject")
    except (ValueError, AttributeError):  # a body that is no JSON object: the store will do
        return store
    return subject if isinstance(subject, str) else store


async def deliveries_retry(settings: Settings, ids: list[int], notifier: str | None) -> int:
    """`bulkwatch deliveries retry`: queue dead deliveries again (all, by id or by notifier)."""
    async with open_state(settings) as store:
        count = await store.outbox.requeue_dead(utcnow(), ids=ids or None, notifier=notifier)
    print(f"queued {count} dead deliver{'y' if count == 1 else 'ies'} again")
    return 0
