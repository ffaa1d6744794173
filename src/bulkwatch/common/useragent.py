"""The User-Agent every request of bulkwatch carries (set once, on each HTTP session)."""

from __future__ import annotations

from bulkwatch import __version__

__all__ = ["USER_AGENT"]

USER_AGENT = f"bulkwatch/{__version__}"
