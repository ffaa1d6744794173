"""The daemon on a Shopline store whose access tokens expire: engine, simulator and webhook
receiver over real sockets, the test's own clock driving the daemon and the simulator.

Across several token lifetimes no poll fails and no token shows in a log line or an event; a
restart goes on with the stored token; a refused renewal takes the store down, saying to
authorise the app again.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from prometheus_client import CollectorRegistry
from structlog.testing import capture_logs

from bulkwatch.config import Settings
from bulkwatch.daemon.engine import Engine
from bulkwatch.model import Platform, TaskStatus
from bulkwatch.simulator import Simulator, StoreSpec, Variants, run_simulator
from bulkwatch.telemetry.metrics import Metrics
from helpers.clock import ManualClock
from helpers.reliability_support import cycle
from helpers.support import settings_for
from helpers.webhook_receiver import Receiver, running_receiver

LIFETIME = 10 * 3600.0  # the platform's
STEP = 600.0  # ten minutes between polls
STORES = [StoreSpec("line-1", Platform.SHOPLINE, app_key="app-1", app_secret="app-SECRET-7")]


@asynccontextmanager
async def platform(clock: ManualClock) -> AsyncIterator[tuple[Simulator, Receiver]]:
    variants = Variants(token_lifetime=LIFETIME)
    async with (
        run_simulator(stores=STORES, seed=5, clock=clock.timestamp, variants=variants) as sim,
        running_receiver() as receiver,
    ):
        yield sim, receiver


def daemon(settings: Settings, clock: ManualClock) -> Engine:
    return Engine(settings, metrics=Metrics(CollectorRegistry()), clock=clock)


async def test_several_token_lifetimes_without_a_failed_poll(tmp_path: Path) -> None:
    clock = ManualClock()
    async with platform(clock) as (sim, receiver):
        st = sim.store("line-1")
        settings = settings_for(
            tmp_path, sim.store_configs(), receiver.url, defaults={"interval": STEP}
        )
        tokens = {st.token}
        created: list[str] = []
        finished: list[str] = []
        with capture_logs() as logs:
            async with daemon(settings, clock) as engine:
                steps = round(3.5 * LIFETIME / STEP)
                for n in range(steps):
                    if n % 20 == 5:
                        created.append(sim.create_task("line-1", f"t{n}", TaskStatus.RUNNING).id)
                    if n % 20 == 10:
                        finished.append(sim.advance("line-1", f"t{n - 5}").id)
                    assert await cycle(engine), f"poll {n} failed"
                    tokens.add(st.token)
                    clock.advance(STEP)
            # A restart, past the 5 minutes the previous token had left: the stored token.
            clock.advance(3600)
            renewals = st.refreshes
            async with daemon(settings, clock) as engine:
                assert await cycle(engine)
            assert st.refreshes == renewals

        # Renewed at the first poll (an opaque token) and then every 9.5 hours.
        assert st.refreshes == 1 + 3
        assert st.stats.unauthorized == 0
        assert st.refused_refreshes == 0
        assert len(tokens) == 5
        kinds = [e["type"] for e in receiver.events]
        assert kinds.count("bulkwatch.task.running") == len(created) == 11
        assert kinds.count("bulkwatch.task.completed") == len(finished) == 10
        assert not [k for k in kinds if k.startswith("bulkwatch.store.")]
        seen = json.dumps(receiver.events) + repr(logs)
        assert [t for t in tokens | {"app-SECRET-7"} if t in seen] == []
        assert sum("access token refreshed" in entry["event"] for entry in logs) == 4


async def test_a_refused_renewal_takes_the_store_down_saying_to_reauthorise(
    tmp_path: Path,
) -> None:
    clock = ManualClock()
    async with platform(clock) as (sim, receiver):
        st = sim.store("line-1")
        settings = settings_for(tmp_path, sim.store_configs(), receiver.url)
        async with daemon(settings, clock) as engine:
            assert await cycle(engine)
            st.revoked = True  # the merchant took the app's authorisation away
            clock.advance(LIFETIME - 1000)
            assert not await cycle(engine)
        [down] = [e for e in receiver.events if e["type"] == "bulkwatch.store.down"]
        reason = down["data"]["reason"]
        assert "re-authorise the app for store line-1" in reason
        assert "APP_UNAUTHORIZED" in reason
        assert st.token not in json.dumps(receiver.events)
