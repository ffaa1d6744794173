"""The status page (`/`) and the JSON API (`/api/v1/`), served by the daemon's web server.

Part of the daemon layer: it reads the state store through its protocols and the daemon's
`DaemonStatus`, never the engine itself; web.py hands it a `WebContext` and registers it.
"""

from __future__ import annotations

from aiohttp import web

from bulkwatch.daemon.webui.api import add_api_routes
from bulkwatch.daemon.webui.context import WebContext
from bulkwatch.daemon.webui.page import add_page_routes
from bulkwatch.daemon.webui.problems import problem_middleware

__all__ = ["WebContext", "add_webui", "problem_middleware"]


def add_webui(app: web.Application, ctx: WebContext) -> None:
    """Register the page and the API on `app` (built with `problem_middleware`)."""
    add_page_routes(app, ctx)
    add_api_routes(app, ctx)
