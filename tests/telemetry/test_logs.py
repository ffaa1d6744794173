"""Log output: JSON lines off a terminal, colour console on one, poll context on every line."""

from __future__ import annotations

import io
import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal, TextIO

import pytest
import structlog
from prometheus_client import CollectorRegistry

from bulkwatch.daemon.engine import Engine
from bulkwatch.simulator import make_stores, run_simulator
from bulkwatch.telemetry.logs import configure_logging
from bulkwatch.telemetry.metrics import Metrics
from helpers.support import settings_for

ANSI = "\x1b["
Format = Literal["auto", "json", "console"]


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """configure_logging changes process-wide state: put it back after each test."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    apscheduler_level = logging.getLogger("apscheduler").level
    yield
    structlog.reset_defaults()
    for handler in root.handlers:
        if handler not in handlers:
            root.removeHandler(handler)
    root.setLevel(level)
    logging.getLogger("apscheduler").setLevel(apscheduler_level)


class Terminal:
    """A real pseudo-terminal: what `isatty()` sees in an interactive shell."""

    def __init__(self) -> None:
        self.primary, secondary = os.openpty()
        self.stream: TextIO = os.fdopen(secondary, "w", buffering=1, encoding="utf-8")

    def read(self) -> str:
        self.stream.flush()
        return os.read(self.primary, 65536).decode()

    def close(self) -> None:
        self.stream.close()
        os.close(self.primary)


@pytest.fixture
def terminal() -> Iterator[Terminal]:
    tty = Terminal()
    yield tty
    tty.close()


def json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line]


@pytest.mark.parametrize("fmt", ["auto", "json"])
def test_off_a_terminal_each_line_is_one_json_object(fmt: Format) -> None:
    out = io.StringIO()
    configure_logging("info", fmt, stream=out)
    with structlog.contextvars.bound_contextvars(store="lazza-1"):
        structlog.get_logger("bulkwatch").info("poll failing", http_status=503)

    (line,) = json_lines(out.getvalue())
    assert line["event"] == "poll failing"
    assert line["level"] == "info"
    assert line["store"] == "lazza-1"
    assert line["http_status"] == 503
    assert line["timestamp"].endswith("Z")


def test_on_a_terminal_auto_is_colour_console(terminal: Terminal) -> None:
    configure_logging("info", "auto", stream=terminal.stream)
    structlog.get_logger("bulkwatch").info("bulkwatch started", stores=2)
    text = terminal.read()
    assert "bulkwatch started" in text
    assert ANSI in text
    assert not text.lstrip().startswith("{")


def test_json_format_wins_on_a_terminal(terminal: Terminal) -> None:
    configure_logging("info", "json", stream=terminal.stream)
    structlog.get_logger("bulkwatch").info("bulkwatch started")
    (line,) = json_lines(terminal.read())
    assert line["event"] == "bulkwatch started"


def test_console_format_off_a_terminal_is_readable_without_colour() -> None:
    out = io.StringIO()
    configure_logging("info", "console", stream=out)
    structlog.get_logger("bulkwatch").warning("poll failing", store="line-1")
    text = out.getvalue()
    assert "poll failing" in text
    assert "store=line-1" in text
    assert ANSI not in text


@pytest.mark.parametrize(
    ("level", "shown"),
    [
        ("debug", ["debug", "info", "warning", "error"]),
        ("info", ["info", "warning", "error"]),
        ("warning", ["warning", "error"]),
        ("error", ["error"]),
    ],
)
def test_the_level_setting_filters_lines(
    level: Literal["debug", "info", "warning", "error"], shown: list[str]
) -> None:
    out = io.StringIO()
    configure_logging(level, "json", stream=out)
    log = structlog.get_logger("bulkwatch")
    log.debug("d")
    log.info("i")
    log.warning("w")
    log.error("e")
    assert [line["level"] for line in json_lines(out.getvalue())] == shown


def test_standard_library_records_are_rendered_the_same_way() -> None:
    out = io.StringIO()
    configure_logging("info", "json", stream=out)
    logging.getLogger("aiohttp.server").warning("Error handling request from %s", "127.0.0.1")
    logging.getLogger("apscheduler.executors.default").info("Running job %s", "every poll")
    logging.getLogger("apscheduler.scheduler").warning("Run time of job was missed")

    lines = json_lines(out.getvalue())
    assert [(line["logger"], line["level"], line["event"]) for line in lines] == [
        ("aiohttp.server", "warning", "Error handling request from 127.0.0.1"),
        ("apscheduler.scheduler", "warning", "Run time of job was missed"),
    ]


def test_configuring_twice_leaves_one_handler() -> None:
    out = io.StringIO()
    configure_logging("info", "json", stream=io.StringIO())
    configure_logging("info", "json", stream=out)
    logging.getLogger("aiohttp.server").warning("once")
    assert len(json_lines(out.getvalue())) == 1


async def test_every_poll_line_names_store_platform_and_request_id(tmp_path: Path) -> None:
    out = io.StringIO()
    configure_logging("debug", "json", stream=out)
    async with run_simulator(stores=make_stores(1, 1)) as sim:
        settings = settings_for(tmp_path, sim.store_configs())
        async with Engine(settings, metrics=Metrics(CollectorRegistry())) as engine:
            assert await engine.poll_all_once()
            sim.inject(503, store="line-1", times=4)  # two rounds of both endpoints
            assert not await engine.poll_all_once()
            assert not await engine.poll_all_once()
            assert await engine.poll_all_once()

    lines = [line for line in json_lines(out.getvalue()) if "store" in line]
    assert lines
    for line in lines:
        assert {"platform", "endpoint", "request_id"} <= line.keys(), line
    polled = [line for line in lines if line["event"] == "polled"]
    assert len(polled) == 3 + 1 + 1 + 3  # every endpoint, minus line-1's two failing rounds
    assert all(line["request_id"] for line in polled)
    failing = [line for line in lines if line["event"] == "poll failing"]
    # Once per failing endpoint when it starts failing; the second failure is only debug.
    assert sorted(line["endpoint"] for line in failing) == ["MUTATION", "QUERY"]
    assert all(line["request_id"] and line["level"] == "warning" for line in failing)
    recovered = [line for line in lines if line["event"] == "poll recovered"]
    assert sorted(line["endpoint"] for line in recovered) == ["MUTATION", "QUERY"]
    assert all(line["request_id"] for line in recovered)
