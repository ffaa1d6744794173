"""`load_settings`: the YAML file, the `BULKWATCH_*` environment and the secret files, validated
once into `Settings`.

It raises `ConfigError` holding one readable line per problem, each naming the field
(`stores[1].handle: field required`). Its steps live beside this module: `notifiers` (each
notifier by its type), `filters` (notifier globs that match nothing), `claims` (notifier
timeouts a delivery claim cannot cover), `tokens` (token files) and `errors` (the error and
its lines).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from bulkwatch.common.redact import register_secrets
from bulkwatch.config.claims import claim_problems
from bulkwatch.config.errors import ConfigError, validation_problems
from bulkwatch.config.filters import filter_problems
from bulkwatch.config.notifiers import validate_notifiers
from bulkwatch.config.secrets import secrets_of
from bulkwatch.config.settings import Settings
from bulkwatch.config.tokens import resolve_tokens

__all__ = ["load_settings"]


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([f"{path}: config file not found"]) from None
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read config file: {exc.strerror}"]) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError([f"{path}:{where}: invalid YAML: {problem}"]) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError([f"{path}: the top level must be a mapping of fields"])
    return data


def load_settings(
    path: Path | str | None = None, *, environ: Mapping[str, str] | None = None
) -> Settings:
    """Read, merge and validate the configuration; raise `ConfigError` on any problem."""
    env = os.environ if environ is None else environ
    if path is None and env.get("BULKWATCH_CONFIG"):
        path = env["BULKWATCH_CONFIG"]
    data = _read_yaml(Path(path)) if path is not None else {}
    problems: list[str] = []
    if "notifiers" in data:
        notifiers, problems = validate_notifiers(data["notifiers"])
        data = {**data, "notifiers": notifiers}
    try:
        settings = Settings(**data)
    except ValidationError as exc:
        problems = validation_problems(exc) + problems
    if problems:
        raise ConfigError(problems)
    problems = filter_problems(settings) + claim_problems(settings)
    try:
        settings = resolve_tokens(settings, env)
    except ConfigError as exc:
        problems = exc.problems + problems
    if problems:
        raise ConfigError(problems)
    # From here on, none of its secrets leaves the process (logs, stored errors, output).
    register_secrets(secrets_of(settings))
    return settings
