"""The status page at `/`: server-rendered HTML, one inlined style sheet, no script.

A summary line, the stores that need attention, a page of stores with health badges, and the
newest tasks; it refreshes itself (`<meta http-equiv="refresh">`) and reads on a phone (each
table row becomes a card). Everything is escaped; nothing is fetched from elsewhere.
"""

from __future__ import annotations

from datetime import datetime
from html import escape
from importlib import resources
from urllib.parse import quote

from aiohttp import web
from pydantic import ValidationError

from bulkwatch.daemon.webui import views
from bulkwatch.daemon.webui.context import BadParamError, WebContext
from bulkwatch.daemon.webui.models import (
    InvalidParam,
    StoreList,
    StoreOut,
    StoreQuery,
    Summary,
    TaskOut,
    TaskQueryParams,
)
from bulkwatch.daemon.webui.problems import ProblemError

__all__ = ["REFRESH_S", "add_page_routes", "render"]

REFRESH_S = 15
STORES_PER_PAGE = 100
TASKS_SHOWN = 25
_CSS = resources.files(__package__).joinpath("status.css").read_text(encoding="utf-8")


def _age(when: datetime | None, now: datetime, *, future: bool = False) -> str:
    if when is None:
        return '<span class="muted">never</span>' if not future else '<span class="muted">—</span>'
    seconds = abs((when - now).total_seconds())
    if seconds < 90:
        text = f"{seconds:.0f} s"
    elif seconds < 5400:
        text = f"{seconds / 60:.0f} min"
    elif seconds < 172_800:
        text = f"{seconds / 3600:.0f} h"
    else:
        text = f"{seconds / 86400:.0f} days"
    text = f"in {text}" if when > now else f"{text} ago"
    return f'<time datetime="{when.isoformat()}">{text}</time>'


def _summary(s: Summary, now: datetime) -> str:
    parts = [f"{s.stores:,} stores"]
    if s.replica is not None:
        r = s.replica
        parts.append(
            f"replica {escape(r.id)} polls {r.stores_owned:,} (share {r.share:,}, "
            f"{r.live_replicas:,} replicas live)"
        )
    if s.down or s.failing:
        parts.append(f"<strong>{s.down:,} down</strong>, {s.failing:,} failing")
    else:
        parts.append("all up")
    parts.append(f"{s.pending:,} deliveries pending")
    if s.dead:
        parts.append(f"<strong>{s.dead:,} dead</strong>")
    parts.append(f"last poll {_age(s.last_poll_at, now)}")
    state = "ok" if s.ok else "bad"
    verdict = "Everything is fine" if s.ok else "Something needs attention"
    return (
        f'<p class="summary {state}" role="status"><strong>{verdict}.</strong> '
        + " · ".join(parts)
        + "</p>"
    )


def _attention(s: Summary) -> str:
    if not s.troubled:
        return ""
    items = "".join(
        f'<li><a href="/api/v1/stores/{quote(name)}">{escape(name)}</a></li>' for name in s.troubled
    )
    more = s.down + s.failing - len(s.troubled)
    tail = f'<p class="muted">and {more:,} more</p>' if more > 0 else ""
    return (
        '<section aria-labelledby="attention"><h2 id="attention">Needs attention</h2>'
        f'<ul class="attention">{items}</ul>{tail}</section>'
    )


def _store_row(s: StoreOut, now: datetime, replicas: bool) -> str:
    error = f'<span class="error">{escape(s.last_error)}</span>' if s.last_error else "—"
    backoff = (
        f' <span class="muted">(backing off until {_age(s.backoff_until, now)})</span>'
        if s.backoff_until and s.backoff_until > now
        else ""
    )
    return (
        f'<tr class="{s.state}" data-store="{escape(s.name)}">'
        f'<th scope="row">{escape(s.name)}</th>'
        f'<td data-label="Platform">{s.platform.value}</td>'
        f'<td data-label="Health"><span class="badge {s.state}">{s.state}</span></td>'
        f'<td data-label="Last poll">{_age(s.last_poll_at, now)}</td>'
        f'<td data-label="Next poll">{_age(s.next_poll_at, now, future=True)}{backoff}</td>'
        + (f'<td data-label="Owner">{_owner(s.owner)}</td>' if replicas else "")
        + f'<td data-label="Last error">{error}</td></tr>'
    )


def _owner(owner: str | None) -> str:
    return escape(owner) if owner else '<span class="muted">nobody</span>'


def _href(cursor: str | None, refresh: bool) -> str:
    params = [f"stores={cursor}"] if cursor else []
    if not refresh:
        params.append("refresh=off")
    return "/?" + "&amp;".join(params) if params else "/"


def _refresh_note(refresh: bool, query: StoreQuery) -> str:
    if refresh:
        link = _href(query.cursor, refresh=False)
        return f'Refreshes every {REFRESH_S} s (<a href="{link}">stop refreshing</a>).'
    link = _href(query.cursor, refresh=True)
    return f'Not refreshing (<a href="{link}">refresh every {REFRESH_S} s</a>).'


