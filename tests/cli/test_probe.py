"""`bulkwatch probe` through the real command line (a subprocess) against the simulator playing
every platform variant: it must name each one, exit 1 exactly when something does not suit,
and change nothing on the platform. Dates come from the test's own clock."""

from __future__ import annotations

import asyncio
import functools
import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from bulkwatch.model import Platform, TaskStatus
from bulkwatch.simulator import SINGLE_VARIANTS, Simulator, StoreSpec, Variants, run_simulator
from bulkwatch.sources.http.recording import Recording
from bulkwatch.sources.http.response import HttpResponse
from bulkwatch.sources.probe.report import StoreReport
from bulkwatch.sources.probe.shared import clock_skew
from helpers.cli import run_cli

# A probe of every variant runs several processes at once: give each more time.
bulkwatch = functools.partial(run_cli, within=60.0)

T0 = datetime(2026, 11, 23, 10, 0, tzinfo=UTC).timestamp()
STORES = [
    StoreSpec("lazza-1", Platform.SHOPLAZZA),
    StoreSpec("line-1", Platform.SHOPLINE),  # never shows a task: the no-task shape
]
SHAPES = {
    "object": "{}",
    "null": "null",
    "empty": "empty body",
    "404": "404",
    "404-html": "404 html",
    "id-null": "id null",
    "id-empty": 'id ""',
    "data-null": "data null",
}
STATUSES = {"0": "CREATED", "1": "RUNNING", "2": "COMPLETED"}
# What the probe must say under each variant: (store, check, value, verdict).
Expect = tuple[str, str, Any, str]
EXPECTED: dict[str, Expect] = {
    "list-newest": ("lazza-1", "list order", "newest first", "ok"),
    "list-oldest": ("lazza-1", "list order", "oldest first", "ok"),
    "past-end-empty": ("lazza-1", "past the end", "empty", "ok"),
    "past-end-404": ("lazza-1", "past the end", "404", "ok"),
    "past-end-400": ("lazza-1", "past the end", "400", "ok"),
    "failed-code-3": ("lazza-1", "statuses", {**STATUSES, "3": None}, "fail"),
    "failed-code--1": ("lazza-1", "statuses", {**STATUSES, "-1": None}, "fail"),
    "auth-401": ("lazza-1", "auth", "401", "fail"),
    "auth-400": ("lazza-1", "auth", "400", "fail"),
    "redirect-same-host": ("lazza-1", "redirects", "same-host", "warn"),
    "redirect-cross-host": ("lazza-1", "redirects", "cross-host", "fail"),
    "created-times-present": ("lazza-1", "list order", "newest first", "ok"),
    **{
        f"no-task-{name}": (
            "line-1",
            "no-task shape",
            shape,
            {"404": "warn", "404 html": "fail"}.get(shape, "ok"),
        )
        for name, shape in SHAPES.items()
    },
}


def config_for(path: Path, sim: Simulator, **lazza: Any) -> Path:
    stores = sim.store_configs()
    stores[0].update(lazza)
    doc = {"state": {"url": f"sqlite:///{path.parent / 'state.db'}"}, "stores": stores}
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    return path


def fill(sim: Simulator, *, failed: bool = False) -> None:
    """Tasks created a minute apart (CREATED, RUNNING, COMPLETED, and FAILED if asked)."""
    statuses = [TaskStatus.COMPLETED, TaskStatus.RUNNING, TaskStatus.CREATED]
    if failed:
        statuses.insert(0, TaskStatus.FAILED)
    for n, status in enumerate(statuses):
        sim.create_task("lazza-1", f"task-{n}", status, now=T0 + 60 * n, created_at=T0 + 60 * n)


def platform_state(sim: Simulator) -> list[tuple[str, str, Any, int]]:
    return [
        (st.name, t.id, t.status, t.version) for st in sim.stores.values() for t in st.all_tasks()
    ]


def runs() -> list[tuple[Variants, list[str]]]:
    """Each Shoplazza variant beside a Shopline one in the same simulator: fewer processes."""
    lazza = [n for n, e in EXPECTED.items() if e[0] == "lazza-1" and not n.startswith("redirect")]
    line = [n for n, e in EXPECTED.items() if e[0] == "line-1"]
    out: list[tuple[Variants, list[str]]] = []
    for n, name in enumerate(lazza):
        variants = SINGLE_VARIANTS[name]
        if name.startswith("list-"):  # the order is named from created times
            variants = replace(variants, created_times="present")
        names = [name]
        if n < len(line):
            variants = replace(variants, no_task=SINGLE_VARIANTS[line[n]].no_task)
            names.append(line[n])
        out.append((variants, names))
    out += [(SINGLE_VARIANTS[n], [n]) for n in ("redirect-same-host", "redirect-cross-host")]
    return out


