"""Renewing a Shopline app's access token: the signature, and `RefreshingTokenProvider`
against the simulator's refresh endpoint over real sockets, with a SQLite state store."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from structlog.testing import capture_logs

from bulkwatch.config import Settings, resolve_stores
from bulkwatch.model import EndpointKey, FailureKind, Platform, PollError, PollResult
from bulkwatch.simulator import Simulator, StoreSpec, Variants, run_simulator
from bulkwatch.sources.base import Source
from bulkwatch.sources.factory import make_source
from bulkwatch.sources.http.refresh import (
    AppCredentials,
    RefreshingTokenProvider,
    jwt_expiry,
    token_seed,
)
from bulkwatch.sources.http.signing import app_headers, sign, timestamp_ms
from bulkwatch.sources.http.tokens import TokenProvider
from bulkwatch.store.sqlite.store import SqliteStore
from helpers.clock import ManualClock
from helpers.platform_stub import closed_port_url

HOUR = 3600.0
LIFETIME = 10 * HOUR
KEY = EndpointKey("line-1", Platform.SHOPLINE, "QUERY")
SECRET = "app-SECRET-0a1b2c"


# -- the signature ----------------------------------------------------------------------------


def test_the_signature_is_hmac_sha256_of_body_then_timestamp_in_lowercase_hex() -> None:
    # A fixed vector: a change to the signing string breaks it.
    assert sign("secret", "", "1700000000000") == (
        "4fe2ce12fd6bec5e0648b23bfbff158ba5fc18b3a214b4c207314671448a95e1"
    )
    body = '{"code":"abc"}'
    assert sign(SECRET, body, "1700000000123") == _reference(SECRET, body + "1700000000123")
    assert sign(SECRET, body, "1700000000123") != _reference(SECRET, "1700000000123" + body)
    assert sign(SECRET, "", "1") != sign(SECRET + "x", "", "1")


def _reference(secret: str, source: str) -> str:
    return hmac.new(secret.encode(), source.encode(), hashlib.sha256).hexdigest()


def test_the_headers_carry_the_app_key_a_millisecond_timestamp_and_the_sign() -> None:
    now = datetime(2026, 11, 23, 10, 0, 0, 123000, tzinfo=UTC)
    headers = app_headers("key-1", SECRET, now)
    assert headers["appkey"] == "key-1"
    assert headers["timestamp"] == timestamp_ms(now) == "1795428000123"
    assert headers["sign"] == _reference(SECRET, "1795428000123")
    assert SECRET not in json.dumps(headers)


def _jwt(claims: dict[str, Any]) -> str:
    part = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"eyJhbGciOiJIUzUxMiJ9.{part}.c2ln"


def test_a_jwt_shaped_token_tells_its_expiry() -> None:
    assert jwt_expiry(_jwt({"exp": 1795464000})) == datetime(2026, 11, 23, 20, tzinfo=UTC)
    for opaque in ("sim-line-1", "a.b.c", _jwt({"exp": "soon"}), _jwt({"exp": 1e300}), "a..b"):
        assert jwt_expiry(opaque) is None


# -- the provider against the simulator --------------------------------------------------------


@asynccontextmanager
async def rig(
    tmp_path: Path, clock: ManualClock, *, lifetime: float | None = LIFETIME, **spec: Any
) -> AsyncIterator[tuple[Simulator, SqliteStore, aiohttp.ClientSession]]:
    stores = [StoreSpec("line-1", Platform.SHOPLINE, app_key="app-1", app_secret=SECRET, **spec)]
    state = SqliteStore(tmp_path / "state.db")
    await state.open()
    try:
        async with (
            run_simulator(
                stores=stores, clock=clock.timestamp, variants=Variants(token_lifetime=lifetime)
            ) as sim,
            aiohttp.ClientSession() as session,
        ):
            yield sim, state, session
    finally:
        await state.close()


def source_of(
    sim: Simulator,
    session: aiohttp.ClientSession,
    state: SqliteStore | None,
    **changes: Any,
) -> Source:
    [config] = sim.store_configs()
    config.update(changes)
    settings = Settings.model_validate({"instance": "test", "stores": [config]})
    [resolved] = resolve_stores(settings)
    return make_source(resolved, session, state)


async def poll(source: Source, clock: ManualClock) -> PollResult:
    result = await source.poll_since(KEY, clock(), None)
    assert isinstance(result, PollResult)
    return result


async def test_an_opaque_token_is_renewed_at_once_and_the_new_one_kept(tmp_path: Path) -> None:
    clock = ManualClock()
    async with rig(tmp_path, clock) as (sim, state, session):
        st = sim.store("line-1")
        configured = st.token
        source = source_of(sim, session, state)
        await poll(source, clock)
        assert st.refreshes == 1
        stored = await state.load_token("line-1")
        assert stored is not None
        assert stored.token == st.token != configured
        assert stored.seed == token_seed(configured)
        assert stored.expires_at == clock() + timedelta(seconds=LIFETIME)
        assert stored.refreshed_at == clock()
        assert configured not in repr(stored)
        assert stored.token not in repr(stored)
        assert stored.token not in repr(vars(source)["_tokens"])

        # No renewal until 30 minutes before the expiry; then one, and the old token works
        # five more minutes.
        clock.advance(LIFETIME - 1801)
        await poll(source, clock)
        assert st.refreshes == 1
        clock.advance(2)
        await poll(source, clock)
        assert st.refreshes == 2
        assert st.issued[stored.token] == clock.timestamp() + 300


async def test_a_restart_goes_on_with_the_stored_token(tmp_path: Path) -> None:
    clock = ManualClock()
    async with rig(tmp_path, clock) as (sim, state, session):
        st = sim.store("line-1")
        await poll(source_of(sim, session, state), clock)
        clock.advance(HOUR)  # the configured token's 5 minutes are long over
        restarted = source_of(sim, session, state)
        await poll(restarted, clock)
        assert st.refreshes == 1
        assert sim.store("line-1").stats.unauthorized == 0

        # A newly configured token (the app authorised again) starts a new chain.
        st.set_token("authorised-again")
        fresh = source_of(sim, session, state, access_token="authorised-again")
        await poll(fresh, clock)
        assert st.refreshes == 2
        stored = await state.load_token("line-1")
        assert stored is not None
        assert stored.seed == token_seed("authorised-again")


async def test_a_jwt_token_with_a_distant_expiry_is_not_renewed(tmp_path: Path) -> None:
    clock = ManualClock()
    async with rig(tmp_path, clock, lifetime=None) as (sim, state, session):
        token = _jwt({"exp": int(clock.timestamp() + LIFETIME)})
        sim.store("line-1").set_token(token)
        source = source_of(sim, session, state, access_token=token)
        await poll(source, clock)
        assert sim.store("line-1").refreshes == 0
        assert await state.load_token("line-1") is None


@pytest.mark.parametrize(
    ("change", "said"),
    [
        ({"app_secret": "wrong-SECRET-9z"}, "SIGN_INVALID"),
        ({"app_key": "another-app"}, "APP_KEY_INVALID"),
        ({}, "APP_UNAUTHORIZED"),  # the merchant revoked the app: HTTP 200, code not 200
    ],
)
async def test_a_refused_renewal_fails_the_poll_saying_to_reauthorise(
    tmp_path: Path, change: dict[str, str], said: str
) -> None:
    clock = ManualClock()
    async with rig(tmp_path, clock) as (sim, state, session):
        st = sim.store("line-1")
        st.revoked = not change
        source = source_of(sim, session, state, **change)
        with capture_logs() as logs, pytest.raises(PollError) as info:
            await poll(source, clock)
        error = info.value
        assert error.kind is FailureKind.AUTH
        assert error.key == KEY
        assert "re-authorise the app for store line-1" in str(error)
        assert said in str(error)
        assert st.refused_refreshes == 1
        assert await state.load_token("line-1") is None
        for secret in (SECRET, "wrong-SECRET-9z", st.token):
            assert secret not in str(error)
            assert secret not in repr(logs)


@asynccontextmanager
async def answering(status: int, body: bytes) -> AsyncIterator[str]:
    """A refresh endpoint that always gives the same answer."""

    async def handle(request: web.Request) -> web.Response:
        return web.Response(status=status, body=body, content_type="application/json")

    app = web.Application()
    app.router.add_post("/admin/oauth/token/refresh", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}/admin/oauth/token/refresh"
    finally:
        await runner.cleanup()


def provider(
    url: str, state: SqliteStore, session: aiohttp.ClientSession, token: str
) -> RefreshingTokenProvider:
    return RefreshingTokenProvider(
        TokenProvider(token, None),
        store="line-1",
        app=AppCredentials(url, "app-1", SECRET),
        state=state,
        session=session,
        timeout=2.0,
    )


@pytest.mark.parametrize(
    ("status", "body", "kind"),
    [
        (503, b'{"message": "busy"}', FailureKind.SERVER),
        (429, b"{}", FailureKind.RATE_LIMITED),
        (200, b"<html>gateway</html>", FailureKind.INVALID_RESPONSE),
        (200, b'{"code": 200, "data": {"accessToken": ""}}', FailureKind.INVALID_RESPONSE),
    ],
)
async def test_a_failed_renewal_waits_while_the_token_is_valid(
    tmp_path: Path, status: int, body: bytes, kind: FailureKind
) -> None:
    clock = ManualClock()
    state = SqliteStore(tmp_path / "state.db")
    await state.open()
    token = _jwt({"exp": int(clock.timestamp() + 600)})  # ten minutes left: renewal due
    try:
        async with answering(status, body) as url, aiohttp.ClientSession() as session:
            tokens = provider(url, state, session, token)
            with capture_logs() as logs:
                assert await tokens.token_at(KEY, clock()) == token
            assert any("refresh failed" in entry["event"] for entry in logs)
            clock.advance(601)  # expired now: the poll fails, with the kind of the failure
            with pytest.raises(PollError) as info:
                await tokens.token_at(KEY, clock())
            assert info.value.kind is kind
            assert token not in str(info.value)
    finally:
        await state.close()


async def test_an_unreachable_endpoint_is_a_network_failure(tmp_path: Path) -> None:
    clock = ManualClock()
    state = SqliteStore(tmp_path / "state.db")
    await state.open()
    try:
        async with aiohttp.ClientSession() as session:
            url = closed_port_url() + "/admin/oauth/token/refresh"
            expired = _jwt({"exp": int(clock.timestamp() - 1)})
            with pytest.raises(PollError) as info:
                await provider(url, state, session, expired).token_at(KEY, clock())
            assert info.value.kind is FailureKind.NETWORK
            assert "token refresh" in str(info.value)
    finally:
        await state.close()


async def test_without_a_state_store_the_configured_token_is_sent_as_it_is(
    tmp_path: Path,
) -> None:
    # The probe builds sources so: it must never renew (that would retire the daemon's token).
    clock = ManualClock()
    async with rig(tmp_path, clock, lifetime=None) as (sim, _state, session):
        await poll(source_of(sim, session, None), clock)
        assert sim.store("line-1").refreshes == 0


async def test_an_expired_token_is_refused_and_a_graced_one_accepted(tmp_path: Path) -> None:
    # The simulator's side: a token lives `token_lifetime` from its first use.
    clock = ManualClock()
    async with rig(tmp_path, clock) as (sim, _state, session):
        plain = source_of(sim, session, None)
        await poll(plain, clock)
        clock.advance(LIFETIME)
        with pytest.raises(PollError) as info:
            await poll(plain, clock)
        assert info.value.kind is FailureKind.AUTH
