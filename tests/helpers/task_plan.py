"""Short task lifecycles on every simulated store, each step taken only once the daemon (or
the replicas) have committed the last one, so every transition is an event a receiver must
get.

Each store (each operation type of a Shopline store) is a lane: a task is created, goes
CREATED -> RUNNING -> COMPLETED (some Shopline ones FAILED), then the next task comes. A lane
moves on only when the committed state shows its task in the status the simulator shows, so
nothing happens that no poll could have seen. `expected` is the (subject, type) of every
event. The caller reads the committed statuses from its own state (SQLite, PostgreSQL) and
hands them to `step`.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from bulkwatch.model import Platform
from bulkwatch.simulator import Simulator

__all__ = ["Lane", "Plan"]

_LAZZA = {0: "CREATED", 1: "RUNNING", 2: "COMPLETED"}


@dataclass
class Lane:
    """Tasks of one store (and Shopline operation type), created one after another."""

    store: str
    platform: Platform
    operation_type: str
    created: int = 0
    current: str | None = None


class Plan:
    """Moves each lane's current task one step once it is committed. A lane creates tasks
    until `tasks_per_lane` (None: no limit) or `finish()`; `budget` caps the steps taken
    (each creation and each move is one) until the caller sets it again."""

    def __init__(
        self,
        sim: Simulator,
        rng: random.Random,
        *,
        tasks_per_lane: int | None = None,
        budget: float = math.inf,
    ) -> None:
        self.sim = sim
        self.rng = rng
        self.tasks_per_lane = tasks_per_lane
        self.budget = budget
        self.lanes = [
            Lane(name, st.platform, op)
            for name, st in sim.stores.items()
            for op in (("DATA_QUERY",) if st.platform is Platform.SHOPLAZZA else st.operation_types)
        ]
        self.expected: set[tuple[str, str]] = set()
        self.finishing = False

    @property
    def done(self) -> bool:
        """Every lane's last task has ended, and no lane creates another."""
        return all(lane.current is None and not self._creates(lane) for lane in self.lanes)

    def finish(self) -> None:
        """Let the current tasks end; start none."""
        self.finishing = True

    def step(self, committed: dict[tuple[str, str], str]) -> None:
        """Move every lane whose current task is committed in the status the simulator
        shows: (store, task id) -> status in `committed`."""
        for lane in self.lanes:
            if self.budget <= 0:
                return
            if lane.current is not None:
                status = self._status(lane, lane.current)
                if committed.get((lane.store, lane.current)) != status:
                    continue  # not seen yet: keep it visible
                if status in ("COMPLETED", "FAILED"):
                    lane.current = None
                else:
                    self._move(lane, lane.current, status)
                    continue
            if self._creates(lane):
                self._create(lane)

    def _creates(self, lane: Lane) -> bool:
        limit = self.tasks_per_lane
        return not self.finishing and (limit is None or lane.created < limit)

    def _status(self, lane: Lane, task_id: str) -> str:
        raw = self.sim.task(lane.store, task_id).status
        return _LAZZA[raw] if isinstance(raw, int) else str(raw)

    def _create(self, lane: Lane) -> None:
        lane.created += 1
        task_id = f"{lane.operation_type.lower()}-{lane.created}"
        self.sim.create_task(lane.store, task_id, "CREATED", operation_type=lane.operation_type)
        lane.current = task_id
        self._note(lane, task_id, "created")

    def _move(self, lane: Lane, task_id: str, status: str) -> None:
        fails = lane.platform is Platform.SHOPLINE and self.rng.random() < 0.3
        new = "RUNNING" if status == "CREATED" else "FAILED" if fails else "COMPLETED"
        self.sim.set_status(lane.store, task_id, new)
        self._note(lane, task_id, new.lower())

    def _note(self, lane: Lane, task_id: str, kind: str) -> None:
        self.budget -= 1
        self.expected.add((f"{lane.store}/{task_id}", f"bulkwatch.task.{kind}"))
