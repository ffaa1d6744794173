"""Which config file a command reads, and whether what it configures watches anything.

The file is the first of: `--config FILE`, `$BULKWATCH_CONFIG`, `./bulkwatch.yaml`,
`/etc/bulkwatch/config.yaml`. Without any, the settings come from the defaults and the
`BULKWATCH_*` environment alone. A config that watches no store is an error for the commands
that poll or report on stores (`nothing_to_watch`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from bulkwatch.config.settings import Settings

__all__ = ["SEARCHED", "ConfigFile", "find_config", "nothing_to_watch"]

# Looked for, in this order, when neither --config nor $BULKWATCH_CONFIG names a file.
SEARCHED: tuple[Path, ...] = (Path("bulkwatch.yaml"), Path("/etc/bulkwatch/config.yaml"))


@dataclass(frozen=True, slots=True)
class ConfigFile:
    """The config file a command reads (None: none given, none found) and how it was chosen."""

    path: Path | None
    origin: str  # "--config", "$BULKWATCH_CONFIG", "found" or "none"

    @property
    def searched(self) -> bool:
        """True when the file was found by looking, not named by the user."""
        return self.origin == "found"

    def describe(self) -> str:
        """`bulkwatch.yaml (found in the working directory)`, for messages."""
        if self.path is None:
            return "no config file"
        if self.origin == "found":
            where = "the working directory" if not self.path.is_absolute() else "its default place"
            return f"{self.path} (found in {where})"
        return f"{self.path} (from {self.origin})"


def find_config(flag: Path | None, environ: Mapping[str, str]) -> ConfigFile:
    """The config file named by `flag` or `$BULKWATCH_CONFIG`, else the first of `SEARCHED`
    that exists. A named file is returned even when missing: loading it reports that."""
    if flag is not None:
        return ConfigFile(flag, "--config")
    if environ.get("BULKWATCH_CONFIG"):
        return ConfigFile(Path(environ["BULKWATCH_CONFIG"]), "$BULKWATCH_CONFIG")
    for candidate in SEARCHED:
        if candidate.is_file():
            return ConfigFile(candidate, "found")
    return ConfigFile(None, "none")


def nothing_to_watch(settings: Settings, config: ConfigFile) -> str | None:
    """One line when the settings watch no store (none configured, or all disabled)."""
    if any(store.enabled for store in settings.stores):
        return None
    if config.path is None:
        searched = " or ".join(f"./{p}" if not p.is_absolute() else str(p) for p in SEARCHED)
        return (
            "no config file: give --config FILE or set $BULKWATCH_CONFIG, or create "
            f"{searched} (config.example.yaml documents every field)"
        )
    if settings.stores:
        return (
            f"stores: every store in {config.path} is disabled (enabled: false); nothing to watch"
        )
    return (
        f"stores: {config.path} configures no store; add one "
        "(config.example.yaml documents the fields)"
    )
