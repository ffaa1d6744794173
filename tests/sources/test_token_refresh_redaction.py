"""A Shopline token that bulkwatch renews is as secret as a configured one: registered with
the redactor as soon as the refresh returns it, and when a restart reads it back from the
state store, so no log line, stored error or event shows it."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import aiohttp

from bulkwatch.common.redact import redact
from bulkwatch.config import Settings, resolve_stores
from bulkwatch.model import EndpointKey, Platform
from bulkwatch.simulator import StoreSpec, Variants, run_simulator
from bulkwatch.sources.factory import make_source
from bulkwatch.sources.http.refresh import token_seed
from bulkwatch.store.base import StoredToken
from bulkwatch.store.sqlite.store import SqliteStore
from helpers.clock import ManualClock

KEY = EndpointKey("line-1", Platform.SHOPLINE, "QUERY")
SECRET = "app-SECRET-1b2c3d"


async def test_renewed_and_stored_tokens_are_redacted(tmp_path: Path) -> None:
    clock = ManualClock()
    spec = StoreSpec("line-1", Platform.SHOPLINE, app_key="app-1", app_secret=SECRET)
    state = SqliteStore(tmp_path / "state.db")
    await state.open()
    try:
        async with (
            run_simulator(
                stores=[spec], clock=clock.timestamp, variants=Variants(token_lifetime=36000)
            ) as sim,
            aiohttp.ClientSession() as session,
        ):
            [config] = sim.store_configs()
            settings = Settings.model_validate({"instance": "t", "stores": [config]})
            [resolved] = resolve_stores(settings)
            configured = sim.store("line-1").token
            # A token a previous run renewed, read back from the state store.
            kept = "kept-token-from-before-4e5f6a"
            expires = clock() + timedelta(hours=9)
            await state.save_token(
                StoredToken("line-1", kept, expires, token_seed(configured), clock())
            )
            sim.store("line-1").set_token(kept)  # what the platform takes now
            assert kept in redact(kept)
            await make_source(resolved, session, state).poll_since(KEY, clock(), None)
            assert kept not in redact(f"request {kept} failed")

            # A fresh chain (the app authorised again): renewed at once by the simulator.
            sim.store("line-1").set_token("authorised-again-7b8c9d")
            config["access_token"] = "authorised-again-7b8c9d"
            settings = Settings.model_validate({"instance": "t", "stores": [config]})
            [resolved] = resolve_stores(settings)
            await make_source(resolved, session, state).poll_since(KEY, clock(), None)
            renewed = sim.store("line-1").token
            assert renewed != "authorised-again-7b8c9d"
            assert sim.store("line-1").refreshes == 1
            shown = redact(f"<title>{renewed}</title> traceId={renewed}")
            assert renewed not in shown
    finally:
        await state.close()
