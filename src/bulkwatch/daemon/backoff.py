"""Per-store backoff after failed polls: when may the store's next poll go out?

A failed poll (of any endpoint) makes the whole store wait, because what fails is nearly always
the store's (its token, its frozen account, its security block, its rate limit, the platform's
servers), and hammering it helps nobody. The scheduled jobs keep firing at their interval; a
job that finds its store waiting returns at once, without a request. A success resets it.

How long to wait depends on why the poll failed:

- auth (401, Shoplazza's 400 for bad credentials) and frozen (402): `auth_retry`, a slow
  retry; a person must act. A new token (rotated file) ends the wait at once.
- blocked (423, 433-436): `blocked_retry`, a long backoff.
- rate limited (429): the platform's `Retry-After` when it sent one (up to `blocked_retry`),
  otherwise the exponential backoff below; any other failure that carries a `Retry-After`
  waits at least that long too.
- everything else (5xx, network, timeout, invalid bodies, other 4xx): exponential from the
  store's interval, interval x 2^(n-1) after n failed rounds, capped at `backoff_max`.

Jitter keeps 10,000 stores that failed together (a platform outage) from coming back in the
same second: exponential waits are uniform in [d/2, d] ("equal jitter", as for deliveries),
fixed ones in [0.75 d, d] and Retry-After ones in [r, 1.1 r].

State is one small object per store that is currently failing, in memory only: a restart
forgets it and polls every store once, which costs one request per failing store.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from bulkwatch.common.backoff import equal_jitter
from bulkwatch.config import Defaults
from bulkwatch.model import FailureKind, PollError

__all__ = ["Backoff"]

_SLOW = frozenset({FailureKind.AUTH, FailureKind.FROZEN})


@dataclass(slots=True)
class StoreBackoff:
    """A failing store: how many rounds failed, and until when its polls are skipped."""

    failures: int
    not_before: datetime
    failed_at: datetime
    kind: FailureKind
    credentials: int  # the source's credentials version when the failure happened


class Backoff:
    """Backoff state of every failing store; stores that succeed have no entry."""

    def __init__(self, defaults: Defaults, rng: random.Random | None = None) -> None:
        self._defaults = defaults
        self._rng = rng if rng is not None else random.Random()  # noqa: S311 - jitter only
        self._stores: dict[str, StoreBackoff] = {}
        longest = max(defaults.backoff_max, defaults.auth_retry, defaults.blocked_retry)
        self._longest = timedelta(seconds=longest * 1.1)  # jitter adds at most 10 %

    def until(self, store: str) -> datetime | None:
        """When the store's polls may go out again; None when it is not failing."""
        state = self._stores.get(store)
        return None if state is None else state.not_before

    def waiting(
        self, store: str, now: datetime, credentials: Callable[[], int] | None = None
    ) -> bool:
        """True while the store's polls are to be skipped. `credentials` gives the source's
        credentials version: a new token ends the wait after an auth failure."""
        state = self._stores.get(store)
        if state is None or now >= state.not_before:
            return False
        if state.not_before - now > self._longest:
            return False  # the wall clock stepped back: no wait may outlast its longest form
        if (
            state.kind is FailureKind.AUTH
            and credentials is not None
            and credentials() != state.credentials
        ):
            state.not_before = now  # one poll goes out with the new token
            return False
        return True

    def failed(
        self,
        store: str,
        error: PollError,
        *,
        interval: float,
        started: datetime,
        now: datetime,
        credentials: int = 0,
    ) -> float:
        """Record a failed poll that started at `started`; return the seconds to wait."""
        state = self._stores.get(store)
        # A poll that was already on its way when another endpoint's failure was recorded
        # belongs to the same round: it may lengthen the wait but not double it again.
        same_round = state is not None and started < state.failed_at
        failures = 1 if state is None else state.failures + (0 if same_round else 1)
        not_before = now + timedelta(seconds=self.delay(error, failures, interval))
        if state is not None and same_round and state.not_before >= not_before:
            return max(0.0, (state.not_before - now).total_seconds())  # the longer wait stands
        self._stores[store] = StoreBackoff(failures, not_before, now, error.kind, credentials)
        return max(0.0, (not_before - now).total_seconds())

    def succeeded(self, store: str) -> None:
        """Forget a store's failures."""
        self._stores.pop(store, None)

    def configure(self, defaults: Defaults) -> None:
        """Wait by these settings from now on (a reload changed them)."""
        self._defaults = defaults

    def delay(self, error: PollError, failures: int, interval: float) -> float:
        """Seconds to wait after the `failures`-th failed round ending with `error`."""
        d, rng = self._defaults, self._rng
        if error.kind in _SLOW:
            return d.auth_retry * rng.uniform(0.75, 1.0)
        if error.kind is FailureKind.BLOCKED:
            return d.blocked_retry * rng.uniform(0.75, 1.0)
        exponential = equal_jitter(interval, d.backoff_max, failures, rng)
        if error.retry_after is None:
            return exponential
        told = min(error.retry_after, d.blocked_retry) * rng.uniform(1.0, 1.1)
        # A 429 tells exactly when to come back; for anything else it is a lower bound.
        return told if error.kind is FailureKind.RATE_LIMITED else max(told, exponential)