def _stores(
    page: StoreList, query: StoreQuery, now: datetime, refresh: bool, replicas: bool
) -> str:
    rows = "".join(_store_row(s, now, replicas) for s in page.stores)
    owner = '<th scope="col">Owner</th>' if replicas else ""
    shown = f"{len(page.stores):,} of {page.total:,}"
    nav = ""
    if page.next_cursor:
        nav = (
            '<nav class="pages" aria-label="More stores">'
            f'<a href="{_href(page.next_cursor, refresh)}">Next {STORES_PER_PAGE} stores</a>'
            "</nav>"
        )
    first = f' · <a href="{_href(None, refresh)}">first page</a>' if query.cursor else ""
    return (
        '<section aria-labelledby="stores"><h2 id="stores">Stores</h2>'
        f"<table><caption>{shown} stores, by name{first}</caption>"
        '<thead><tr><th scope="col">Store</th><th scope="col">Platform</th>'
        '<th scope="col">Health</th><th scope="col">Last poll</th>'
        f'<th scope="col">Next poll</th>{owner}<th scope="col">Last error</th></tr></thead>'
        f"<tbody>{rows}</tbody></table>{nav}</section>"
    )


def _task_row(t: TaskOut, now: datetime) -> str:
    result = "—"
    if t.result_url:
        result = f'<a href="{escape(t.result_url)}">result file</a>'
        if t.expires_at:
            result += f' <span class="muted">(expires {_age(t.expires_at, now)})</span>'
    count = "—" if t.completed_count is None else f"{t.completed_count:,}"
    status = t.status.value
    return (
        f'<tr data-task="{escape(t.task_id)}"><th scope="row">{escape(t.task_id)}</th>'
        f'<td data-label="Store">{escape(t.store)}</td>'
        f'<td data-label="Status"><span class="badge {status}">{status.lower()}</span></td>'
        f'<td data-label="Age">{_age(t.created_at or t.first_seen_at, now)}</td>'
        f'<td data-label="Completed">{count}</td>'
        f'<td data-label="Result">{result}</td></tr>'
    )


def _tasks(tasks: list[TaskOut], now: datetime) -> str:
    if not tasks:
        return (
            '<section aria-labelledby="tasks"><h2 id="tasks">Recent tasks</h2>'
            "<p>None yet.</p></section>"
        )
    rows = "".join(_task_row(t, now) for t in tasks)
    return (
        '<section aria-labelledby="tasks"><h2 id="tasks">Recent tasks</h2>'
        f"<table><caption>The {len(tasks)} newest tasks</caption>"
        '<thead><tr><th scope="col">Task</th><th scope="col">Store</th>'
        '<th scope="col">Status</th><th scope="col">Age</th>'
        '<th scope="col">Completed</th><th scope="col">Result</th></tr></thead>'
        f"<tbody>{rows}</tbody></table></section>"
    )


async def render(ctx: WebContext, query: StoreQuery, *, refresh: bool = True) -> str:
    """The whole page for one page of stores; `refresh`: reload itself every REFRESH_S s
    (WCAG 2.2.1: a link on the page turns that off, and back on)."""
    now = ctx.clock()
    summary = await views.summary(ctx)
    stores = await views.stores(ctx, query)
    tasks = await views.tasks(ctx, TaskQueryParams(limit=TASKS_SHOWN))
    instance = escape(summary.instance)
    title = "all up" if summary.ok else f"{summary.down} down, {summary.failing} failing"
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        + (f'<meta http-equiv="refresh" content="{REFRESH_S}">' if refresh else "")
        + f"<title>bulkwatch {instance}: {title}</title><style>{_CSS}</style></head><body>"
        '<a class="skip" href="#main">Skip to the status</a>'
        f"<header><h1>bulkwatch <small>{instance}</small></h1></header>"
        f'<main id="main">{_summary(summary, now)}{_attention(summary)}'
        f"{_stores(stores, query, now, refresh, summary.replica is not None)}"
        f"{_tasks(tasks.tasks, now)}</main>"
        f"<footer>{_refresh_note(refresh, query)} As JSON: "
        '<a href="/api/v1/summary">summary</a>, <a href="/api/v1/stores">stores</a>, '
        '<a href="/api/v1/tasks">tasks</a>, <a href="/api/v1/events">events</a> '
        '(<a href="/api/v1/openapi.json">OpenAPI</a>); '
        '<a href="/metrics">metrics</a>.</footer></body></html>'
    )


def _query(request: web.Request) -> StoreQuery:
    """`?stores=<cursor>`: the next page of stores (and `refresh=off`, see `_refresh`)."""
    unknown = sorted(set(request.query) - {"stores", "refresh"})
    if unknown:
        params = [InvalidParam(name=k, reason="unknown parameter") for k in unknown]
        raise ProblemError(400, f"invalid {', '.join(unknown)}", params=params)
    try:
        return StoreQuery(limit=STORES_PER_PAGE, cursor=request.query.get("stores"))
    except ValidationError:
        raise _bad_cursor() from None


def _bad_cursor() -> ProblemError:
    reason = "not a cursor this page handed out"
    return ProblemError(
        400, f"stores: {reason}", params=[InvalidParam(name="stores", reason=reason)]
    )


def add_page_routes(app: web.Application, ctx: WebContext) -> None:
    """The status page at `/`."""

    async def page(request: web.Request) -> web.Response:
        query = _query(request)
        refresh = request.query.get("refresh", "on")
        if refresh not in ("on", "off"):
            reason = "must be on or off"
            params = [InvalidParam(name="refresh", reason=reason)]
            raise ProblemError(400, f"refresh: {reason}", params=params)
        try:
            html = await render(ctx, query, refresh=refresh == "on")
        except BadParamError:
            raise _bad_cursor() from None
        return web.Response(
            text=html, content_type="text/html", headers={"Cache-Control": "no-store"}
        )

    app.router.add_get("/", page)
