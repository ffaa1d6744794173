"""No secret ever shows: the real CLI with tokens, webhook and Slack secrets and an SMTP
password and an API token, every one of them used and failing, and its output, logs, /metrics,
health reports, the status page and API, `status`, `deliveries list` and the objects' `repr`
searched for each secret."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from aiohttp import web

from bulkwatch.config import load_settings
from bulkwatch.daemon.engine import Engine
from bulkwatch.model import Platform, TaskStatus
from bulkwatch.simulator import StoreSpec, run_simulator
from helpers.cli import run_cli
from helpers.crash_support import Daemon
from helpers.platform_stub import PlatformStub, closed_port_url, json_reply
from helpers.support import free_port

TOKEN_INLINE = "tok-inline-SECRET-1a"
TOKEN_FILE = "tok-file-SECRET-2b"
TOKEN_WRONG = "tok-wrong-SECRET-3c"
TOKEN_ECHOED = "tok-echoed-SECRET-4d"
WEBHOOK_SECRET = "whsec_" + base64.b64encode(b"webhook-SECRET-5e-signing-key").decode()
HEADER = "Bearer hdr-SECRET-6f"
SLACK_PATH = "/services/T0000/B0000/slack-SECRET-7g"
SMTP_PASSWORD = "smtp-SECRET-8h"
API_TOKEN = "api-SECRET-9i-0123456789"
SECRETS = [
    TOKEN_INLINE,
    TOKEN_FILE,
    TOKEN_WRONG,
    TOKEN_ECHOED,
    WEBHOOK_SECRET,
    WEBHOOK_SECRET.removeprefix("whsec_"),
    "hdr-SECRET-6f",
    "slack-SECRET-7g",
    SMTP_PASSWORD,
    API_TOKEN,
]


def assert_clean(where: str, text: str) -> None:
    leaked = [s for s in SECRETS if s in text]
    assert not leaked, f"{where} shows {leaked}"


@asynccontextmanager
async def echoing_failure() -> AsyncIterator[str]:
    """A receiver that fails every request with 500 and echoes its headers back (the worst a
    webhook or Slack endpoint could do)."""

    async def handle(request: web.Request) -> web.Response:
        return web.Response(status=500, text=json.dumps(dict(request.headers)))

    app = web.Application()
    app.router.add_post("/{tail:.*}", handle)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


async def test_no_secret_appears_in_any_output_log_metric_or_repr(
    tmp_path: Path, platform_stub: PlatformStub
) -> None:
    # A platform whose 401 quotes the token it was sent, the worst case for redaction.
    platform_stub.script(json_reply({"errors": f"invalid token Bearer {TOKEN_ECHOED}"}, 401))
    token_file = tmp_path / "line-1.token"
    token_file.write_text(TOKEN_FILE + "\n", encoding="utf-8")
    stores = [
        StoreSpec("lazza-1", Platform.SHOPLAZZA, token=TOKEN_INLINE),
        StoreSpec("line-1", Platform.SHOPLINE, token=TOKEN_FILE, operation_types=("QUERY",)),
        StoreSpec("lazza-2", Platform.SHOPLAZZA, token="the-token-it-really-wants"),
    ]
    port = free_port()
    async with run_simulator(stores=stores) as sim, echoing_failure() as failing:
        sim.create_task("lazza-1", "q1", TaskStatus.RUNNING)
        configs = {c["name"]: c for c in sim.store_configs()}
        del configs["line-1"]["access_token"]
        configs["line-1"]["access_token_file"] = str(token_file)
        configs["lazza-2"]["access_token"] = TOKEN_WRONG
        echo = {**configs["lazza-1"], "name": "echo", "base_url": platform_stub.url}
        echo["access_token"] = TOKEN_ECHOED
        config = write_config(tmp_path, [*configs.values(), echo], failing, port)

        checked, pages = await asyncio.gather(
            run_cli("check-config", "--config", config), run_and_scrape(config, tmp_path, port)
        )
        assert checked.code == 0, checked.output
        assert_clean("check-config", checked.output)
        for name, text in pages.items():
            assert_clean(name, text)
        assert "bulkwatch_api_errors_total" in pages["/metrics"]
        log = (tmp_path / "run.log").read_text(encoding="utf-8")
        assert "token rejected" in log  # the failures happened, and were logged
        assert_clean("run log", log)

        listings = [("status", "--json"), ("deliveries", "list", "--status", "pending")]
        results = await asyncio.gather(*(run_cli(*args, "--config", config) for args in listings))
        for args, done in zip(listings, results, strict=True):
            assert done.code == 0, done.output
            assert_clean(" ".join(args), done.output)

        settings = load_settings(config, environ={})
        assert_clean("repr(settings)", repr(settings) + str(settings))
        async with Engine(settings) as engine:
            assert_clean("repr(sources)", repr(engine.sources) + repr(vars(engine.sources[0])))
            assert_clean("repr(notifiers)", repr(engine.notifiers))


def write_config(tmp_path: Path, stores: list[dict[str, Any]], failing: str, port: int) -> Path:
    data = {
        "instance": "secrets-test",
        "state": {"url": f"sqlite:///{tmp_path / 'state.db'}"},
        "server": {"enabled": True, "host": "127.0.0.1", "port": port, "api_token": API_TOKEN},
        "defaults": {"interval": 0.2, "rate_limit": 1000, "burst": 40, "down_after": 1},
        "retry": {"initial": 0.05, "max_delay": 0.1},
        "delivery": {"idle_interval": 0.05},
        "log": {"level": "debug", "format": "json"},
        "shutdown_grace": 2,
        "stores": stores,
        "notifiers": [
            {
                "name": "hook",
                "type": "webhook",
                "url": f"{failing}/hook",
                "secret": WEBHOOK_SECRET,
                "headers": {"Authorization": HEADER},
            },
            {"name": "chat", "type": "slack", "webhook_url": f"{failing}{SLACK_PATH}"},
            {
                "name": "mail",
                "type": "email",
                "host": "127.0.0.1",
                "port": int(closed_port_url().rsplit(":", 1)[1]),
                "security": "ssl",
                "username": "bulkwatch",
                "password": SMTP_PASSWORD,
                "from": "bulkwatch@example.com",
                "to": ["ops@example.com"],
                "timeout": 2,
            },
        ],
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


async def run_and_scrape(config: Path, tmp_path: Path, port: int) -> dict[str, str]:
    """`bulkwatch run` until it has failed polls and deliveries; its pages; then SIGTERM."""
    daemon = await Daemon.start(config, tmp_path / "run.log")
    try:
        async with aiohttp.ClientSession() as session:
            pages = await scrape(session, f"http://127.0.0.1:{port}")
        assert await daemon.terminate(within=10) == 0
    finally:
        await daemon.ensure_dead()
    return pages


async def scrape(session: aiohttp.ClientSession, base: str) -> dict[str, str]:
    """/metrics, /healthz and /readyz once the daemon has polled and tried to deliver."""
    async with asyncio.timeout(20):
        while True:
            try:
                async with session.get(f"{base}/metrics") as resp:
                    metrics = await resp.text()
            except aiohttp.ClientConnectionError:
                metrics = ""  # not listening yet
            if 'outcome="retry"' in metrics and 'kind="auth"' in metrics:
                break
            await asyncio.sleep(0.1)  # another process: nothing to wait on but its answers
    pages = {"/metrics": metrics}
    for path in ("/healthz", "/readyz", "/", "/api/v1/stores", "/api/v1/events"):
        async with session.get(f"{base}{path}") as resp:
            pages[path] = await resp.text()
    # A wrong token and the right one: neither answer, nor the log, may show it.
    for token in ("not-the-token", API_TOKEN):
        async with session.post(
            f"{base}/api/v1/deliveries/dead/requeue",
            json={},
            headers={"Authorization": f"Bearer {token}"},
        ) as resp:
            pages[f"requeue ({resp.status})"] = await resp.text()
    assert sorted(p for p in pages if p.startswith("requeue")) == [
        "requeue (200)",
        "requeue (401)",
    ]
    return pages
