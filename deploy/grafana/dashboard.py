"""The bulkwatch Grafana dashboard, built with grafana-foundation-sdk.

`python deploy/grafana/dashboard.py` rewrites bulkwatch.json beside this file; `--check` exits
1 when the committed JSON differs from what this file builds. Edit the panels here, not in
the JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from grafana_foundation_sdk.builders import common as common_b
from grafana_foundation_sdk.builders import dashboard as dash_b
from grafana_foundation_sdk.builders import prometheus as prom_b
from grafana_foundation_sdk.builders import stat as stat_b
from grafana_foundation_sdk.builders import timeseries as ts_b
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as dash_m

__all__ = ["OUTPUT", "build", "render"]

OUTPUT = Path(__file__).with_name("bulkwatch.json")
DATASOURCE = dash_m.DataSourceRef(type_val="prometheus", uid="${datasource}")
STORE = 'store=~"$store"'


def _query(expr: str, legend: str, ref: str = "A") -> prom_b.Dataquery:
    return prom_b.Dataquery().expr(expr).legend_format(legend).ref_id(ref).range()


def _series(
    title: str, description: str, unit: str, *queries: tuple[str, str], stacked: bool = False
) -> ts_b.Panel:
    panel = (
        ts_b.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .unit(unit)
        .height(8)
        .span(12)
        .fill_opacity(10)
        .legend(
            common_b.VizLegendOptions()
            .display_mode(common.LegendDisplayMode.TABLE)
            .placement(common.LegendPlacement.BOTTOM)
            .show_legend(True)
        )
    )
    if stacked:
        panel = panel.stacking(common_b.StackingConfig().mode(common.StackingMode.NORMAL))
    for ref, (expr, legend) in zip("ABCDEFGH", queries, strict=False):
        panel = panel.with_target(_query(expr, legend, ref))
    return panel


def _stat(
    title: str, description: str, expr: str, *, bad_above: float | None = None
) -> stat_b.Panel:
    """A single number; red from `bad_above` on, green below (or always neutral)."""
    steps = [dash_m.Threshold(value=None, color="green" if bad_above is not None else "text")]
    if bad_above is not None:
        steps.append(dash_m.Threshold(value=bad_above, color="red"))
    return (
        stat_b.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .unit("short")
        .height(4)
        .span(6)
        .graph_mode(common.BigValueGraphMode.AREA)
        .color_mode(common.BigValueColorMode.VALUE)
        .reduce_options(common_b.ReduceDataOptions().calcs(["lastNotNull"]))
        .thresholds(dash_b.ThresholdsConfig().mode(dash_m.ThresholdsMode.ABSOLUTE).steps(steps))
        .with_target(_query(expr, title).instant())
    )


def build() -> dash_b.Dashboard:
    """The dashboard: polling, tasks, delivery and the daemon itself, filtered by store."""
    return (
        dash_b.Dashboard("bulkwatch")
        .uid("bulkwatch")
        .description("Polls, task states, transitions and deliveries of bulkwatch")
        .tags(["bulkwatch"])
        .time("now-6h", "now")
        .refresh("30s")
        .timezone("browser")
        .with_variable(
            dash_b.DatasourceVariable("datasource").label("Data source").type("prometheus")
        )
        .with_variable(
            dash_b.QueryVariable("store")
            .label("Store")
            .datasource(DATASOURCE)
            .query("label_values(bulkwatch_store_up, store)")
            .refresh(dash_m.VariableRefresh.ON_TIME_RANGE_CHANGED)
            .sort(dash_m.VariableSort.ALPHABETICAL_ASC)
            .multi(True)
            .include_all(True)
            .all_value(".*")
        )
        .with_row(dash_b.Row("Overview"))
        .with_panel(
            _stat(
                "Stores up",
                "Stores whose polls succeed (store_up 1) out of all configured",
                f"sum(bulkwatch_store_up{{{STORE}}})",
            )
        )
        .with_panel(
            _stat(
                "Stores down",
                "Stores past down_after consecutive failed polls",
                f"count(bulkwatch_store_up{{{STORE}}} == 0) or vector(0)",
                bad_above=1,
            )
        )
        .with_panel(
            _stat(
                "Outbox backlog",
                "Deliveries waiting to be sent, all notifiers",
                "sum(bulkwatch_outbox_pending)",
            )
        )
        .with_panel(
            _stat(
                "Dead deliveries",
                "Deliveries that gave up: `bulkwatch deliveries list` shows them",
                "sum(bulkwatch_outbox_dead)",
                bad_above=1,
            )
        )
        .with_row(dash_b.Row("Polling"))
        .with_panel(
            _series(
                "Polls per store",
                "Polls per second by store and outcome",
                "reqps",
                (
                    f"sum by (store, outcome) (rate(bulkwatch_polls_total{{{STORE}}}"
                    "[$__rate_interval]))",
                    "{{store}} {{outcome}}",
                ),
            )
        )
        .with_panel(
            _series(
                "API errors per store",
                "Platform API errors per second by store and kind",
                "reqps",
                (
                    f"sum by (store, kind) (rate(bulkwatch_api_errors_total{{{STORE}}}"
                    "[$__rate_interval]))",
                    "{{store}} {{kind}}",
                ),
            )
        )
        .with_panel(
            _series(
                "Poll latency",
                "50th and 95th percentile of one endpoint poll, all pages included",
                "s",
                (
                    "histogram_quantile(0.5, sum by (platform, le) "
                    "(rate(bulkwatch_poll_duration_seconds_bucket[$__rate_interval])))",
                    "p50 {{platform}}",
                ),
                (
                    "histogram_quantile(0.95, sum by (platform, le) "
                    "(rate(bulkwatch_poll_duration_seconds_bucket[$__rate_interval])))",
                    "p95 {{platform}}",
                ),
            )
        )
        .with_panel(
            _series(
                "Time since last successful poll",
                "Compare with the poll interval: three intervals raise an alert",
                "s",
                (
                    f"time() - bulkwatch_last_success_timestamp_seconds{{{STORE}}}",
                    "{{store}}",
                ),
            )
        )
        .with_row(dash_b.Row("Tasks"))
        .with_panel(
            _series(
                "Tasks by status",
                "Tracked tasks of the selected stores by status",
                "short",
                (f"sum by (status) (bulkwatch_tasks{{{STORE}}})", "{{status}}"),
                stacked=True,
            )
        )
        .with_panel(
            _series(
                "Transitions",
                "Task status changes by previous and new status",
                "short",
                (
                    "sum by (from, to) (increase(bulkwatch_transitions_total[$__rate_interval]))",
                    "{{from}} → {{to}}",
                ),
            )
        )
        .with_panel(
            _series(
                "Events by type",
                "CloudEvents emitted, by type",
                "short",
                (
                    "sum by (type) (increase(bulkwatch_events_total[$__rate_interval]))",
                    "{{type}}",
                ),
            )
        )
        .with_row(dash_b.Row("Delivery"))
        .with_panel(
            _series(
                "Delivery outcomes",
                "Delivery attempts per second by notifier and outcome",
                "reqps",
                (
                    "sum by (notifier, outcome) "
                    "(rate(bulkwatch_deliveries_total[$__rate_interval]))",
                    "{{notifier}} {{outcome}}",
                ),
            )
        )
        .with_panel(
            _series(
                "Delivery latency",
                "95th percentile of one delivery attempt by notifier",
                "s",
                (
                    "histogram_quantile(0.95, sum by (notifier, le) "
                    "(rate(bulkwatch_delivery_duration_seconds_bucket[$__rate_interval])))",
                    "p95 {{notifier}}",
                ),
            )
        )
        .with_panel(
            _series(
                "Outbox backlog",
                "Pending and dead deliveries by notifier",
                "short",
                ("sum by (notifier) (bulkwatch_outbox_pending)", "pending {{notifier}}"),
                ("sum by (notifier) (bulkwatch_outbox_dead)", "dead {{notifier}}"),
            )
        )
        .with_panel(
            _series(
                "Scheduler",
                "Poll jobs missed (the daemon cannot keep up) or failed",
                "short",
                (
                    "sum(increase(bulkwatch_scheduler_jobs_missed_total[$__rate_interval]))",
                    "missed",
                ),
                (
                    "sum(increase(bulkwatch_scheduler_jobs_failed_total[$__rate_interval]))",
                    "failed",
                ),
            )
        )
    )


def render() -> str:
    """The dashboard as the JSON file Grafana imports."""
    model = build().build()
    # Stable, unique panel ids: "view panel" links and alert annotations refer to them.
    for number, panel in enumerate(model.panels or [], start=1):
        panel.id_val = number
    return json.dumps(model, cls=JSONEncoder, indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Write bulkwatch.json, or with --check report whether it is up to date."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the JSON is stale")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        if OUTPUT.read_text(encoding="utf-8") != text:
            print(f"{OUTPUT} is stale: run python {__file__}", file=sys.stderr)
            return 1
        return 0
    OUTPUT.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
