"""Delivery claims against notifier timeouts: with the state in PostgreSQL, replicas share the
outbox, and a delivery handed to one replica is withheld from the others for
`delivery.claim_timeout`. The dispatcher starts a send only in the first half of that time,
so a send that can last longer than the other half (its notifier's `timeout`) could still be
in flight when the claim runs out, and another replica would send the event again.

Runs once the settings are valid; each line names the fields in the file.
"""

from __future__ import annotations

from bulkwatch.config.settings import Settings

__all__ = ["claim_problems"]


def claim_problems(settings: Settings) -> list[str]:
    """One line per notifier whose `timeout` is more than half `delivery.claim_timeout`, when
    the state is in PostgreSQL (SQLite is one process: nothing is claimed)."""
    if not settings.state.postgres:
        return []
    claim = settings.delivery.claim_timeout
    problems: list[str] = []
    for i, notifier in enumerate(settings.notifiers):
        timeout = getattr(notifier, "timeout", None)
        if isinstance(timeout, int | float) and 2 * timeout > claim:
            problems.append(
                f"notifiers[{i}].timeout: {timeout:g}s (notifier {notifier.name!r}) is more "
                f"than half delivery.claim_timeout ({claim:g}s): a send started late in its "
                "claim could outlast it and another replica would send the event again; set "
                f"delivery.claim_timeout to {2 * timeout:g}s or more, or lower the timeout"
            )
    return problems
