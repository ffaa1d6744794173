"""A token echoed back by a hostile platform, or a password by an SMTP server, never leaves the
process: not in the log, the stored errors and events, what notifiers receive, or CLI output.

Real servers on 127.0.0.1 echo what they were sent: a platform that answers 200 with an HTML
page whose <title> holds the token, one that puts the token in its `Request-Id` header, one
that returns the token as a field value the error quotes, and an SMTP server whose refusal
quotes the AUTH line (base64) and the password.
"""

from __future__ import annotations

import asyncio
import base64
import json
import sqlite3
import ssl
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, closing
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import web

from bulkwatch.common.redact import smtp_plain
from helpers.cli import run_cli
from helpers.crash_support import Daemon, json_logs
from helpers.webhook_receiver import Receiver, running_receiver

TOKENS = {
    "title": "tok-title-SECRET-71aa",
    "header": "tok-header-SECRET-72bb",
    "field": "tok-field-SECRET-73cc",
}
SMTP_USER = "bulkwatch"
SMTP_PASSWORD = "smtp-pass-SECRET-74dd"
SECRETS = [
    *TOKENS.values(),
    SMTP_PASSWORD,
    base64.b64encode(SMTP_PASSWORD.encode()).decode(),
    smtp_plain(SMTP_USER, SMTP_PASSWORD),
]


@asynccontextmanager
async def echoing_platform() -> AsyncIterator[str]:
    """Shoplazza as a hostile platform: each store (by its first path segment) gets the token
    it sent back in a different place."""

    async def handle(request: web.Request) -> web.Response:
        token = request.headers.get("Access-Token", "")
        mode = request.match_info["mode"]
        if mode == "title":
            page = f"<html><head><title>Welcome {token}</title></head><body>hi</body></html>"
            return web.Response(status=200, text=page, content_type="text/html")
        if mode == "header":
            return web.Response(status=503, text="busy", headers={"Request-Id": token})
        task = {"query_id": "q1", "query_status": token}  # "query_status 'tok...' is not ..."
        return web.json_response({"tasks": [task]})

    app = web.Application()
    app.router.add_get("/{mode}/{tail:.*}", handle)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


def _certificate(folder: Path) -> tuple[Path, ssl.SSLContext]:
    """A self-signed certificate for 127.0.0.1: its file (for `ca_file`) and a server context."""
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
            "-addext", "subjectAltName=IP:127.0.0.1",
            "-keyout", str(key), "-out", str(cert),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return cert, context


