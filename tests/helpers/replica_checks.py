"""Reading the attributed platform requests of a replica test: who polled each store, in
turns, and whether two replicas' turns at one store ever overlapped in time."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from itertools import pairwise

from helpers.sim_fronts import Polled
from helpers.webhook_receiver import Receiver

__all__ = ["Turn", "duplicate_ids", "overlaps", "received", "turns"]


@dataclass(frozen=True)
class Turn:
    """Consecutive requests to one store from one replica (in order of arrival)."""

    replica: int
    first: float  # when its first request arrived
    last: float  # when its last request was answered
    requests: int


def turns(requests: Iterable[Polled]) -> dict[str, list[Turn]]:
    """store -> its turns, in order: a new turn starts whenever the sender changes."""
    by_store: dict[str, list[Polled]] = defaultdict(list)
    for r in requests:
        by_store[r.store].append(r)
    out: dict[str, list[Turn]] = {}
    for store, reqs in by_store.items():
        reqs.sort(key=lambda r: r.started)
        made: list[Turn] = []
        for r in reqs:
            if made and made[-1].replica == r.replica:
                t = made[-1]
                made[-1] = Turn(t.replica, t.first, max(t.last, r.ended), t.requests + 1)
            else:
                made.append(Turn(r.replica, r.started, r.ended, 1))
        out[store] = made
    return out


def overlaps(by_store: dict[str, list[Turn]]) -> list[tuple[str, Turn, Turn]]:
    """(store, a turn, the next) wherever the next began before the previous one's last
    answer: two replicas polling one store at once."""
    return [
        (store, a, b) for store, ts in by_store.items() for a, b in pairwise(ts) if b.first < a.last
    ]


def received(receiver: Receiver) -> set[tuple[str, str]]:
    """(subject, type) of every request the receiver got, accepted or not."""
    return {(e["subject"], e["type"]) for e in (json.loads(r.body) for r in receiver.requests)}


def duplicate_ids(receiver: Receiver) -> dict[tuple[str, str], set[str]]:
    """(subject, type) -> its ids, for every event that came with more than one id."""
    ids: dict[tuple[str, str], set[str]] = defaultdict(set)
    for e in (json.loads(r.body) for r in receiver.requests):
        ids[e["subject"], e["type"]].add(e["id"])
    return {k: v for k, v in ids.items() if len(v) > 1}
