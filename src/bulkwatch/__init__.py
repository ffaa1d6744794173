"""bulkwatch: watch Shoplazza and Shopline background tasks and deliver every change."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
