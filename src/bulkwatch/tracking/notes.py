"""Endpoint notes: what a poll learnt of its endpoint that an operator must be told, beside the
events. Pure, like the tracker: a function of the poll result and its outcome.

- `list`: a paged list longer than the poll read; tasks beyond what it read are not watched.
- `no_task`: an endpoint answering 404 that has never shown a task, which is what a wrong path
  or API version looks like too.

An empty value means "nothing to say" (the note is removed).
"""

from __future__ import annotations

from bulkwatch.model import PollOutcome, PollResult

__all__ = ["NOTE_NAMES", "endpoint_notes"]

NOTE_NAMES = ("list", "no_task")


def endpoint_notes(result: PollResult, outcome: PollOutcome) -> dict[str, str]:
    """Every note of the endpoint after this poll (empty values: nothing to say)."""
    notes = dict.fromkeys(NOTE_NAMES, "")
    listing = result.listing
    if listing is not None and not listing.complete:
        total = f"{listing.length}" if listing.length is not None else f"more than {listing.read}"
        notes["list"] = (
            f"the list holds {total} tasks and a poll reads {listing.read} (order: "
            f"{listing.order}); the others are not watched: raise page_limit or max_pages"
        )
    never_shown = outcome.endpoint.current_task_id is None
    if result.exclusive and never_shown and (result.no_task or "").startswith("404"):
        notes["no_task"] = (
            f"answers {result.no_task} and has never shown a task: fine if none ever ran, "
            "otherwise check base_url and api_version"
        )
    return notes
