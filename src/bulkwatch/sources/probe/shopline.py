"""`bulkwatch probe` for a Shopline store: one poll of each operation type it watches."""

from __future__ import annotations

from datetime import datetime

from bulkwatch.config import ShoplineStore
from bulkwatch.model import PollError, PollResult, TaskStatus
from bulkwatch.sources.probe.report import StoreReport
from bulkwatch.sources.shopline import ShoplineSource

__all__ = ["probe_shopline"]

_CHECKS = ("no-task shape", "mutation type", "statuses")


async def probe_shopline(
    source: ShoplineSource, config: ShoplineStore, report: StoreReport, now: datetime
) -> tuple[PollError | None, str]:
    """The Shopline checks; returns the first failed request's error (None when every type
    answered) and the path asked for, for the shared `auth` and `api version` lines."""
    path = f"/admin/openapi/{config.api_version}/current_bulk_operation.json"
    results: dict[str, PollResult] = {}
    for key in source.endpoints:
        try:
            result = await source.poll_since(key, now, None)
        except PollError as exc:
            report.skip(*_CHECKS, why=f"type={key.endpoint} could not be read")
            return exc, path
        assert isinstance(result, PollResult)  # noqa: S101 - no fingerprint given
        results[key.endpoint] = result
    shapes = {t: r.no_task for t, r in results.items() if r.no_task is not None}
    if not shapes:
        report.add(
            "no-task shape",
            "ok",
            None,
            "not seen: every type has a current task (probe again when one has none)",
        )
    elif "404 html" in shapes.values():
        report.add(
            "no-task shape",
            "fail",
            "404 html",
            "an HTML 404 page (a gateway's, not the API's) where the task should be",
            "check api_version and the store's handle/base_url",
        )
    elif set(shapes.values()) == {"404"} and len(shapes) == len(results):
        report.add(
            "no-task shape",
            "warn",
            "404",
            "JSON 404 on every type: a 'no current task' and a wrong path look the same; "
            "bulkwatch reports an endpoint that never shows a task",
            "probe again while a bulk operation exists to tell them apart",
        )
    else:
        shown = ", ".join(f"type={t}: {s}" for t, s in shapes.items())
        report.add(
            "no-task shape",
            "ok",
            next(iter(shapes.values())),
            f"{shown}; bulkwatch reads it as no current task",
        )
    _mutation(report, config, results)
    _statuses(report, results)
    return None, path


def _mutation(report: StoreReport, config: ShoplineStore, results: dict[str, PollResult]) -> None:
    """The `mutation type` line: what the MUTATION endpoint showed (MUTATION_GENERAL tasks
    appear there or nowhere bulkwatch looks)."""
    if "MUTATION" not in config.operation_types:
        report.add("mutation type", "ok", None, "MUTATION is not watched (operation_types)")
        return
    tasks = results["MUTATION"].tasks
    if not tasks:
        report.add("mutation type", "ok", None, "no current MUTATION task to look at")
        return
    kind = tasks[0].operation_type
    report.add("mutation type", "ok", kind, f"type=MUTATION shows a {kind} task")


def _statuses(report: StoreReport, results: dict[str, PollResult]) -> None:
    seen = {t.raw_status: t.status for r in results.values() for t in r.tasks}
    value = {str(raw): None if s is TaskStatus.UNKNOWN else s.value for raw, s in seen.items()}
    unknown = sorted(str(raw) for raw, s in seen.items() if s is TaskStatus.UNKNOWN)
    if not seen:
        report.add("statuses", "ok", {}, "no current task on any type")
    elif unknown:
        report.add(
            "statuses",
            "fail",
            value,
            f"undocumented: {', '.join(unknown)}",
            "report it with this output; until then each fires task.unknown",
        )
    else:
        report.add("statuses", "ok", value, ", ".join(sorted(value)))
