"""Secrets the config holds beside the tokens are registered with the redactor when it is
loaded: a Shopline app's secret (inline or from a file) and the password in a PostgreSQL
`state.url` (as written, percent-decoded, or a `password=` parameter)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from bulkwatch.common.redact import REDACTED, redact
from bulkwatch.common.urls import url_passwords
from bulkwatch.config import load_settings

LINE: dict[str, Any] = {
    "name": "line-main",
    "platform": "shopline",
    "handle": "open001",
    "access_token": "tok-line-9f8e7d",
    "app_key": "key-1",
}


def _load(tmp_path: Path, data: dict[str, Any]) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    load_settings(path, environ={})


def test_a_shopline_app_secret_is_redacted_inline_or_from_a_file(tmp_path: Path) -> None:
    inline, in_file = "app-secret-inline-3c4d5e", "app-secret-file-6f7a8b"
    (tmp_path / "secret").write_text(in_file + "\n")
    assert inline in redact(f"said {inline}")  # not a secret until a config names it
    _load(
        tmp_path,
        {
            "stores": [
                {**LINE, "app_secret": inline},
                {**LINE, "name": "line-2", "app_secret_file": str(tmp_path / "secret")},
            ]
        },
    )
    for secret in (inline, in_file):
        shown = redact(f'the platform said: "bad sign for {secret}"')
        assert secret not in shown
        assert REDACTED in shown


def test_the_password_in_a_postgres_state_url_is_redacted(tmp_path: Path) -> None:
    written = "pg%2Fpass-word-5e6f"  # percent-encoded in the URL: "pg/pass-word-5e6f"
    param = "ssl-pass-7a8b9c"
    url = f"postgresql://bulkwatch:{written}@127.0.0.1:5432/bw?sslpassword={param}"
    assert "pg/pass-word-5e6f" in redact("pg/pass-word-5e6f")
    _load(tmp_path, {"stores": [{**LINE, "app_secret": "s-1a2b3c"}], "state": {"url": url}})
    for secret in (written, "pg/pass-word-5e6f", param):
        assert secret not in redact(f"connection failed: password {secret} refused")


def test_url_passwords_finds_what_without_password_hides() -> None:
    assert url_passwords("postgresql://u:p%40ss-123@h/db") == ["p%40ss-123", "p@ss-123"]
    assert url_passwords("postgresql://u@h/db?password=sec-ret-1&x=1") == ["sec-ret-1"]
    assert url_passwords("postgresql://u@h/db") == []
    assert url_passwords("sqlite:///var/lib/bulkwatch.db") == []
