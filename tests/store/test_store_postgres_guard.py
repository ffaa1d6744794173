"""The daemon lock on a PostgreSQL state (`PostgresStore.daemon_guard`): one daemon without
replicas, or any number of replicas, never both; per schema; gone with its connection."""

from __future__ import annotations

import pytest

from bulkwatch.store.base import StateInUseError
from bulkwatch.store.factory import daemon_lock
from helpers.pg_support import fresh_schema
from helpers.store_support import PostgresBackend


async def test_a_second_daemon_without_replicas_is_refused_until_the_first_ends() -> None:
    async with fresh_schema() as (url, schema):
        first, second = [await PostgresBackend(url, schema).open() for _ in range(2)]
        try:
            async with daemon_lock(first):
                with pytest.raises(StateInUseError) as refused:
                    async with daemon_lock(second):
                        pass
                assert str(refused.value).startswith(
                    "state.url: another bulkwatch daemon without state.replicas uses schema "
                    f"'{schema}' of postgresql://"
                )
            async with daemon_lock(second):  # the first one's connection ended: free
                pass
        finally:
            await first.close()
            await second.close()


async def test_replicas_share_the_lock_and_exclude_a_daemon_without_replicas() -> None:
    async with fresh_schema() as (url, schema):
        a, b, c = [await PostgresBackend(url, schema).open() for _ in range(3)]
        try:
            async with daemon_lock(a, replicas=True), daemon_lock(b, replicas=True):
                with pytest.raises(StateInUseError, match="bulkwatch replicas run against"):
                    async with daemon_lock(c):
                        pass
            async with daemon_lock(c):
                with pytest.raises(
                    StateInUseError, match=r"a bulkwatch daemon without state\.replicas uses"
                ):
                    async with daemon_lock(a, replicas=True):
                        pass
        finally:
            for store in (a, b, c):
                await store.close()


async def test_daemons_in_separate_schemas_do_not_meet() -> None:
    async with fresh_schema() as (url_a, schema_a), fresh_schema() as (url_b, schema_b):
        a = await PostgresBackend(url_a, schema_a).open()
        b = await PostgresBackend(url_b, schema_b).open()
        try:
            async with daemon_lock(a), daemon_lock(b):
                pass
        finally:
            await a.close()
            await b.close()
