"""Platform behaviours the seed pages leave open, played whichever way a real platform might.

The daemon must be right however the platforms behave where their documentation is silent, so
the simulator can disagree with it on each such point. `Variants` holds one choice per open
behaviour; the defaults are what the simulator always did. Both command lines take them as
options (`add_variant_arguments`), and `SINGLE_VARIANTS` names every choice that differs from
the defaults, one at a time, for test matrices.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, fields, replace
from itertools import islice
from typing import Any, Final, Literal, get_args

from aiohttp import web
from yarl import URL

from bulkwatch.model import Platform, TaskStatus
from bulkwatch.simulator.lifecycle import Status
from bulkwatch.simulator.model import EmptyStyle, SimStore, SimTask

__all__ = [
    "MOVED_PREFIX",
    "SINGLE_VARIANTS",
    "AuthFailure",
    "CreatedTimes",
    "ListOrder",
    "PastEnd",
    "Redirect",
    "Variants",
    "add_variant_arguments",
    "auth_failure",
    "list_page",
    "no_task_answer",
    "redirect",
    "shoplazza_failed",
    "variants_from_arguments",
]

ListOrder = Literal["newest", "oldest"]
PastEnd = Literal["empty", "404", "400"]
AuthFailure = Literal["401", "400"]
Redirect = Literal["none", "same-host", "cross-host"]
CreatedTimes = Literal["absent", "present"]
# Where a redirect sends a request: the same API, one path segment further, so a client that
# follows it gets the normal answer. A cross-host redirect goes to `localhost` instead of the
# address the client used: another host, as far as the client can tell.
MOVED_PREFIX: Final = "moved/"
FOREIGN_HOST: Final = "localhost"
_HTML_404: Final = (
    b"<!DOCTYPE html><html><head><title>404 Not Found</title></head><body><center>"
    b"<h1>404 Not Found</h1></center><hr><center>nginx</center></body></html>"
)
_NO_TASK_BODIES: Final = {
    "object": b"{}",
    "null": b"null",
    "empty": b"",
    "data_null": b'{"data":null}',
    "id_null": b'{"id":null,"status":null,"type":null}',
    "id_empty": b'{"id":"","status":"","type":""}',
}


@dataclass(frozen=True, slots=True)
class Variants:
    """One choice per behaviour the platforms do not document.

    - `list_order`: the Shoplazza list shows the newest task first, or the oldest first.
    - `past_end`: what Shoplazza answers for a page after the last one (page > 1): 200 with
      an empty list, 404 or 400.
    - `no_task`: what Shopline answers when there is no current task; None keeps each
      store's `empty_style` (`object` unless set): `404` (JSON), `404_html` (a gateway's page),
      `object` (`{}`), `null`, `empty` (no body), `id_null`, `id_empty`, `data_null`.
    - `failed_code`: the Shoplazza `query_status` of a failed task (undocumented).
    - `auth_failure`: what Shoplazza answers to a wrong token: 401, or a bare 400 "Bad Request".
    - `redirect`: every API request is first redirected (301), to the same host or to another.
    - `created_times`: whether Shoplazza list entries carry a `created_at` (undocumented).
    - `token_lifetime`: seconds a Shopline access token lasts (the platform's is 10 hours);
      None: tokens never expire, as the simulator always did. Documented, not open, but a
      choice all the same: renewal is only needed when tokens expire (`simulator.oauth`).
    """

    list_order: ListOrder = "newest"
    past_end: PastEnd = "empty"
    no_task: EmptyStyle | None = None
    failed_code: int = 3
    auth_failure: AuthFailure = "401"
    redirect: Redirect = "none"
    created_times: CreatedTimes = "absent"
    token_lifetime: float | None = None

    def describe(self) -> str:
        """The choices that differ from the defaults, as command-line options."""
        default = Variants()
        parts = [
            f"--{f.name.replace('_', '-')} {_option(getattr(self, f.name))}"
            for f in fields(self)
            if getattr(self, f.name) != getattr(default, f.name)
        ]
        return " ".join(parts) or "defaults"


def _option(value: object) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _singles() -> dict[str, Variants]:
    out: dict[str, Variants] = {}
    for order in get_args(ListOrder):
        out[f"list-{order}"] = Variants(list_order=order)
    for past in get_args(PastEnd):
        out[f"past-end-{past}"] = Variants(past_end=past)
    for style in get_args(EmptyStyle):
        out[f"no-task-{style.replace('_', '-')}"] = Variants(no_task=style)
    for code in (3, -1):
        out[f"failed-code-{code}"] = Variants(failed_code=code)
    for auth in get_args(AuthFailure):
        out[f"auth-{auth}"] = Variants(auth_failure=auth)
    for where in ("same-host", "cross-host"):
        out[f"redirect-{where}"] = Variants(redirect=where)
    out["created-times-present"] = Variants(created_times="present")
    return out


# Every choice once, the others at their defaults: name -> variants.
SINGLE_VARIANTS: Final = _singles()


def add_variant_arguments(parser: argparse.ArgumentParser) -> None:
    """The `--list-order`, `--past-end`, ... options of both simulator command lines."""
    group = parser.add_argument_group(
        "platform variants", "how the simulated platforms behave where their docs are silent"
    )
    group.add_argument(
        "--list-order",
        choices=get_args(ListOrder),
        default="newest",
        help="Shoplazza task list order (default: newest first)",
    )
    group.add_argument(
        "--past-end",
        choices=get_args(PastEnd),
        default="empty",
        help="Shoplazza answer for a page after the last one: 200 with an empty list, 404 or "
        "400 (default: empty)",
    )
    group.add_argument(
        "--no-task",
        choices=get_args(EmptyStyle),
        default=None,
        help="Shopline answer when there is no current task (default: object, i.e. 200 {})",
    )
    group.add_argument(
        "--failed-code",
        type=int,
        default=3,
        help="Shoplazza query_status of a failed task (default: 3)",
    )
    group.add_argument(
        "--auth-failure",
        choices=get_args(AuthFailure),
        default="401",
        help="Shoplazza answer to a wrong token: 401 or a bare 400 (default: 401)",
    )
    group.add_argument(
        "--redirect",
        choices=get_args(Redirect),
        default="none",
        help="redirect every API request first: to the same host or to another (default: none)",
    )
    group.add_argument(
        "--created-times",
        choices=get_args(CreatedTimes),
        default="absent",
        help="whether Shoplazza list entries carry created_at (default: absent)",
    )
    group.add_argument(
        "--token-lifetime",
        type=_positive_seconds,
        default=None,
        metavar="SECONDS",
        help="Shopline access tokens expire after SECONDS (the platform's: 36000) and are "
        "renewed with POST /admin/oauth/token/refresh, signed with the app secret; the "
        "Shopline stores get app credentials, in the written config too (default: tokens "
        "never expire)",
    )


def _positive_seconds(value: str) -> float:
    seconds = float(value)
    if not seconds > 0:
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, not {value}")
    return seconds


def variants_from_arguments(args: argparse.Namespace) -> Variants:
    """The `Variants` that `add_variant_arguments` options chose."""
    return Variants(**{f.name: getattr(args, f.name) for f in fields(Variants)})


def with_changes(variants: Variants, **changes: Any) -> Variants:
    """A copy with some choices changed (the control route's PATCH)."""
    return replace(variants, **changes)


# -- what the API answers under each choice ---------------------------------------------------


def shoplazza_failed(
    platform: Platform, status: Status | None, variants: Variants
) -> Status | None:
    """A Shoplazza FAILED status becomes the variant's code; anything else passes through."""
    failed = isinstance(status, str) and status.upper() == TaskStatus.FAILED.value
    if platform is Platform.SHOPLAZZA and failed:
        return variants.failed_code
    return status


def list_page(
    st: SimStore, page: int, limit: int, variants: Variants
) -> tuple[int, list[SimTask] | bytes]:
    """One page of the Shoplazza list in the variant's order: (200, tasks), or the variant's
    error answer (status, body) for a page past the end."""
    start = (page - 1) * limit
    if page > 1 and start >= len(st.tasks) and variants.past_end != "empty":
        message = "page not found" if variants.past_end == "404" else "page out of range"
        return int(variants.past_end), json.dumps({"error": message}).encode()
    ordered = st.tasks.values() if variants.list_order == "oldest" else reversed(st.tasks.values())
    return 200, list(islice(ordered, start, start + limit))


def no_task_answer(st: SimStore, variants: Variants, headers: dict[str, str]) -> web.Response:
    """Shopline's answer when the endpoint has no current task."""
    style = variants.no_task or st.empty_style
    if style == "404_html":
        # A gateway's page: no platform trace id, no JSON.
        return web.Response(status=404, body=_HTML_404, content_type="text/html")
    if style == "404":
        body = json.dumps({"errors": "Not Found"}).encode()
        return web.Response(status=404, body=body, headers=headers, content_type="application/json")
    return web.Response(
        status=200, body=_NO_TASK_BODIES[style], headers=headers, content_type="application/json"
    )


def auth_failure(platform: Platform, variants: Variants, headers: dict[str, str]) -> web.Response:
    """The answer to a wrong token: Shoplazza's bare 400 under that variant, else a JSON 401."""
    if platform is Platform.SHOPLAZZA and variants.auth_failure == "400":
        return web.Response(status=400, text="Bad Request", headers=headers)
    key = "errors" if platform is Platform.SHOPLINE else "error"
    body = json.dumps({key: "Unauthorized"}).encode()
    return web.Response(status=401, body=body, headers=headers, content_type="application/json")


def redirect(request: web.Request, tail: str, variants: Variants) -> web.Response | None:
    """A 301 to the same API one segment further (`moved/`), when the variant redirects and
    the request has not been moved yet; None when the request is to be answered."""
    if variants.redirect == "none" or tail.startswith(MOVED_PREFIX):
        return None
    store = request.match_info["store"]
    here = request.url
    host = here.host if variants.redirect == "same-host" else FOREIGN_HOST
    target = URL.build(
        scheme=here.scheme,
        host=host or "127.0.0.1",
        port=here.port,
        path=f"/{store}/{MOVED_PREFIX}{tail}",
        query_string=here.query_string,
    )
    return web.Response(status=301, headers={"Location": str(target)})


def arrived_elsewhere(request: web.Request) -> bool:
    """Whether a request came through the other host of a cross-host redirect."""
    return request.url.host == FOREIGN_HOST
