"""Garbage-collector settings for a long-lived daemon process (the `run` command applies them;
they are process-wide, so no class that tests create by the hundred touches them)."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["freeze_startup_objects", "tuned_collector"]

# A poll's objects live one round trip. At the default threshold (700 allocations) young
# collections ran so often mid-poll that objects still in use were promoted, and then walked
# again by full collections; 10,000 keeps them young.
_GEN0_THRESHOLD = 10_000


@contextmanager
def tuned_collector() -> Iterator[None]:
    """Raise the young-generation threshold for the duration; restore it (and unfreeze what
    `freeze_startup_objects` froze, which may be garbage by then) on exit."""
    before = gc.get_threshold()
    gen0, gen1, gen2 = before
    gc.set_threshold(max(gen0, _GEN0_THRESHOLD), gen1, gen2)
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)


def freeze_startup_objects() -> None:
    """Once the daemon runs: start-up leaves ~0.5 M long-lived objects at 10,000 stores
    (settings, sources, jobs, metric series), and every full collection walked them all with
    the event loop held. Frozen, the collector skips them: they live as long as the process."""
    gc.collect()
    gc.freeze()
