"""Just enough of the Chrome DevTools Protocol to drive Debian's headless Chromium from a
test: open a page, wait for it to load, evaluate JavaScript, take a screenshot. Chromium runs
as a real subprocess; the protocol goes over aiohttp's WebSocket client."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp

__all__ = ["CHROMIUM", "Page", "chromium"]

CHROMIUM = shutil.which("chromium")
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--remote-debugging-address=127.0.0.1",
    "--remote-debugging-port=0",
)


class Page:
    """One browser tab, over its DevTools WebSocket."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self._ws = ws
        self._ids = itertools.count(1)
        self._events: list[dict[str, Any]] = []

    async def send(self, method: str, **params: Any) -> dict[str, Any]:
        """Call `method`; return its result (events arriving meanwhile are kept)."""
        call_id = next(self._ids)
        await self._ws.send_json({"id": call_id, "method": method, "params": params})
        async with asyncio.timeout(20):
            while True:
                message = json.loads((await self._ws.receive()).data)
                if message.get("id") == call_id:
                    if "error" in message:
                        raise RuntimeError(f"{method}: {message['error']}")
                    result: dict[str, Any] = message["result"]
                    return result
                self._events.append(message)

    async def open(self, url: str, *, width: int = 1280, height: int = 900) -> None:
        """Load `url` at this viewport size (narrow: a phone) and wait for its load event."""
        await self.send(
            "Emulation.setDeviceMetricsOverride",
            width=width,
            height=height,
            deviceScaleFactor=1,
            mobile=width < 600,
        )
        await self.send("Page.enable")
        self._events.clear()
        await self.send("Page.navigate", url=url)
        async with asyncio.timeout(20):
            while not any(e.get("method") == "Page.loadEventFired" for e in self._events):
                self._events.append(json.loads((await self._ws.receive()).data))

    async def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression (promises awaited), as JSON."""
        result = await self.send(
            "Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True
        )
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression[:60]}...: {result['exceptionDetails']}")
        return result["result"].get("value")

    async def screenshot(self, path: Path) -> Path:
        """The whole page (beyond the viewport) as a PNG at `path`."""
        shot = await self.send("Page.captureScreenshot", format="png", captureBeyondViewport=True)
        await asyncio.to_thread(path.write_bytes, base64.b64decode(shot["data"]))
        return path


def _read(path: Path) -> str:
    return path.read_text().strip() if path.exists() else ""


@contextlib.asynccontextmanager
async def chromium(profile: Path) -> AsyncIterator[Page]:
    """Headless Chromium with a fresh profile in `profile`, and its first tab."""
    assert CHROMIUM is not None
    await asyncio.to_thread(profile.mkdir, parents=True, exist_ok=True)
    proc = await asyncio.create_subprocess_exec(
        CHROMIUM,
        *FLAGS,
        f"--user-data-dir={profile}",
        "about:blank",
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        port_file = profile / "DevToolsActivePort"
        async with asyncio.timeout(30):
            # No event to wait on: another process writes the file.
            while not (text := await asyncio.to_thread(_read, port_file)):  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        port = int(text.split()[0])
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{port}/json/list") as resp:
                targets = await resp.json()
            tab = next(t for t in targets if t["type"] == "page")
            async with http.ws_connect(tab["webSocketDebuggerUrl"], max_msg_size=0) as ws:
                yield Page(ws)
    finally:
        if proc.returncode is None:
            proc.terminate()
            try:
                async with asyncio.timeout(10):
                    await proc.wait()
            except TimeoutError:
                proc.kill()
                await proc.wait()
