"""The configs and the endpoints file the benchmark's clients read."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bulkwatch.config import Settings, ShoplazzaStore

__all__ = ["write_config", "write_endpoints"]


def write_config(
    path: Path,
    stores: list[dict[str, Any]],
    state: Path | str | dict[str, Any],
    hook: str,
    interval: float,
    *,
    port: int | None = None,
) -> Path:
    """A bulkwatch config (YAML accepts JSON) for the simulated stores; `state` is a SQLite
    file, a state URL or the whole `state:`; `port`: serve the status page and API there."""
    server = {"enabled": False} if port is None else {"host": "127.0.0.1", "port": port}
    if not isinstance(state, dict):
        state = {"url": state if isinstance(state, str) else f"sqlite:///{state}"}
    doc = {
        "instance": "bench",
        "state": state,
        "server": server,
        "defaults": {"interval": interval},
        "notifiers": [{"name": "bench", "type": "webhook", "url": hook}],
        "stores": stores,
    }
    path.write_text(json.dumps(doc))
    return path


def write_endpoints(path: Path, settings: Settings) -> int:
    """Every GET the engine makes (same URL, query and headers), for the bare clients."""
    out: list[dict[str, Any]] = []
    for store in settings.stores:
        token = store.token() or ""
        common = {"Accept": "application/json", "User-Agent": "bench"}
        if isinstance(store, ShoplazzaStore):
            url = f"{store.url_base()}/openapi/{store.api_version}/data/tasks"
            headers = {**common, "Access-Token": token, "Content-Type": "application/json"}
            params = {"page": "1", "limit": str(store.page_limit)}
            out.append({"url": url, "params": params, "headers": headers})
            continue
        url = f"{store.url_base()}/admin/openapi/{store.api_version}/current_bulk_operation.json"
        headers = {
            **common,
            "Authorization": f"Bearer {token}",
            "Content-Type": "application/json; charset=utf-8",
        }
        out.extend(
            {"url": url, "params": {"type": kind}, "headers": headers}
            for kind in store.operation_types
        )
    path.write_text(json.dumps(out))
    return len(out)
