"""`Simulator`: the simulated platforms (`state`) served over HTTP, with injected faults, request
counters and, when one runs, the automatic driver."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable, Iterable
from typing import Any

from bulkwatch.simulator.driver import Driver
from bulkwatch.simulator.faults import Fault, FaultInjector, FaultKind, FaultRule
from bulkwatch.simulator.model import SimStore, StoreSpec, make_rng
from bulkwatch.simulator.state import DEFAULT_EXPIRE_AFTER, SimulatedPlatforms
from bulkwatch.simulator.variants import Variants

__all__ = ["Simulator"]


class Simulator(SimulatedPlatforms):
    """Simulated Shoplazza and Shopline stores, their tasks, injected faults and counters.

    `seed` makes ids, fault probabilities and the automatic driver reproducible; `clock`
    (epoch seconds) stamps task times; `latency` seconds are added to every API response;
    `expire_after` is how long a COMPLETED Shopline result lives (`expiredAt`); `variants`
    how the platforms behave where their documentation is silent (`simulator.variants`).
    """

    def __init__(
        self,
        stores: Iterable[StoreSpec] = (),
        *,
        seed: int | None = None,
        clock: Callable[[], float] | None = None,
        latency: float = 0.0,
        expire_after: float = DEFAULT_EXPIRE_AFTER,
        variants: Variants | None = None,
    ) -> None:
        super().__init__(
            stores, seed=seed, clock=clock, expire_after=expire_after, variants=variants
        )
        # Requests that followed a cross-host redirect carrying a token: a client must never.
        self.leaked_tokens = 0
        self.latency = latency
        self.faults = FaultInjector(make_rng(seed, "faults"))
        self.driver: Driver | None = None
        self.unknown_requests = 0
        self._run = f"{self._ids.getrandbits(32):08x}"
        self._responses = itertools.count(1)
        self._url: str | None = None
        self._waiters: dict[str, list[tuple[int, asyncio.Future[None]]]] = {}

    # -- where it runs ------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The root URL the simulator listens on, e.g. `http://127.0.0.1:41234`."""
        if self._url is None:
            raise RuntimeError("the simulator is not serving: use run_simulator()")
        return self._url

    def attach(self, url: str) -> None:
        """Record the URL it was bound to; called by `run_simulator`."""
        self._url = url.rstrip("/")

    def base_url(self, store: str) -> str:
        """The `base_url` a bulkwatch store uses to reach this simulated store."""
        return f"{self.url}/{self.store(store).name}"

    def store_configs(self) -> list[dict[str, Any]]:
        """One dict per store, ready to go under `stores:` in a bulkwatch config."""
        return [st.config(f"{self.url}/{st.name}") for st in self.stores.values()]

    # -- faults -------------------------------------------------------------------------

    def inject(
        self,
        kind: FaultKind | str | int,
        *,
        store: str | None = None,
        endpoint: str | None = None,
        times: int | None = 1,
        probability: float = 1.0,
        status: int | None = None,
        retry_after: float | None = None,
        delay: float | None = None,
        size: int | None = None,
    ) -> FaultRule:
        """Break the next `times` API responses (None: until cleared), each with `probability`,
        for one store (or all) and one endpoint (`tasks`, `QUERY`, `MUTATION`; or all).
        An int `kind` is an HTTP status: `inject(503, store="line-1")`."""
        if store is not None:
            self.store(store)
        fault = Fault.make(kind, status=status, retry_after=retry_after, delay=delay, size=size)
        return self.faults.add(
            fault, store=store, endpoint=endpoint, times=times, probability=probability
        )

    def clear_faults(self, store: str | None = None) -> None:
        """Remove every fault rule, or one store's."""
        self.faults.clear(store)

    # -- counters -----------------------------------------------------------------------

    def next_response_id(self) -> str:
        """A `Request-Id` / `traceId` unique to one response."""
        return f"sim{self._run}{next(self._responses):016x}"

    def record_request(self, st: SimStore, endpoint: str) -> None:
        """Count one API request and wake whoever waits for it."""
        stats = st.stats
        stats.requests += 1
        stats.endpoints[endpoint] += 1
        stats.last_request_at = self.clock()
        if stats.first_request_at is None:
            stats.first_request_at = stats.last_request_at
        if self._waiters and (waiting := self._waiters.get(st.name)):
            for count, fut in waiting:
                if stats.requests >= count and not fut.done():
                    fut.set_result(None)

    def request_count(self, store: str) -> int:
        """How many API requests a store received since the last `reset_stats`."""
        return self.store(store).stats.requests

    async def wait_for_requests(self, store: str, count: int) -> None:
        """Return once a store has received `count` requests; wrap in `asyncio.timeout`."""
        if self.store(store).stats.requests >= count:
            return
        entry = (count, asyncio.get_running_loop().create_future())
        self._waiters.setdefault(store, []).append(entry)
        try:
            await entry[1]
        finally:
            waiting = self._waiters.get(store, [])
            if entry in waiting:
                waiting.remove(entry)
            if not waiting:
                self._waiters.pop(store, None)

    def stats(self, store: str | None = None) -> dict[str, Any]:
        """Counters per store (or one store) plus totals, as JSON."""
        stores = [self.store(store)] if store is not None else list(self.stores.values())
        return {
            "total_requests": sum(st.stats.requests for st in self.stores.values()),
            "unknown_store_requests": self.unknown_requests,
            "stores": {
                st.name: {
                    "platform": st.platform.value,
                    "superseded": st.superseded,
                    **st.stats.as_dict(),
                }
                for st in stores
            },
        }

    def reset_stats(self) -> None:
        """Zero every counter."""
        for st in self.stores.values():
            st.stats = type(st.stats)()
        self.unknown_requests = 0