@asynccontextmanager
async def echoing_smtp(tls: ssl.SSLContext, mechanism: str) -> AsyncIterator[int]:
    """An SMTP server (implicit TLS) that refuses every login, quoting the AUTH line and the
    password."""

    async def session(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 127.0.0.1 ESMTP\r\n")
        while line := await reader.readline():
            command = line.decode().strip()
            if command.upper().startswith("EHLO"):
                writer.write(f"250-127.0.0.1\r\n250 AUTH {mechanism}\r\n".encode())
            elif command.upper().startswith("AUTH LOGIN"):  # the user, then the password
                writer.write(b"334 UGFzc3dvcmQ6\r\n")
                await writer.drain()
                sent = (await reader.readline()).decode().strip()
                password = base64.b64decode(sent).decode()
                writer.write(f"535 5.7.8 refused {command} {sent} ({password})\r\n".encode())
            elif command.upper().startswith("AUTH PLAIN"):
                password = base64.b64decode(command.split()[-1]).split(b"\0")[-1].decode()
                writer.write(f"535 5.7.8 refused {command} ({password})\r\n".encode())
            elif command.upper() == "QUIT":
                writer.write(b"221 bye\r\n")
                break
            else:
                writer.write(b"250 ok\r\n")
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(session, "127.0.0.1", 0, ssl=tls)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


def _config(tmp_path: Path, platform: str, smtp_port: int, ca: Path, hook: str) -> Path:
    stores = [
        {
            "name": f"echo-{mode}",
            "platform": "shoplazza",
            "domain": f"echo-{mode}",
            "access_token": token,
            "base_url": f"{platform}/{mode}",
        }
        for mode, token in TOKENS.items()
    ]
    data: dict[str, Any] = {
        "instance": "redaction-test",
        "state": {"url": f"sqlite:///{tmp_path / 'state.db'}"},
        "server": {"enabled": False},
        "defaults": {"interval": 0.2, "rate_limit": 1000, "burst": 40, "down_after": 1},
        "retry": {"initial": 0.05, "max_delay": 0.1, "max_attempts": 2},
        "delivery": {"idle_interval": 0.05},
        "log": {"level": "debug", "format": "json"},
        "shutdown_grace": 2,
        "stores": stores,
        "notifiers": [
            {"name": "hook", "type": "webhook", "url": hook},
            {
                "name": "mail",
                "type": "email",
                "host": "127.0.0.1",
                "port": smtp_port,
                "security": "ssl",
                "ca_file": str(ca),
                "username": SMTP_USER,
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


def _stored_text(db: Path) -> str:
    """Every text the daemon stored: endpoint failures, tasks, event bodies, delivery errors."""
    with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        rows = [
            *conn.execute("SELECT * FROM endpoints"),
            *conn.execute("SELECT * FROM tasks"),
            *conn.execute("SELECT body, last_error FROM outbox"),
        ]
    return "\n".join(
        (v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)) for r in rows for v in r
    )


async def _cli(*args: str | Path) -> str:
    done = await run_cli(*args)
    assert done.code == 0, done.output
    return done.output


def _leaks(where: str, text: str) -> list[str]:
    return [f"{where}: {s}" for s in SECRETS if s in text]


async def _until_dead_mail(db: Path) -> None:
    """Until the mail deliveries have failed for good (two attempts, then dead)."""
    for _ in range(300):
        with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
            try:
                (dead,) = conn.execute(
                    "SELECT count(*) FROM outbox WHERE notifier = 'mail' AND status = 'dead'"
                ).fetchone()
            except sqlite3.OperationalError:  # not created yet
                dead = 0
        if dead >= len(TOKENS):
            return
        await asyncio.sleep(0.1)
    raise AssertionError("the mail deliveries never failed")


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
async def test_echoed_tokens_and_smtp_passwords_never_leave_the_process(
    tmp_path: Path, mechanism: str
) -> None:
    receiver: Receiver
    ca, tls = _certificate(tmp_path)
    async with (
        echoing_platform() as platform,
        echoing_smtp(tls, mechanism) as smtp_port,
        running_receiver() as receiver,
    ):
        config = _config(tmp_path, platform, smtp_port, ca, receiver.url)
        daemon = await Daemon.start(config, tmp_path / "run.log")
        try:
            await receiver.wait_for_requests(len(TOKENS), within=20)  # one store.down each
            await _until_dead_mail(tmp_path / "state.db")
            assert await daemon.terminate(within=10) == 0
        finally:
            await daemon.ensure_dead()
        outputs = {
            "status": await _cli("status", "--json", "--config", config),
            "deliveries": await _cli("deliveries", "list", "--status", "dead", "--config", config),
        }
    log = (tmp_path / "run.log").read_text(encoding="utf-8")
    events = [json.loads(r.body) for r in receiver.requests]
    # The failures did happen, each quoting where the token was (now redacted).
    reasons = {e["data"]["store"]: e["data"]["reason"] for e in events}
    assert "[REDACTED]" in reasons["echo-title"], reasons
    assert "[REDACTED]" in reasons["echo-field"], reasons
    assert any(e.get("request_id") == "[REDACTED]" for e in json_logs(tmp_path / "run.log"))
    assert f"SMTP login refused: 535 5.7.8 refused AUTH {mechanism}" in outputs["deliveries"]
    assert "[REDACTED]" in outputs["deliveries"]
    leaks = [
        *_leaks("log", log),
        *_leaks("stored", _stored_text(tmp_path / "state.db")),
        *_leaks("events received", json.dumps(events)),
        *(leak for name, out in outputs.items() for leak in _leaks(name, out)),
    ]
    assert not leaks
