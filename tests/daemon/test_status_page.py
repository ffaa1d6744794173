"""The status page in a real browser: Debian's headless Chromium loads `/` from a daemon
polling the simulator, sees the stores and the tasks, sees a failing store turn red, reads
it at a phone's width without sideways scrolling, and axe-core finds no accessibility
violation. Screenshots are saved (and, with BULKWATCH_SCREENSHOTS=<dir>, copied there)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from bulkwatch.model import TaskStatus
from helpers.cdp import CHROMIUM, Page, chromium
from helpers.webui_support import Site, site

pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="no chromium binary: `make browser-tools` installs Debian's chromium (CI does)",
)
# The browser tools live in tests/browser (`make browser-tools`), next to the layer folders.
AXE = Path(__file__).parents[1] / "browser" / "node_modules" / "axe-core" / "axe.min.js"
RED = "rgb(176, 0, 32)"  # --down in status.css
GREEN = "rgb(27, 94, 32)"  # --ok

ROWS = """[...document.querySelectorAll('tr[data-store]')].map(r => ({
    store: r.dataset.store,
    state: r.className,
    badge: r.querySelector('.badge').textContent,
    colour: getComputedStyle(r.querySelector('.badge')).backgroundColor,
    border: getComputedStyle(r.querySelector('th')).borderLeftColor,
}))"""
TASKS = "[...document.querySelectorAll('tr[data-task]')].map(r => r.dataset.task)"


def keep(shot: Path) -> None:
    target = os.environ.get("BULKWATCH_SCREENSHOTS")
    if target:
        shutil.copy(shot, Path(target) / shot.name)


async def rows(page: Page) -> dict[str, dict[str, Any]]:
    return {row["store"]: row for row in await page.evaluate(ROWS)}


async def busy_fleet(s: Site) -> None:
    s.sim.create_task("lazza-1", "lz-export-1", TaskStatus.COMPLETED)
    s.sim.create_task("lazza-2", "lz-export-2", TaskStatus.RUNNING)
    s.sim.create_task("line-1", "sl-bulk-1", TaskStatus.COMPLETED, operation_type="QUERY")
    s.sim.create_task("line-1", "sl-bulk-2", TaskStatus.RUNNING, operation_type="MUTATION")
    await s.poll()


async def test_the_page_shows_stores_and_tasks_and_a_failing_store_turns_red(
    tmp_path: Path,
) -> None:
    async with site(tmp_path, lazza=3, line=1) as s, chromium(tmp_path / "profile") as page:
        await busy_fleet(s)
        await page.open(s.url + "/")
        healthy = await rows(page)
        tasks = await page.evaluate(TASKS)

        s.sim.inject(503, store="lazza-2", times=None)
        await s.poll()
        await page.open(s.url + "/")
        failing = await rows(page)
        summary = await page.evaluate("document.querySelector('.summary').textContent")
        refresh = await page.evaluate("document.querySelector('meta[http-equiv=refresh]').content")
        keep(await page.screenshot(tmp_path / "status-page.png"))
        stop = await page.evaluate("document.querySelector('footer a').getAttribute('href')")
        await page.open(s.url + stop)
        still = await page.evaluate("document.querySelectorAll('meta[http-equiv]').length")

    assert sorted(healthy) == ["lazza-1", "lazza-2", "lazza-3", "line-1"]
    assert {r["badge"] for r in healthy.values()} == {"up"}
    assert {r["colour"] for r in healthy.values()} == {GREEN}
    assert sorted(tasks) == ["lz-export-1", "lz-export-2", "sl-bulk-1", "sl-bulk-2"]
    assert failing["lazza-2"]["state"] == "down"
    assert failing["lazza-2"]["badge"] == "down"
    assert failing["lazza-2"]["colour"] == RED
    assert failing["lazza-2"]["border"] == RED
    assert failing["lazza-1"]["colour"] == GREEN
    assert "1 down" in summary
    assert refresh == "15"
    assert stop == "/?refresh=off"
    assert still == 0


async def test_the_page_reads_on_a_phone_without_javascript(tmp_path: Path) -> None:
    async with site(tmp_path, lazza=2, line=1) as s, chromium(tmp_path / "profile") as page:
        await busy_fleet(s)
        s.sim.inject(503, store="lazza-2", times=None)
        await s.poll()
        await page.send("Emulation.setScriptExecutionDisabled", value=True)
        await page.open(s.url + "/", width=390, height=844)
        shot = await page.screenshot(tmp_path / "status-page-phone.png")
        await page.send("Emulation.setScriptExecutionDisabled", value=False)
        width = await page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
        found = await rows(page)
        scripts = await page.evaluate("document.scripts.length")
    keep(shot)
    assert width[0] <= width[1], "the page scrolls sideways on a phone"
    assert found["lazza-2"]["colour"] == RED
    assert scripts == 0


async def test_axe_core_finds_no_accessibility_violation(tmp_path: Path) -> None:
    assert AXE.is_file(), f"{AXE} is missing: `make browser-tools` installs axe-core with npm"
    async with site(tmp_path, lazza=2, line=1) as s, chromium(tmp_path / "profile") as page:
        await busy_fleet(s)
        s.sim.inject(503, store="lazza-2", times=None)
        await s.poll()
        results = {}
        for path, width in (("/", 1280), ("/", 390), ("/?refresh=off", 1280)):
            await page.open(s.url + path, width=width)
            await page.evaluate(AXE.read_text(encoding="utf-8"))
            results[path, width] = await page.evaluate(
                "axe.run(document, {runOnly: ['wcag2a', 'wcag2aa', 'wcag21aa', "
                "'best-practice']}).then(r => ({violations: r.violations.map(v => "
                "({id: v.id, nodes: v.nodes.map(n => n.html)})), passes: r.passes.length}))"
            )
    # The one finding on the refreshing page is the refresh itself, which the issue asks
    # for: axe cannot see that the page offers a link to stop it (WCAG 2.2.1 "turn off");
    # the page behind that link passes every rule.
    refresh = {"id": "meta-refresh", "nodes": [f'<meta http-equiv="refresh" content="{15}">']}
    for (path, width), result in results.items():
        expected = [refresh] if path == "/" else []
        assert result["violations"] == expected, (path, width, result["violations"])
        assert result["passes"] > 10  # axe ran its rules
