"""Each store's access token: given inline, read from its file, or a systemd credential.

Runs once the settings are valid, so every problem it finds is about a token that cannot be
had; the lines name the store's index (`stores[0].access_token_file: ...`), never a token.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from pydantic import SecretStr

from bulkwatch.config.errors import ConfigError
from bulkwatch.config.settings import Settings, ShoplazzaStore, ShoplineStore

__all__ = ["resolve_tokens"]


def resolve_tokens(settings: Settings, environ: Mapping[str, str]) -> Settings:
    """Fill each store's token from its file or `$CREDENTIALS_DIRECTORY/<name>`."""
    cred_dir = environ.get("CREDENTIALS_DIRECTORY")
    problems: list[str] = []
    stores: list[ShoplazzaStore | ShoplineStore] = []
    for i, store in enumerate(settings.stores):
        path = store.access_token_file
        if store.access_token is None and path is None and cred_dir:
            candidate = Path(cred_dir) / store.name
            if candidate.is_file():
                path = candidate
        if store.access_token is None and path is None:
            problems.append(
                f"stores[{i}].access_token: field required (or access_token_file, "
                f"or a credential named {store.name!r} in $CREDENTIALS_DIRECTORY)"
            )
            stores.append(store)
            continue
        if path is not None:
            try:
                token = path.read_text(encoding="utf-8").strip()
            except OSError as exc:
                problems.append(
                    f"stores[{i}].access_token_file: cannot read {path}: {exc.strerror}"
                )
                stores.append(store)
                continue
            if not token:
                problems.append(f"stores[{i}].access_token_file: {path} is empty")
            stores.append(
                store.model_copy(
                    update={"access_token": SecretStr(token), "access_token_file": path}
                )
            )
            continue
        stores.append(store)
    if problems:
        raise ConfigError(problems)
    return settings.model_copy(update={"stores": stores})
