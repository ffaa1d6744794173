"""`bulkwatch probe`: how each store's real platform behaves where its documentation is
silent, one line per behaviour, and whether the configuration suits it. Read-only."""

from __future__ import annotations

import asyncio
import json
import sys

import aiohttp

from bulkwatch import __version__
from bulkwatch.common.useragent import USER_AGENT
from bulkwatch.config import Settings, resolve_stores
from bulkwatch.sources.probe import StoreReport, probe_store

__all__ = ["probe"]

EXIT_SUITS, EXIT_DOES_NOT_SUIT, EXIT_CONFIG = 0, 1, 2
_MARK = {"ok": "ok", "warn": "warn", "fail": "FAIL", "skip": "-"}


async def probe(settings: Settings, only: str | None, *, as_json: bool) -> int:
    """Probe every enabled store (or only `only`, enabled or not): 0 when everything suits,
    1 when something does not, 2 when `only` names no store."""
    stores = [
        s for s in resolve_stores(settings, enabled_only=only is None) if only in (None, s.name)
    ]
    if only is not None and not stores:
        print(f"config error: stores: no store named {only!r}", file=sys.stderr)
        return EXIT_CONFIG
    async with aiohttp.ClientSession(headers={"User-Agent": USER_AGENT}) as session:
        reports = await asyncio.gather(*(probe_store(store, session) for store in stores))
    ok = all(r.ok for r in reports)
    if as_json:
        doc = {"bulkwatch": __version__, "ok": ok, "stores": [r.as_dict() for r in reports]}
        print(json.dumps(doc, indent=2))
    else:
        print("\n".join(render(reports)))
    return EXIT_SUITS if ok else EXIT_DOES_NOT_SUIT


def render(reports: list[StoreReport]) -> list[str]:
    """The text report: a heading per store, one line per check, advice under a misfit."""
    lines: list[str] = []
    misfits: list[str] = []
    for report in reports:
        lines.append(f"{report.store} ({report.platform}, {report.base_url})")
        for check in report.checks:
            lines.append(f"  {_MARK[check.verdict]:<5} {check.name:<14} {check.observed}")
            if check.advice and check.verdict in ("warn", "fail"):
                lines.append(f"{'':22}-> {check.advice}")
            if check.verdict == "fail":
                misfits.append(f"{report.store}: {check.name}")
        lines.append("")
    if misfits:
        lines.append(f"does not suit ({len(misfits)}): {'; '.join(misfits)}")
    else:
        lines.append(f"everything suits ({len(reports)} store(s))")
    return lines
