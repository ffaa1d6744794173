"""The command line: argument parsing (`main`) and one function per command (`commands`)."""

from __future__ import annotations

from bulkwatch.cli.main import main

__all__ = ["main"]
