"""Third-party notifiers through the `bulkwatch.notifiers` entry point, and `notify-test`.

The first half drives `NotifierRegistry` with hand-made entry points (broken, clashing or odd
plugins). The second half installs the tiny package in `tests/plugin_pkg` into a temporary
folder and runs the real `bulkwatch` command with that folder on PYTHONPATH: discovery goes
through `importlib.metadata`, exactly as for a package installed by pip.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import sys
import tomllib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from importlib.metadata import EntryPoint
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from structlog.testing import capture_logs

from bulkwatch.config import load_settings
from bulkwatch.model import TaskStatus
from bulkwatch.notifiers import log
from bulkwatch.notifiers.base import NotifierContext
from bulkwatch.notifiers.registry import (
    ENTRY_POINT_GROUP,
    NotifierRegistry,
    PluginError,
)
from bulkwatch.simulator import Simulator, make_stores, run_simulator
from bulkwatch.store.base import DeliveryStatus
from helpers.cli import Finished, run_cli
from helpers.notifier_support import delivery_harness, task_change

PLUGIN_PKG = Path(__file__).parent / "plugin_pkg"

# --- the registry with hand-made entry points ---------------------------------------------


def plugin_module(folder: Path, name: str, source: str) -> None:
    (folder / f"{name}.py").write_text(source, encoding="utf-8")


def entry(name: str, value: str) -> EntryPoint:
    return EntryPoint(name=name, value=value, group=ENTRY_POINT_GROUP)


def registry_of(*entries: EntryPoint) -> NotifierRegistry:
    return NotifierRegistry(lambda: entries)


GOOD_PLUGIN = """
from typing import Literal
from bulkwatch.notifiers.log import LogNotifier, LogNotifierConfig
from bulkwatch.notifiers.registry import NotifierType

class ChimeConfig(LogNotifierConfig):
    type: Literal["chime"] = "chime"  # type: ignore[assignment]

def make_type():
    return NotifierType("chime", ChimeConfig, lambda config, context: LogNotifier(config))

