"""Errors as problem details (RFC 9457): one JSON shape for every 400, 401, 403, 404 and
405 the status page and the API answer, each naming what was wrong, each counted."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable

from aiohttp import web
from aiohttp.typedefs import Middleware
from pydantic import ValidationError

from bulkwatch.daemon.webui.models import InvalidParam, Problem
from bulkwatch.telemetry.metrics import Metrics

__all__ = ["PROBLEM_JSON", "ProblemError", "invalid", "problem_middleware", "problem_response"]

PROBLEM_JSON = "application/problem+json"
_TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ProblemError(Exception):
    """Raised by a handler: answered as a problem with this status."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        params: Iterable[InvalidParam] = (),
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.params = list(params)
        self.headers = headers or {}


def invalid(error: ValidationError, where: str = "") -> ProblemError:
    """A 400 naming every field pydantic rejected (`where`: prefix, e.g. "body.")."""
    params = []
    for err in error.errors(include_url=False, include_input=False):
        loc = ".".join(str(part) for part in err["loc"])
        reason = "unknown parameter" if err["type"] == "extra_forbidden" else err["msg"]
        params.append(
            InvalidParam(name=f"{where}{loc}" or where.rstrip(".") or "body", reason=reason)
        )
    names = ", ".join(p.name for p in params)
    return ProblemError(400, f"invalid {names}", params=params)


def problem_response(
    request: web.Request,
    status: int,
    detail: str,
    params: list[InvalidParam] | None = None,
    headers: dict[str, str] | None = None,
) -> web.Response:
    body = Problem(
        title=_TITLES.get(status, "Error"),
        status=status,
        detail=detail,
        instance=request.path,
        invalid_params=params or None,
    )
    return web.Response(
        status=status,
        text=body.model_dump_json(by_alias=True, exclude_none=True),
        content_type=PROBLEM_JSON,
        headers=headers,
    )


def problem_middleware(metrics: Metrics) -> Middleware:
    """Turn `ProblemError` and aiohttp's 404 and 405 into problems, and count them."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except ProblemError as exc:
            response = problem_response(request, exc.status, exc.detail, exc.params, exc.headers)
        except web.HTTPNotFound:
            response = problem_response(request, 404, f"nothing at {request.path}")
        except web.HTTPMethodNotAllowed as exc:
            allowed = ", ".join(sorted(exc.allowed_methods))
            response = problem_response(
                request,
                405,
                f"{request.method} is not allowed on {request.path}; use {allowed}",
                headers={"Allow": allowed},
            )
        metrics.api_rejected.labels(str(response.status)).inc()
        return response

    return middleware
