"""`ConfigError`, and how a pydantic `ValidationError` becomes its lines.

Each line names the field it is about the way a config file spells it (`stores[1].handle`), so
a reader can find it without knowing how the models are built.
"""

from __future__ import annotations

from pydantic import ValidationError

__all__ = ["ConfigError", "validation_problems"]


class ConfigError(Exception):
    """Invalid configuration: `problems` holds one line per problem, each naming its field."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def _location(loc: tuple[int | str, ...]) -> str:
    out = ""
    for i, part in enumerate(loc):
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in {"shoplazza", "shopline"} and i > 0 and isinstance(loc[i - 1], int):
            continue  # the discriminated union's tag adds nothing for the reader
        elif "function-" in part or part.startswith(("function", "json-or-python")):
            continue
        else:
            out += f".{part}" if out else part
    return out


def validation_problems(error: ValidationError, prefix: str = "") -> list[str]:
    """One `field: problem` line per error; `prefix` goes before each field's path."""
    lines = []
    for err in error.errors(include_url=False, include_input=False):
        loc = _location(tuple(err["loc"]))
        msg = str(err["msg"])
        msg = msg.removeprefix("Value error, ")
        if err["type"] == "missing":
            msg = "field required"
        elif err["type"] == "extra_forbidden":
            msg = "unknown field"
        elif err["type"] == "union_tag_invalid":
            msg = "platform must be 'shoplazza' or 'shopline'"
        elif err["type"] == "union_tag_not_found":
            loc = f"{loc}.platform" if loc else "platform"
            msg = "field required ('shoplazza' or 'shopline')"
        msg = msg[:1].lower() + msg[1:]
        where = f"{prefix}{loc}" if loc else (prefix.rstrip(".") or "config")
        lines.append(f"{where}: {msg}")
    return lines
