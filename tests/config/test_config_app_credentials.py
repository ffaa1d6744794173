"""A Shopline store's app credentials: both or neither, the secret inline or from a file, and
never shown."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from bulkwatch.cli.commands.checks import summarise
from bulkwatch.config import ConfigError, ShoplineStore, load_settings
from bulkwatch.config.discovery import ConfigFile

SECRET = "app-SECRET-4d5e6f"
LINE: dict[str, Any] = {
    "name": "line-main",
    "platform": "shopline",
    "handle": "open001",
    "access_token": "tok-2",
}


def load(tmp_path: Path, **fields: Any) -> ShoplineStore:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"stores": [{**LINE, **fields}]}))
    settings = load_settings(path, environ={})
    [store] = settings.stores
    assert isinstance(store, ShoplineStore)
    return store


def test_without_credentials_nothing_is_renewed(tmp_path: Path) -> None:
    assert load(tmp_path).app_credentials() is None


def test_the_secret_inline_or_from_a_file_and_never_shown(tmp_path: Path) -> None:
    inline = load(tmp_path, app_key="key-1", app_secret=SECRET)
    assert inline.app_credentials() == ("key-1", SECRET)
    secret_file = tmp_path / "app-secret"
    secret_file.write_text(SECRET + "\n")
    from_file = load(tmp_path, app_key="key-1", app_secret_file=str(secret_file))
    assert from_file.app_credentials() == ("key-1", SECRET)
    assert SECRET not in repr(from_file)
    path = tmp_path / "config.yaml"
    summary = summarise(load_settings(path, environ={}), ConfigFile(path, "--config"))
    assert "refreshed with the app's credentials" in summary
    assert SECRET not in summary
    assert "key-1" not in summary


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"app_key": "key-1"}, "app_key needs app_secret (or app_secret_file)"),
        ({"app_secret": SECRET}, "app_secret needs app_key"),
        ({"app_key": "key-1", "app_secret": "  "}, "app_secret is empty"),
        (
            {"app_key": "key-1", "app_secret": SECRET, "app_secret_file": "/nonexistent"},
            "give app_secret or app_secret_file, not both",
        ),
        ({"app_key": "key-1", "app_secret_file": "/nonexistent/s"}, "app_secret_file: cannot read"),
    ],
)
def test_half_the_credentials_is_a_clear_error(
    tmp_path: Path, fields: dict[str, Any], expected: str
) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"stores": [{**LINE, **fields}]}))
    with pytest.raises(ConfigError) as info:
        load_settings(path, environ={})
    [problem] = info.value.problems
    assert problem.startswith("stores[0]")
    assert expected in problem
    assert SECRET not in problem
