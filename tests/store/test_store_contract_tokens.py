"""The refreshed access tokens, on every backend (`store` from store_fixtures.py): kept per
store, replaced, durable when `save_token` returns, kept across a reopen."""

from __future__ import annotations

from datetime import timedelta

from bulkwatch.store.base import StoredToken
from helpers.store_support import T0, Backend


async def test_a_token_is_kept_per_store_replaced_and_kept_across_a_reopen(
    backend: Backend,
) -> None:
    store = await backend.open()
    try:
        assert await store.load_token("line-1") is None
        first = StoredToken("line-1", "tok-A", T0 + timedelta(hours=10), "seed-1", T0)
        await store.save_token(first)
        assert await store.load_token("line-1") == first
        second = StoredToken("line-1", "tok-B", None, "seed-1", T0 + timedelta(hours=9))
        await store.save_token(second)
        other = StoredToken("line-2", "tok-C", T0, "seed-2", T0)
        await store.save_token(other)
        assert await store.load_token("line-1") == second
        assert await store.load_token("line-2") == other
        assert "tok-B" not in repr(second)
    finally:
        await store.close()
    reopened = await backend.open()
    try:
        assert await reopened.load_token("line-1") == second
    finally:
        await reopened.close()
