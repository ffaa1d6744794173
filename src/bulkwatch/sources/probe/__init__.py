"""`bulkwatch probe`: how a store's real platform behaves where its documentation is silent,
and whether bulkwatch's configuration suits it. Read-only: GET requests with the store's
token, through the same sources the daemon polls with (no memory of earlier polls)."""

from __future__ import annotations

from datetime import datetime

import aiohttp

from bulkwatch.config import ResolvedStore, ShoplazzaStore
from bulkwatch.model import utcnow
from bulkwatch.sources.http.recording import Recording
from bulkwatch.sources.probe.report import Check, StoreReport, Verdict
from bulkwatch.sources.probe.shared import answered, clock_skew, rate_limit_headers, redirects
from bulkwatch.sources.probe.shoplazza import probe_shoplazza
from bulkwatch.sources.probe.shopline import probe_shopline
from bulkwatch.sources.shoplazza import ShoplazzaSource
from bulkwatch.sources.shopline import ShoplineSource

__all__ = ["Check", "StoreReport", "Verdict", "probe_store"]


async def probe_store(
    store: ResolvedStore, session: aiohttp.ClientSession, now: datetime | None = None
) -> StoreReport:
    """Every check of one store, in print order."""
    config = store.config
    now = now or utcnow()
    recording = Recording()
    report = StoreReport(store.name, store.platform.value, config.url_base())
    body = StoreReport(store.name, store.platform.value, config.url_base())
    if isinstance(config, ShoplazzaStore):
        lazza = ShoplazzaSource(config, store, session, recording)
        error, path = await probe_shoplazza(lazza, config, body, now)
    else:
        line = ShoplineSource(config, store, session, recording)
        error, path = await probe_shopline(line, config, body, now)
    received = utcnow()
    answered(report, error, recording, api_version=config.api_version, path=path)
    redirects(report, recording)
    report.checks.extend(body.checks)
    rate_limit_headers(report, recording, store.rate_limit, store.burst)
    clock_skew(report, recording, received)
    return report
