"""Reading a notifier's `*_file` secret at config time, with errors that never quote it."""

from __future__ import annotations

from pathlib import Path

__all__ = ["read_secret_file"]


def read_secret_file(field: str, path: Path) -> str:
    """The stripped text of `path`; ValueError starting with `field` when it is unusable.

    Called from config validators, so a missing or empty file stops start-up with a line
    naming the field and the path, and never the content.
    """
    try:
        content = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ValueError(f"{field}: cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ValueError(f"{field}: {path} is not UTF-8 text") from None
    if not content:
        raise ValueError(f"{field}: {path} is empty")
    return content
