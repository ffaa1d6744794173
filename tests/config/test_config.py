"""Settings: defaults, sources (YAML, env, secret files) and one clear line per problem."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any

import pytest
import yaml

from bulkwatch.config import (
    ConfigError,
    ShoplazzaStore,
    ShoplineStore,
    StateSettings,
    load_settings,
)
from bulkwatch.model import TaskStatus

LAZZA: dict[str, Any] = {
    "name": "lazza-main",
    "platform": "shoplazza",
    "domain": "mystore",
    "access_token": "tok-1",
}
LINE: dict[str, Any] = {
    "name": "line-main",
    "platform": "shopline",
    "handle": "open001",
    "access_token": "tok-2",
}


def write(tmp_path: Path, data: Any) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    return path


def problems(tmp_path: Path, data: Any, environ: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_settings(write(tmp_path, data), environ=environ or {})
    return info.value.problems


def test_minimal_config_gets_documented_defaults(tmp_path: Path) -> None:
    s = load_settings(write(tmp_path, {"stores": [LAZZA, LINE]}), environ={})
    assert s.state.url == "sqlite:///bulkwatch.db"
    assert s.defaults.interval == 60
    assert s.defaults.down_after == 3
    assert s.retry.initial == 5
    assert s.retry.max_delay == 600
    assert s.retry.max_attempts == 20
    assert s.server.port == 9464
    assert s.instance
    lazza, line = s.stores
    assert isinstance(lazza, ShoplazzaStore)
    assert isinstance(line, ShoplineStore)
    assert lazza.url_base() == "https://mystore.myshoplaza.com"
    assert line.url_base() == "https://open001.myshopline.com"
    assert line.endpoints == ("QUERY", "MUTATION")
    assert lazza.effective_status_map()[2] is TaskStatus.COMPLETED


def test_durations_accept_units(tmp_path: Path) -> None:
    s = load_settings(
        write(
            tmp_path,
            {
                "defaults": {"interval": "5m", "stall_after": "2h", "timeout": 7.5},
                "retry": {"max_age": "1d"},
                "stores": [LAZZA],
            },
        ),
        environ={},
    )
    assert (s.defaults.interval, s.defaults.stall_after, s.defaults.timeout) == (300, 7200, 7.5)
    assert s.retry.max_age == 86400


def test_status_map_overrides_merge_with_defaults(tmp_path: Path) -> None:
    s = load_settings(
        write(tmp_path, {"stores": [{**LAZZA, "status_map": {3: "FAILED"}}]}), environ={}
    )
    store = s.stores[0]
    assert isinstance(store, ShoplazzaStore)
    assert store.effective_status_map() == {
        0: TaskStatus.CREATED,
        1: TaskStatus.RUNNING,
        2: TaskStatus.COMPLETED,
        3: TaskStatus.FAILED,
    }


def test_token_from_file_and_from_credentials_directory(tmp_path: Path) -> None:
    (tmp_path / "tok").write_text("file-token\n")
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "line-main").write_text("cred-token")
    lazza = {k: v for k, v in LAZZA.items() if k != "access_token"}
    line = {k: v for k, v in LINE.items() if k != "access_token"}
    s = load_settings(
        write(tmp_path, {"stores": [{**lazza, "access_token_file": str(tmp_path / "tok")}, line]}),
        environ={"CREDENTIALS_DIRECTORY": str(creds)},
    )
    assert [st.token() for st in s.stores] == ["file-token", "cred-token"]
    assert "file-token" not in repr(s)
    assert "cred-token" not in repr(s)


def test_environment_overrides_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BULKWATCH_STATE__URL", "sqlite:////tmp/x.db")
    monkeypatch.setenv("BULKWATCH_INSTANCE", "from-env")
    s = load_settings(write(tmp_path, {"instance": "from-file", "stores": [LAZZA]}), environ={})
    assert s.instance == "from-env"
    assert s.state.url == "sqlite:////tmp/x.db"


def test_example_config_is_valid(tmp_path: Path) -> None:
    example = Path(__file__).parents[2] / "config.example.yaml"
    text = example.read_text()
    token = tmp_path / "line-main"
    token.write_text("t")
    text = text.replace("/run/credentials/bulkwatch.service/line-main", str(token))
    s = load_settings(write(tmp_path, text), environ={})
    assert [n.type for n in s.notifiers] == ["webhook"]  # events reach the log by `log.events`
    assert len(s.stores) == 2


def test_replicas_take_a_postgresql_url_a_lease_ttl_and_a_replica_id(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = {"url": "postgresql://bw@db/bw", "replicas": True, "lease_ttl": "10s"}
    s = load_settings(write(tmp_path, {"state": state, "stores": [LAZZA]}), environ={})
    assert (s.state.replicas, s.state.lease_ttl, s.state.replica_id) == (True, 10.0, None)
    assert s.state.replica == f"{socket.gethostname()}-{os.getpid()}"
    monkeypatch.setenv("BULKWATCH_STATE__REPLICA_ID", "pod-a")
    named = load_settings(write(tmp_path, {"state": state, "stores": [LAZZA]}), environ={})
    assert (named.state.replica, named.state.lease_ttl) == ("pod-a", 10.0)
    assert load_settings(write(tmp_path, {"stores": [LAZZA]}), environ={}).state.replicas is False


def test_the_example_config_names_every_state_field() -> None:
    example = yaml.safe_load(
        (Path(__file__).parents[2] / "config.example.yaml")
        .read_text()
        .replace("# replica_id", "replica_id")
    )
    assert set(example["state"]) == set(StateSettings.model_fields)


BAD_CONFIGS: list[tuple[str, Any, list[str]]] = [
    (
        "missing handle",
        {"stores": [LAZZA, {k: v for k, v in LINE.items() if k != "handle"}]},
        ["stores[1].handle: field required"],
    ),
    (
        "missing domain",
        {"stores": [{k: v for k, v in LAZZA.items() if k != "domain"}]},
        ["stores[0].domain: field required"],
    ),
    (
        "missing name",
        {"stores": [{k: v for k, v in LAZZA.items() if k != "name"}]},
        ["stores[0].name: field required"],
    ),
    (
        "missing platform",
        {"stores": [{"name": "x", "domain": "d"}]},
        ["stores[0].platform: field required ('shoplazza' or 'shopline')"],
    ),
    (
        "unknown platform",
        {"stores": [{**LAZZA, "platform": "shopify"}]},
        ["stores[0]: platform must be 'shoplazza' or 'shopline'"],
    ),
    (
        "unknown field",
        {"stores": [{**LAZZA, "intervall": 5}]},
        ["stores[0].intervall: unknown field"],
    ),
    (
        "bad interval",
        {"stores": [{**LAZZA, "interval": "soon"}]},
        ["stores[0].interval: invalid duration 'soon': use seconds or a unit s, m, h, d"],
    ),
    (
        "zero interval",
        {"defaults": {"interval": 0}, "stores": [LAZZA]},
        ["defaults.interval: input should be greater than 0"],
    ),
    (
        "bad operation type",
        {"stores": [{**LINE, "operation_types": ["QUERY", "DELETE"]}]},
        ["stores[0].operation_types[1]: input should be 'QUERY' or 'MUTATION'"],
    ),
    (
        "page limit too big",
        {"stores": [{**LAZZA, "page_limit": 500}]},
        ["stores[0].page_limit: input should be less than or equal to 250"],
    ),
    (
        "bad status in map",
        {"stores": [{**LAZZA, "status_map": {3: "DONE"}}]},
        [
            "stores[0].status_map[3]: input should be 'CREATED', 'RUNNING', 'CANCELING', "
            "'CANCELED', 'COMPLETED', 'FAILED', 'EXPIRED' or 'UNKNOWN'"
        ],
    ),
    (
        "bad base url",
        {"stores": [{**LAZZA, "base_url": "localhost:8081"}]},
        ["stores[0].base_url: must start with http:// or https://"],
    ),
    (
        "two token sources",
        {"stores": [{**LAZZA, "access_token_file": "/x"}]},
        ["stores[0]: give access_token or access_token_file, not both"],
    ),
    (
        "duplicate store names",
        {"stores": [LAZZA, {**LINE, "name": "lazza-main"}]},
        ["config: stores: duplicate name lazza-main"],
    ),
    (
        "bad state url",
        {"state": {"url": "mysql://x"}, "stores": [LAZZA]},
        [
            "state.url: use sqlite:///relative.db, sqlite:////absolute.db or "
            "postgresql://user@host:5432/database"
        ],
    ),
    (
        "postgresql state url with a port that is not a number",
        {"state": {"url": "postgresql://bw:hunter2@db:54x2/bulkwatch"}, "stores": [LAZZA]},
        [
            "state.url: the PostgreSQL state URL does not parse (is the port a number? is a "
            "password with '@', '/' or ':' percent-encoded?); use "
            "postgresql://user@host:5432/database"
        ],
    ),
    (
        "state pool size below one",
        {"state": {"pool_size": 0}, "stores": [LAZZA]},
        ["state.pool_size: input should be greater than or equal to 1"],
    ),
    (
        "replicas on a sqlite state file",
        {"state": {"replicas": True}, "stores": [LAZZA]},
        [
            "state.replicas: replicas share the stores through PostgreSQL; a SQLite state file "
            "has one daemon (set state.url to a postgresql:// URL, or replicas: false)"
        ],
    ),
    (
        "lease ttl below three seconds",
        {"state": {"url": "postgresql://db/bw", "replicas": True, "lease_ttl": "2s"}},
        ["state.lease_ttl: input should be greater than or equal to 3"],
    ),
    (
        "lease ttl above five minutes",
        {"state": {"url": "postgresql://db/bw", "lease_ttl": "6m"}},
        ["state.lease_ttl: input should be less than or equal to 300"],
    ),
    (
        "replica id with a space",
        {"state": {"url": "postgresql://db/bw", "replica_id": "a b"}},
        ["state.replica_id: string should match pattern '^[A-Za-z0-9][A-Za-z0-9_.:@-]*$'"],
    ),
    ("stores not a list", {"stores": {"a": 1}}, ["stores: input should be a valid list"]),
    ("unknown top-level field", {"store": [LAZZA]}, ["store: unknown field"]),
    (
        "notifier without type",
        {"stores": [LAZZA], "notifiers": [{"name": "n"}]},
        ["notifiers[0].type: field required (known: apprise, command, email, log, slack, webhook)"],
    ),
    (
        "unknown notifier type",
        {"stores": [LAZZA], "notifiers": [{"name": "n", "type": "fax"}]},
        [
            "notifiers[0].type: unknown notifier type 'fax' "
            "(known: apprise, command, email, log, slack, webhook)"
        ],
    ),
    (
        "webhook without url",
        {"stores": [LAZZA], "notifiers": [{"name": "n", "type": "webhook"}]},
        ["notifiers[0].url: field required"],
    ),
    (
        "several problems at once",
        {
            "stores": [{**LINE, "handle": None, "interval": -1}],
            "notifiers": [{"name": "n", "type": "webhook"}],
        },
        [
            "stores[0].interval: a duration cannot be negative",
            "stores[0].handle: input should be a valid string",
            "notifiers[0].url: field required",
        ],
    ),
]


@pytest.mark.parametrize(
    ("data", "expected"), [c[1:] for c in BAD_CONFIGS], ids=[c[0] for c in BAD_CONFIGS]
)
def test_bad_config_names_the_field(tmp_path: Path, data: Any, expected: list[str]) -> None:
    assert problems(tmp_path, data) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("stores: [\n  - name: x\n  bad", "invalid YAML"),
        ("- just\n- a list\n", "the top level must be a mapping of fields"),
    ],
)
def test_unreadable_file_is_one_clear_problem(tmp_path: Path, text: str, expected: str) -> None:
    (line,) = problems(tmp_path, text)
    assert str(tmp_path / "config.yaml") in line
    assert expected in line


def test_missing_file_and_missing_token(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(tmp_path / "nope.yaml", environ={})
    assert info.value.problems == [f"{tmp_path / 'nope.yaml'}: config file not found"]
    lazza = {k: v for k, v in LAZZA.items() if k != "access_token"}
    assert problems(tmp_path, {"stores": [lazza]}) == [
        "stores[0].access_token: field required (or access_token_file, or a credential named "
        "'lazza-main' in $CREDENTIALS_DIRECTORY)"
    ]
    assert problems(
        tmp_path, {"stores": [{**lazza, "access_token_file": str(tmp_path / "t")}]}
    ) == [f"stores[0].access_token_file: cannot read {tmp_path / 't'}: No such file or directory"]


def test_api_token_inline_or_from_a_file_never_shown(tmp_path: Path) -> None:
    token_file = tmp_path / "api-token"
    token_file.write_text("file-token-0123456789abcdef\n", encoding="utf-8")
    settings = load_settings(
        write(tmp_path, {"server": {"api_token_file": str(token_file)}}), environ={}
    )
    token = settings.server.api_token
    assert token is not None
    assert token.get_secret_value() == "file-token-0123456789abcdef"
    assert "file-token" not in repr(settings) + str(settings)
    assert load_settings(write(tmp_path, {}), environ={}).server.api_token is None


@pytest.mark.parametrize(
    ("server", "expected"),
    [
        ({"api_token": "short"}, "server.api_token: must be at least 16 characters"),
        ({"api_token_file": "/nonexistent/token"}, "api_token_file: cannot read"),
        (
            {"api_token": "x" * 20, "api_token_file": "/nonexistent/token"},
            "server: give api_token or api_token_file, not both",
        ),
    ],
)
def test_api_token_problems_name_the_field(
    tmp_path: Path, server: dict[str, Any], expected: str
) -> None:
    (line,) = problems(tmp_path, {"server": server})
    assert expected in line
    assert "x" * 20 not in line