TYPE = make_type()
"""


def test_plugins_are_listed_without_being_imported() -> None:
    # The module does not even exist: listing must not import it.
    reg = registry_of(entry("pager", "bw_never_imported:TYPE"))
    assert reg.known_types() == ["apprise", "command", "email", "log", "pager", "slack", "webhook"]
    assert "bw_never_imported" not in sys.modules


@pytest.mark.parametrize("value", ["bw_chime_plugin:TYPE", "bw_chime_plugin:make_type"])
def test_an_entry_point_gives_a_type_or_a_callable_returning_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    plugin_module(tmp_path, "bw_chime_plugin", GOOD_PLUGIN)
    monkeypatch.syspath_prepend(tmp_path)
    kind = registry_of(entry("chime", value)).get("chime")
    assert kind is not None
    config = kind.config_model.model_validate({"name": "bell", "type": "chime"})
    assert config.type == "chime"


@pytest.mark.parametrize(
    ("source", "problem"),
    [
        (
            "raise RuntimeError('no config for you')",
            "failed to load: RuntimeError: no config for you",
        ),
        ("import bw_missing_dependency", "failed to load: ModuleNotFoundError: No module named"),
        ("TYPE = 42", "must give a bulkwatch NotifierType (or a callable returning one), not int"),
        ("def TYPE(): raise ValueError('bad')", "failed to load: ValueError: bad"),
        (
            "from bulkwatch.notifiers.log import TYPE",
            "declares type 'log'; the names must match",
        ),
        (
            "from bulkwatch.notifiers.registry import NotifierType\n"
            "TYPE = NotifierType('broken', dict, print)",
            "config_model must subclass bulkwatch NotifierConfig",
        ),
    ],
)
def test_a_broken_plugin_fails_only_when_its_type_is_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, source: str, problem: str
) -> None:
    module = f"bw_broken_{abs(hash(source))}"
    plugin_module(tmp_path, module, source)
    monkeypatch.syspath_prepend(tmp_path)
    reg = registry_of(entry("broken", f"{module}:TYPE"))

    assert reg.get("webhook") is not None  # everything else still works
    assert "broken" in reg.known_types()
    for _ in range(2):  # the failure is remembered, not retried on every lookup
        with pytest.raises(PluginError) as caught:
            reg.get("broken")
        assert str(caught.value).startswith(f"notifier plugin 'broken' ({module}:TYPE)")
        assert problem in str(caught.value)


def test_a_plugin_cannot_replace_a_builtin_or_another_plugin(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plugin_module(tmp_path, "bw_chime_twice", GOOD_PLUGIN)
    monkeypatch.syspath_prepend(tmp_path)
    reg = registry_of(
        entry("log", "bw_impostor:TYPE"),
        entry("chime", "bw_chime_twice:TYPE"),
        entry("chime", "bw_chime_impostor:TYPE"),
    )
    with capture_logs() as logs:
        assert reg.get("log") is log.TYPE
        kind = reg.get("chime")
    assert kind is not None
    assert [(e["event"], e["plugin"]) for e in logs] == [
        (
            "notifier plugin ignored: a built-in type has its name",
            "notifier plugin 'log' (bw_impostor:TYPE)",
        ),
        (
            "notifier plugin ignored: another plugin has its name",
            "notifier plugin 'chime' (bw_chime_impostor:TYPE)",
        ),
    ]


async def test_build_accepts_only_a_config_of_the_types_own_model() -> None:
    kind = registry_of().get("webhook")
    assert kind is not None
    config = log.LogNotifierConfig(name="console")
    async with aiohttp.ClientSession() as session:
        context = NotifierContext(session=session, instance="test-1")
        with pytest.raises(TypeError, match="webhook notifier needs a WebhookNotifierConfig"):
            kind.build(config, context)
        assert log.TYPE.build(config, context).name == "console"


async def test_a_plugins_failures_are_retried_by_the_dispatcher_like_any_other(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(PLUGIN_PKG / "src")
    kind = registry_of(entry("jsonl-file", "bulkwatch_file_notifier:TYPE")).get("jsonl-file")
    assert kind is not None
    folder = tmp_path / "not-yet"
    config = kind.config_model.model_validate(
        {"name": "archive", "type": "jsonl-file", "path": str(folder / "events.jsonl")}
    )
    async with aiohttp.ClientSession() as session, delivery_harness(tmp_path) as h:
        plugin = kind.build(config, NotifierContext(session=session, instance="test-1"))
        await h.enqueue(task_change(), "archive")
        dispatcher = h.dispatcher(plugin)

        assert await dispatcher.run_once() == 1
        failed = await h.only(DeliveryStatus.PENDING)
        assert failed.last_error == f"cannot write {folder}/events.jsonl: No such file or directory"
        folder.mkdir()
        h.clock.now = failed.next_attempt_at
        assert await dispatcher.run_once() == 1

        await h.only(DeliveryStatus.DELIVERED)
        assert len(lines_of(folder / "events.jsonl")) == 1
        assert (h.count("archive", "retry"), h.count("archive", "delivered")) == (1, 1)


# --- the installed package, through the real command ------------------------------------


def install(package: Path, site: Path) -> None:
    """Lay `package` out in `site` as an installer does: the import package plus a
    `<name>-<version>.dist-info` holding METADATA and entry_points.txt from its pyproject."""
    project = tomllib.loads((package / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    for module in (package / "src").iterdir():
        shutil.copytree(module, site / module.name, ignore=shutil.ignore_patterns("__pycache__"))
    dist_name = re.sub(r"[-_.]+", "_", project["name"]).lower()
    dist = site / f"{dist_name}-{project['version']}.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {project['name']}\nVersion: {project['version']}\n",
        encoding="utf-8",
    )
    lines = []
    for group, entries in project["entry-points"].items():
        lines.append(f"[{group}]")
        lines.extend(f"{name} = {value}" for name, value in entries.items())
    (dist / "entry_points.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")


@dataclass(frozen=True)
class Site:
    """A folder of installed plugins, and the command run with it on PYTHONPATH."""

    path: Path

    async def bulkwatch(self, *args: str | Path) -> Finished:
        return await run_cli(*args, env={"PYTHONPATH": str(self.path)})


@pytest.fixture
def site(tmp_path: Path) -> Site:
    folder = tmp_path / "site"
    folder.mkdir()
    install(PLUGIN_PKG, folder)
    return Site(folder)


def write_config(tmp_path: Path, notifiers: list[dict[str, Any]], **extra: Any) -> Path:
    data: dict[str, Any] = {
        "instance": "plugin-test",
        "state": {"url": f"sqlite:///{tmp_path / 'state.db'}"},
        "server": {"enabled": False},
        "log": {"format": "json"},
        # check-config refuses a config that watches nothing; this store is never polled here.
        "stores": [
            {"name": "shop", "platform": "shoplazza", "domain": "shop", "access_token": "t"}
        ],
        "notifiers": notifiers,
        **extra,
    }
    path = tmp_path / f"config-{len(list(tmp_path.glob('config-*')))}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def lines_of(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


async def test_an_installed_plugin_is_found_validated_and_called(
    site: Site, tmp_path: Path
) -> None:
    out = tmp_path / "events.jsonl"
    config = write_config(tmp_path, [{"name": "archive", "type": "jsonl-file", "path": str(out)}])

    checked, sent = await asyncio.gather(
        site.bulkwatch("check-config", "--config", config),
        site.bulkwatch("notify-test", "archive", "--config", config),
    )

    assert checked.code == 0, checked.stderr
    assert "  - archive: jsonl-file events=* stores=*" in checked.stdout
    assert sent.code == 0, sent.stderr
    assert re.fullmatch(r"delivered \(event [0-9a-f]{32} through archive\)\n", sent.stdout)
    (event,) = lines_of(out)
    assert event["type"] == "bulkwatch.task.completed"
    assert event["source"] == "bulkwatch/plugin-test"
    assert event["data"]["test"] is True
    assert event["data"]["task_id"] == "bulkwatch-test"
    assert not (tmp_path / "state.db").exists()  # notify-test keeps away from the state


async def test_check_config_reports_a_plugins_bad_fields_by_name(
    site: Site, tmp_path: Path
) -> None:
    config = write_config(
        tmp_path,
        [{"name": "archive", "type": "jsonl-file", "path": "relative.jsonl", "colour": "red"}],
    )
    result = await site.bulkwatch("check-config", "--config", config)
    assert result.code == 2
    assert result.stderr.splitlines() == [
        "config error: notifiers[0].path: must be an absolute path",
        "config error: notifiers[0].colour: unknown field",
    ]


async def test_a_broken_plugin_stops_only_configs_that_use_it(site: Site, tmp_path: Path) -> None:
    broken = tmp_path / "broken_pkg"
    (broken / "src" / "bw_broken_pager").mkdir(parents=True)
    (broken / "src" / "bw_broken_pager" / "__init__.py").write_text(
        "raise ImportError('pager SDK 2.x is required')\n", encoding="utf-8"
    )
    (broken / "pyproject.toml").write_text(
        '[project]\nname = "bw-broken-pager"\nversion = "1.2.3"\n'
        '[project.entry-points."bulkwatch.notifiers"]\npager = "bw_broken_pager:TYPE"\n',
        encoding="utf-8",
    )
    install(broken, site.path)
    unused = write_config(tmp_path, [{"name": "console", "type": "log"}])
    used = write_config(tmp_path, [{"name": "oncall", "type": "pager"}])

    fine, refused = await asyncio.gather(
        site.bulkwatch("check-config", "--config", unused),
        site.bulkwatch("check-config", "--config", used),
    )

    assert fine.code == 0, fine.stderr
    assert refused.code == 2
    assert refused.stderr.splitlines() == [
        "config error: notifiers[0].type: notifier plugin 'pager' (bw_broken_pager:TYPE from "
        "bw-broken-pager 1.2.3) failed to load: ImportError: pager SDK 2.x is required"
    ]


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    async with run_simulator(stores=make_stores(1, 1), seed=7) as simulator:
        yield simulator


async def test_once_delivers_through_the_plugin_only_what_its_filters_pass(
    site: Site, sim: Simulator, tmp_path: Path
) -> None:
    sim.create_task("lazza-1", "lz-run", TaskStatus.RUNNING)
    sim.create_task("line-1", "9001", TaskStatus.RUNNING, operation_type="QUERY")
    out = tmp_path / "lazza.jsonl"
    config = write_config(
        tmp_path,
        [{"name": "archive", "type": "jsonl-file", "path": str(out), "stores": ["lazza-*"]}],
        stores=sim.store_configs(),
    )

    result = await site.bulkwatch("once", "--config", config)

    assert result.code == 0, result.stderr
    assert [(e["type"], e["subject"]) for e in lines_of(out)] == [
        ("bulkwatch.task.running", "lazza-1/lz-run")
    ]


async def test_notify_test_reports_failures_and_unknown_names_by_exit_status(
    site: Site, tmp_path: Path
) -> None:
    config = write_config(
        tmp_path,
        [
            {"name": "archive", "type": "jsonl-file", "path": str(tmp_path / "no/such/dir.jsonl")},
            {"name": "hook", "type": "command", "argv": ["/nonexistent/hook"]},
        ],
    )
    retryable, permanent, unknown = await asyncio.gather(
        site.bulkwatch("notify-test", "archive", "--config", config),
        site.bulkwatch("notify-test", "hook", "--config", config),
        site.bulkwatch("notify-test", "pager", "--config", config),
    )
    assert (retryable.code, retryable.stdout) == (
        1,
        f"failed: cannot write {tmp_path}/no/such/dir.jsonl: No such file or directory "
        "(would be retried)\n",
    )
    assert (permanent.code, permanent.stdout) == (
        1,
        "failed: cannot run /nonexistent/hook: No such file or directory "
        "(permanent, not retried)\n",
    )
    assert unknown.code == 2
    assert unknown.stderr == "error: no notifier named 'pager' (notifiers: archive, hook)\n"


# --- the documented examples --------------------------------------------------------------


@pytest.mark.filterwarnings(
    "ignore:'imghdr' is deprecated and slated for removal:DeprecationWarning"  # Apprise's import
)
def test_the_commented_notifier_examples_in_the_example_config_are_valid(tmp_path: Path) -> None:
    text = (Path(__file__).parents[2] / "config.example.yaml").read_text(encoding="utf-8")
    tail = text[text.index("  # - name: team-slack") :].splitlines()
    # Example entries are the comment lines indented like YAML ("# - " or "#   "); prose is not.
    entries = ["  " + line[4:] for line in tail if line.startswith(("  # - ", "  #   "))]
    config = tmp_path / "examples.yaml"
    config.write_text("notifiers:\n" + "\n".join(entries) + "\n", encoding="utf-8")

    settings = load_settings(config, environ={})

    assert [(n.name, n.type) for n in settings.notifiers] == [
        ("team-slack", "slack"),
        ("ops-mail", "email"),
        ("fetch-export", "command"),
        ("phones", "apprise"),
    ]
