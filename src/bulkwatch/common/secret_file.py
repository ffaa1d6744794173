"""Reading a `*_file` secret at config time, with errors that never quote it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from pydantic import BaseModel, SecretStr

__all__ = ["fill_secret_from_file", "read_secret_file"]


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


def fill_secret_from_file(
    model: BaseModel, field: str, check: Callable[[str], object] | None = None
) -> None:
    """For a model with a secret `field` and a path `<field>_file`: when the file is given,
    refuse the secret beside it, read the file, run `check` on its text (its ValueError is
    reported naming the file), and keep the text as the `SecretStr` `field`.

    Call it from a model validator: the models are frozen, and this sets the field once,
    during validation, before anyone sees the model.
    """
    file_field = f"{field}_file"
    path = getattr(model, file_field)
    if path is None:
        return
    if getattr(model, field) is not None:
        raise ValueError(f"give {field} or {file_field}, not both")
    text = read_secret_file(file_field, path)
    if check is not None:
        try:
            check(text)
        except ValueError as exc:
            raise ValueError(f"{file_field}: the content of {path} {exc}") from None
    object.__setattr__(model, field, SecretStr(text))
