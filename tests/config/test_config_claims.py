"""`delivery.claim_timeout`: its default and floor, and, with the state in PostgreSQL (replicas
share the outbox), a notifier timeout longer than half of it refused, naming both fields."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from bulkwatch.config import ConfigError, load_settings

STORE: dict[str, Any] = {
    "name": "lazza-main",
    "platform": "shoplazza",
    "domain": "mystore",
    "access_token": "tok-1",
}
POSTGRES = {"url": "postgresql://bw@db.internal:5432/bulkwatch"}


def config(tmp_path: Path, **data: Any) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"stores": [STORE], **data}))
    return path


def problems(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_settings(path, environ={})
    return info.value.problems


def hook(name: str, timeout: str) -> dict[str, Any]:
    return {"name": name, "type": "webhook", "url": "https://example.com/h", "timeout": timeout}


def test_the_claim_timeout_defaults_to_five_minutes_and_takes_units(tmp_path: Path) -> None:
    assert load_settings(config(tmp_path), environ={}).delivery.claim_timeout == 300
    settings = load_settings(config(tmp_path, delivery={"claim_timeout": "2m"}), environ={})
    assert settings.delivery.claim_timeout == 120


def test_a_claim_timeout_under_five_seconds_is_refused(tmp_path: Path) -> None:
    (line,) = problems(config(tmp_path, delivery={"claim_timeout": "4s"}))
    assert line.startswith("delivery.claim_timeout:"), line
    assert "greater than or equal to 5" in line


def test_a_notifier_timeout_over_half_the_claim_is_refused_with_postgresql(
    tmp_path: Path,
) -> None:
    path = config(
        tmp_path,
        state=POSTGRES,
        delivery={"claim_timeout": "1m"},
        notifiers=[hook("fast", "30s"), hook("slow", "45s")],
    )
    (line,) = problems(path)
    assert line.startswith("notifiers[1].timeout: 45s (notifier 'slow')"), line
    assert "more than half delivery.claim_timeout (60s)" in line
    assert "set delivery.claim_timeout to 90s or more" in line


def test_the_same_timeouts_are_fine_with_sqlite(tmp_path: Path) -> None:
    # One process: nothing is claimed, so nothing can run out under a send.
    path = config(tmp_path, delivery={"claim_timeout": "1m"}, notifiers=[hook("slow", "45s")])
    assert load_settings(path, environ={}).delivery.claim_timeout == 60


def test_the_defaults_fit_every_notifier_s_default_timeout(tmp_path: Path) -> None:
    notifiers = [
        {"name": "hook", "type": "webhook", "url": "https://example.com/h"},
        {"name": "cmd", "type": "command", "argv": ["/bin/true"]},
        {
            "name": "mail",
            "type": "email",
            "host": "smtp.example.com",
            "from": "a@example.com",
            "to": ["b@example.com"],
        },
    ]
    settings = load_settings(config(tmp_path, state=POSTGRES, notifiers=notifiers), environ={})
    assert [n.name for n in settings.notifiers] == ["hook", "cmd", "mail"]
