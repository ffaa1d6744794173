"""The automatic driver: new tasks at a rate per store, one lifecycle step every `step_seconds`.

Work is kept in one heap of due times, so a tick costs O(due changes · log n), not O(stores):
10,000 idle stores cost nothing between their events. A due step carries the task's `version`
from when it was scheduled; a task changed by hand, superseded or removed since then has a
newer version and the driver leaves it alone from then on. The driver only moves the tasks it
created itself.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final

from bulkwatch.model import Platform
from bulkwatch.simulator.lifecycle import next_status
from bulkwatch.simulator.model import ERROR_REASONS, SimStore, SimTask, make_rng
from bulkwatch.simulator.state import SimulatedPlatforms

__all__ = ["Driver", "DriverConfig"]

_CREATE: Final = 0
_STEP: Final = 1
_EXPIRE: Final = 2
_ERRORS: Final = tuple(ERROR_REASONS)

# (due, seq, kind, store, task, version, running steps left); `seq` is unique, so the heap
# never compares the objects behind it and equal due times keep their scheduling order.
_Entry = tuple[float, int, int, SimStore, SimTask | None, int, int]


@dataclass(frozen=True, slots=True)
class DriverConfig:
    """How the automatic driver behaves.

    `create_every`: mean seconds between new tasks per store (None: no new tasks);
    `running_steps`: steps a task stays RUNNING (its completedCount grows each step);
    `fail_probability`: chance a Shopline task ends FAILED instead of COMPLETED;
    `supersede_probability`: chance a new Shopline task replaces one still running (otherwise
    it waits for the current one to finish); `history`: completed tasks per store at start;
    `tick_seconds`: period of `run`'s loop. Completed Shopline results expire after the
    simulator's `expire_after`.
    """

    step_seconds: float = 2.0
    create_every: float | None = 10.0
    running_steps: int = 1
    fail_probability: float = 0.1
    supersede_probability: float = 0.1
    history: int = 0
    tick_seconds: float = 1.0
    max_events_per_tick: int = 100_000

    def __post_init__(self) -> None:
        if self.step_seconds <= 0 or self.tick_seconds <= 0:
            raise ValueError("step_seconds and tick_seconds must be positive")
        if self.create_every is not None and self.create_every <= 0:
            raise ValueError("create_every must be positive (or None)")
        if self.running_steps < 1 or self.history < 0 or self.max_events_per_tick < 1:
            raise ValueError("running_steps and max_events_per_tick >= 1, history >= 0")
        for p in (self.fail_probability, self.supersede_probability):
            if not 0.0 <= p <= 1.0:
                raise ValueError("probabilities must be between 0 and 1")


class Driver:
    """Moves the simulator's tasks on its clock. Call `tick()` yourself, or `run()` forever."""

    def __init__(
        self,
        sim: SimulatedPlatforms,
        config: DriverConfig | None = None,
        *,
        seed: int | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.sim = sim
        self.config = config or DriverConfig()
        self._rng = make_rng(sim.seed if seed is None else seed, "driver")
        self._sleep = sleep
        self._heap: list[_Entry] = []
        self._seq = itertools.count()
        self._started = False
        self.events = 0  # changes made so far, for benchmarks and tests

    @property
    def pending(self) -> int:
        """Scheduled events, including stale ones not yet skipped."""
        return len(self._heap)

    @property
    def next_due(self) -> float | None:
        """When the earliest scheduled event is due."""
        return self._heap[0][0] if self._heap else None

    def start(self, now: float | None = None) -> None:
        """Seed history and schedule each store's first new task, spread over `create_every`."""
        if self._started:
            return
        self._started = True
        now = self.sim.clock() if now is None else now
        cfg = self.config
        for st in self.sim.stores.values():
            self._seed_history(st, now)
            if cfg.create_every is not None:
                self._push(now + self._rng.uniform(0, cfg.create_every), _CREATE, st)

    def add_store(self, store: str, *, at: float | None = None) -> None:
        """Drive a store added to the simulator after `start` (`Simulator.add_store`)."""
        st = self.sim.store(store)
        now = self.sim.clock() if at is None else at
        if self.config.create_every is not None:
            self._push(now + self._rng.uniform(0, self.config.create_every), _CREATE, st)

    def adopt(self, store: str, task_id: str, *, at: float | None = None) -> None:
        """Take a task made by hand into the driver's care: its next step is due `step_seconds`
        after `at` (default now), then it moves on like the driver's own tasks."""
        st = self.sim.store(store)
        task = st.find(task_id)
        now = self.sim.clock() if at is None else at
        if task.status == "COMPLETED":
            self._schedule_expiry(st, task)
        elif not task.terminal:
            self._push(now + self.config.step_seconds, _STEP, st, task, self.config.running_steps)

    def tick(self, now: float | None = None) -> int:
        """Apply every event due by `now` (the simulator's clock by default); returns how many
        changed something. Events scheduled during the tick run too if already due."""
        self.start(now)
        now = self.sim.clock() if now is None else now
        changed = 0
        heap = self._heap
        for _ in range(self.config.max_events_per_tick):
            if not heap or heap[0][0] > now:
                break
            due, _seq, kind, st, task, version, left = heapq.heappop(heap)
            if kind == _CREATE:
                changed += self._create(st, due)
            elif task is not None and task.version == version:
                if kind == _STEP:
                    changed += self._step(st, task, due, left)
                else:
                    changed += self._expire(st, task)
        self.events += changed
        return changed

    async def run(self) -> None:
        """Tick every `tick_seconds` until cancelled."""
        while True:
            self.tick()
            await self._sleep(self.config.tick_seconds)

    def _push(
        self, due: float, kind: int, st: SimStore, task: SimTask | None = None, left: int = 0
    ) -> None:
        version = task.version if task is not None else 0
        heapq.heappush(self._heap, (due, next(self._seq), kind, st, task, version, left))

    def _seed_history(self, st: SimStore, now: float) -> None:
        n = self.config.history
        if not n:
            return
        sim = self.sim
        step = self.config.step_seconds
        if st.platform is Platform.SHOPLAZZA:
            for i in range(n, 0, -1):
                past = now - i * 3 * step
                sim.create_task(st.name, None, 2, now=past, created_at=past - 2 * step)
            return
        for slot in st.operation_types:
            task = sim.create_task(st.name, None, "COMPLETED", operation_type=slot, now=now)
            self._schedule_expiry(st, task)

    def _create(self, st: SimStore, at: float) -> int:
        cfg = self.config
        if cfg.create_every is None or self.sim.stores.get(st.name) is not st:
            return 0  # the store was replaced or removed while scheduled
        self._push(at + cfg.create_every * self._rng.uniform(0.5, 1.5), _CREATE, st)
        slot = self._rng.choice(st.operation_types) if st.platform is Platform.SHOPLINE else None
        busy = st.current.get(slot) if slot is not None else None
        # Only one bulk task at a time: usually wait for the current one to finish.
        waits = busy is not None and not busy.terminal
        if waits and self._rng.random() >= cfg.supersede_probability:
            return 0
        status = "CREATED" if slot else 0
        task = self.sim.create_task(st.name, None, status, operation_type=slot, now=at)
        self._push(at + cfg.step_seconds, _STEP, st, task, cfg.running_steps)
        return 1

    def _step(self, st: SimStore, task: SimTask, at: float, left: int) -> int:
        cfg = self.config
        sim = self.sim
        running = task.status in (1, "RUNNING")
        if running and left > 1:
            # Still running: only the progress moves.
            grown = task.completed_count + self._rng.randrange(1, 1000)
            sim.apply(st, task, None, at, {"completed_count": grown})
            self._push(at + cfg.step_seconds, _STEP, st, task, left - 1)
            return 1
        shopline = st.platform is Platform.SHOPLINE
        fail = shopline and running and self._rng.random() < cfg.fail_probability
        status = next_status(task, fail=fail)
        if status is None or status == "EXPIRED":
            return 0  # expiry has its own schedule
        if status == "FAILED":
            code = self._rng.choice(_ERRORS)
            sim.apply(st, task, status, at, {"error_code": code, "reason": ERROR_REASONS[code]})
        else:
            sim.apply(st, task, status, at, {})
        if task.status == "COMPLETED":
            self._schedule_expiry(st, task)
        elif not task.terminal:
            self._push(at + cfg.step_seconds, _STEP, st, task, left)
        return 1

    def _schedule_expiry(self, st: SimStore, task: SimTask) -> None:
        if task.expired_at is not None:
            self._push(task.expired_at, _EXPIRE, st, task)

    def _expire(self, st: SimStore, task: SimTask) -> int:
        if task.status != "COMPLETED":
            return 0
        self.sim.apply(st, task, "EXPIRED", task.expired_at or self.sim.clock(), {})
        return 1
