"""The checks both platforms share: the token, the path and API version, redirects, rate-limit
headers and the platform's clock, all read from what the requests saw (`Recording`)."""

from __future__ import annotations

from datetime import datetime
from email.utils import parsedate_to_datetime

from bulkwatch.model import FailureKind, PollError
from bulkwatch.sources.http.recording import Recording
from bulkwatch.sources.probe.report import StoreReport

__all__ = ["MAX_SKEW", "answered", "clock_skew", "rate_limit_headers", "redirects"]

# Beyond this, expiry and stall times computed from the platform's timestamps drift visibly.
MAX_SKEW = 60.0


def answered(
    report: StoreReport,
    error: PollError | None,
    recording: Recording,
    *,
    api_version: str,
    path: str,
) -> None:
    """The `auth` and `api version` lines, from the outcome of the requests."""
    if error is not None and recording.refused:
        why = "redirected to another host (see redirects)"
        report.skip("auth", "api version", why=why)
        return
    if error is None:
        report.add("auth", "ok", "accepted", "the token was accepted")
        report.add("api version", "ok", api_version, f"{api_version} answered at {path}")
        return
    status = error.http_status
    if error.kind is FailureKind.AUTH:
        value = "no token" if status is None else str(status)
        report.add("auth", "fail", value, error.message, "renew the access token, then probe again")
        report.skip("api version", why="the token was refused")
        return
    if error.kind is FailureKind.FORBIDDEN:
        report.add("auth", "fail", str(status), error.message, "grant the app the read scope")
        report.skip("api version", why="the token was refused")
        return
    report.add("auth", "skip", None, "not checked: the request failed before the token was")
    what = f"HTTP {status}: {error.message}" if status is not None else error.message
    report.add(
        "api version",
        "fail",
        "not answered" if status == 404 else "failed",
        f"{path} did not answer: {what}",
        "check api_version, the store's domain/handle and base_url",
    )


def redirects(report: StoreReport, recording: Recording) -> None:
    """The `redirects` line: none, followed on the same host, or refused to another host."""
    if recording.refused:
        report.add(
            "redirects",
            "fail",
            "cross-host",
            f"redirected to another host ({recording.refused[0]}); refused, the token was not "
            "sent there",
            "check the store's domain/handle and base_url",
        )
    elif recording.followed:
        before, after = recording.followed[0]
        report.add(
            "redirects",
            "warn",
            "same-host",
            f"{len(recording.followed)} redirect(s) on the same host followed ({before} -> "
            f"{after})",
            "set base_url to where the API answers, to save a request per poll",
        )
    else:
        report.add("redirects", "ok", "none", "no redirect")


def rate_limit_headers(report: StoreReport, recording: Recording, rate: float, burst: int) -> None:
    """The `rate limit` line: the limit headers the platform sent, if any (information)."""
    seen = {
        name: value
        for resp in recording.responses
        for name, value in (resp.headers or {}).items()
        if "limit" in name.lower()
    }
    ours = f"bulkwatch keeps to rate_limit {rate:g}/s, burst {burst}"
    if not seen:
        report.add("rate limit", "ok", {}, f"no rate-limit headers seen; {ours}")
        return
    shown = ", ".join(f"{k}: {v}" for k, v in sorted(seen.items()))
    report.add("rate limit", "ok", seen, f"{shown}; {ours}")


def clock_skew(report: StoreReport, recording: Recording, received: datetime) -> None:
    """The `clock skew` line: the platform's `Date` header against this host's clock at
    `received` (the header has whole seconds, so about a second is noise)."""
    dates = [
        r.headers.get("Date") or r.headers.get("date")
        for r in recording.responses
        if r.headers is not None
    ]
    date = next((d for d in dates if d), None)
    if date is None:
        report.add("clock skew", "warn", None, "no Date header seen", "")
        return
    try:
        theirs = parsedate_to_datetime(date)
    except (TypeError, ValueError):
        report.add("clock skew", "warn", None, f"unreadable Date header {date[:40]!r}", "")
        return
    skew = skew_seconds(theirs, received)
    observed = f"{round(skew):+d} s (the platform's Date header against this host's clock)"
    if abs(skew) > MAX_SKEW:
        report.add(
            "clock skew",
            "fail",
            round(skew),
            observed,
            "synchronise this host's clock (NTP): expiry and stall times are compared with it",
        )
    else:
        report.add("clock skew", "ok", round(skew), observed)


def skew_seconds(theirs: datetime, ours: datetime) -> float:
    """How far the platform's clock is ahead of ours (negative: behind)."""
    return (theirs - ours).total_seconds()