async def probe_run(tmp_path: Path, variants: Variants, names: list[str]) -> list[str]:
    """Probe one simulator; the mismatches with `EXPECTED`, as readable lines."""
    async with run_simulator(stores=STORES, seed=5, clock=lambda: T0, variants=variants) as sim:
        fill(sim, failed=any(n.startswith("failed-code") for n in names))
        folder = tmp_path / "-".join(names)
        folder.mkdir()
        config = config_for(folder / "c.yaml", sim)
        if any(n.startswith("auth-") for n in names):
            sim.stores["lazza-1"].set_token("rotated")  # the config's token is now wrong
        before = platform_state(sim)
        done = await bulkwatch("probe", "--config", config, "--json")
        after = platform_state(sim)
        leaked = sim.leaked_tokens
    doc = json.loads(done.stdout)
    checks = {(s["store"], c["check"]): c for s in doc["stores"] for c in s["checks"]}
    problems = []
    for name in names:
        store, check, value, verdict = EXPECTED[name]
        got = checks[(store, check)]
        if (got["value"], got["verdict"]) != (value, verdict):
            problems.append(f"{name}: {check} = {got['value']!r} ({got['verdict']}): {got}")
    failing = {k for k, c in checks.items() if c["verdict"] == "fail"}
    wanted = {(EXPECTED[n][0], EXPECTED[n][1]) for n in names if EXPECTED[n][3] == "fail"}
    if "redirect-cross-host" in names:  # both platforms are redirected
        wanted.add(("line-1", "redirects"))
    if failing != wanted:
        problems.append(f"{names}: failing checks {sorted(failing)}, expected {sorted(wanted)}")
    if done.code != (1 if wanted else 0):
        problems.append(f"{names}: exit {done.code}: {done.stderr}")
    if before != after or leaked:
        problems.append(f"{names}: the probe changed the platform or leaked the token")
    return problems


def test_every_variant_has_an_expectation() -> None:
    assert set(EXPECTED) == set(SINGLE_VARIANTS)


async def test_probe_names_every_variant(tmp_path: Path) -> None:
    results = await asyncio.gather(*(probe_run(tmp_path, v, n) for v, n in runs()))
    assert [line for lines in results for line in lines] == []


async def test_text_report_a_list_longer_than_a_poll_reads_and_mutation_general(
    tmp_path: Path,
) -> None:
    stores = [*STORES, StoreSpec("line-2", Platform.SHOPLINE)]
    async with run_simulator(stores=stores, seed=5, clock=lambda: T0) as sim:
        fill(sim)
        sim.replace_current("line-2", "MUTATION_GENERAL", "42", TaskStatus.RUNNING)
        config = config_for(tmp_path / "c.yaml", sim, page_limit=2, max_pages=1)
        done = await bulkwatch("probe", "-c", config)
        one = await bulkwatch("probe", "-c", config, "--store", "line-2", "--json")
    assert done.code == 1, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == f"lazza-1 (shoplazza, {sim.url}/lazza-1)"
    assert "  FAIL  list length    3 tasks; a poll reads 2 (max_pages 1 x page_limit 2)" in lines
    assert "-> raise max_pages to 2 or more; tasks beyond the window are not watched" in done.stdout
    assert "  ok    past the end   HTTP 200 with an empty list;" in done.stdout
    assert "  ok    mutation type  type=MUTATION shows a MUTATION_GENERAL task" in lines
    assert lines[-1] == "does not suit (1): lazza-1: list length"
    assert one.code == 0, one.stdout
    (report,) = json.loads(one.stdout)["stores"]
    assert report["store"] == "line-2"
    assert [c["check"] for c in report["checks"]] == [
        "auth",
        "api version",
        "redirects",
        "no-task shape",
        "mutation type",
        "statuses",
        "rate limit",
        "clock skew",
    ]
    assert "sim-line-2" not in one.stdout  # never the token


async def test_config_errors_exit_2(tmp_path: Path) -> None:
    async with run_simulator(stores=STORES, seed=5, clock=lambda: T0) as sim:
        config = config_for(tmp_path / "c.yaml", sim)
        unknown = await bulkwatch("probe", "-c", config, "--store", "nope")
    missing = await bulkwatch("probe", "-c", tmp_path / "absent.yaml")
    assert (unknown.code, unknown.stdout) == (2, "")
    assert "no store named 'nope'" in unknown.stderr
    assert missing.code == 2
    assert "config error" in missing.stderr


def skew_report(date: str | None, received: datetime) -> StoreReport:
    recording = Recording()
    headers = {} if date is None else {"Date": date}
    recording.responses.append(HttpResponse(200, b"{}", None, None, None, headers))
    report = StoreReport("s", "shoplazza", "http://x")
    clock_skew(report, recording, received)
    return report


def test_clock_skew_from_the_date_header() -> None:
    received = datetime(2026, 11, 23, 10, 0, 30, tzinfo=UTC)
    date = "Mon, 23 Nov 2026 10:00:00 GMT"
    behind = skew_report(date, received).check("clock skew")
    assert (behind.value, behind.verdict) == (-30, "ok")
    far = skew_report(date, received + timedelta(minutes=5)).check("clock skew")
    assert (far.value, far.verdict) == (-330, "fail")
    assert "NTP" in far.advice
    assert skew_report(None, received).check("clock skew").verdict == "warn"
    assert skew_report("yesterday", received).check("clock skew").verdict == "warn"
