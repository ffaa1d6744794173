"""Per-store backoff after failures, and `store.down` at once for failures a person must fix."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from bulkwatch.config import Defaults
from bulkwatch.daemon.backoff import Backoff
from bulkwatch.model import (
    EndpointKey,
    EndpointState,
    EndpointView,
    FailureKind,
    Platform,
    PollError,
    StoreHealth,
)
from bulkwatch.tracking.tracker import Policy, judge_failure

T0 = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
KEY = EndpointKey("line-1", Platform.SHOPLINE, "QUERY")
DEFAULTS = Defaults(backoff_max=900, auth_retry=600, blocked_retry=1800)


def error(kind: FailureKind, retry_after: float | None = None) -> PollError:
    return PollError(kind, "it failed", key=KEY, retry_after=retry_after)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


@pytest.mark.parametrize("seed", range(5))
def test_transient_failures_back_off_exponentially_from_the_interval_up_to_the_cap(
    seed: int,
) -> None:
    backoff = Backoff(DEFAULTS, random.Random(seed))
    for n in range(1, 10):
        ceiling = min(900.0, 60.0 * 2 ** (n - 1))
        delay = backoff.delay(error(FailureKind.SERVER), n, interval=60)
        assert ceiling / 2 <= delay <= ceiling  # equal jitter: never less than half


@pytest.mark.parametrize(
    ("kind", "base"),
    [(FailureKind.AUTH, 600.0), (FailureKind.FROZEN, 600.0), (FailureKind.BLOCKED, 1800.0)],
)
def test_auth_frozen_and_blocked_wait_their_slow_retry_whatever_the_count(
    kind: FailureKind, base: float
) -> None:
    backoff = Backoff(DEFAULTS, random.Random(1))
    delays = [backoff.delay(error(kind), n, interval=30) for n in (1, 2, 8)]
    assert all(0.75 * base <= d <= base for d in delays)


def test_a_429_waits_exactly_as_long_as_retry_after_says_within_a_cap() -> None:
    backoff = Backoff(DEFAULTS, random.Random(2))
    assert 7 <= backoff.delay(error(FailureKind.RATE_LIMITED, 7), 5, interval=60) <= 7.7
    huge = backoff.delay(error(FailureKind.RATE_LIMITED, 86400), 1, interval=60)
    assert 1800 <= huge <= 1980  # never longer than blocked_retry (+ jitter)
    without = backoff.delay(error(FailureKind.RATE_LIMITED), 2, interval=60)
    assert 60 <= without <= 120  # no Retry-After: the ordinary exponential backoff


def test_retry_after_on_a_server_error_is_a_lower_bound() -> None:
    backoff = Backoff(DEFAULTS, random.Random(3))
    assert backoff.delay(error(FailureKind.SERVER, 300), 1, interval=60) >= 300
    assert backoff.delay(error(FailureKind.SERVER, 1), 5, interval=60) >= 480


def test_a_store_waits_until_not_before_and_a_success_resets_it() -> None:
    backoff = Backoff(DEFAULTS, random.Random(4))
    wait = backoff.failed("s", error(FailureKind.SERVER), interval=60, started=T0, now=T0)
    assert 30 <= wait <= 60
    assert backoff.waiting("s", at(wait - 1))
    assert not backoff.waiting("s", at(wait))
    assert not backoff.waiting("other", T0)  # per store
    second = backoff.failed(
        "s", error(FailureKind.SERVER), interval=60, started=at(wait), now=at(wait)
    )
    assert 60 <= second <= 120
    backoff.succeeded("s")
    assert not backoff.waiting("s", at(wait))
    later = at(wait + 1)
    third = backoff.failed("s", error(FailureKind.SERVER), interval=60, started=later, now=later)
    assert 30 <= third <= 60  # the count started again


def test_failures_of_polls_already_in_flight_count_as_the_same_round() -> None:
    backoff = Backoff(DEFAULTS, random.Random(5))
    backoff.failed("s", error(FailureKind.SERVER), interval=60, started=T0, now=at(1))
    # MUTATION started at T0 too, before QUERY's failure was recorded at +1 s.
    second = backoff.failed("s", error(FailureKind.SERVER), interval=60, started=T0, now=at(2))
    assert second < 60  # a first round's wait (a second round's is 60 to 120 s)
    later = at(2 + second)
    third = backoff.failed("s", error(FailureKind.SERVER), interval=60, started=later, now=later)
    assert 60 <= third <= 120  # the next round is the second


def test_a_shorter_failure_in_the_same_round_keeps_the_longer_wait_and_its_kind() -> None:
    backoff = Backoff(DEFAULTS, random.Random(8))
    backoff.failed("s", error(FailureKind.AUTH), interval=60, started=T0, now=at(1))
    wait = backoff.failed("s", error(FailureKind.SERVER), interval=60, started=T0, now=at(2))
    assert wait >= 0.75 * 600 - 2
    assert not backoff.waiting("s", at(60), lambda: 1)  # still an auth wait: a new token ends it


def test_a_new_token_ends_the_wait_after_an_auth_failure() -> None:
    backoff = Backoff(DEFAULTS, random.Random(6))
    backoff.failed("s", error(FailureKind.AUTH), interval=60, started=T0, now=T0, credentials=1)
    assert backoff.waiting("s", at(60), lambda: 1)
    assert not backoff.waiting("s", at(61), lambda: 2)  # the token file was rotated
    # Other kinds do not care about the token.
    backoff.failed("t", error(FailureKind.BLOCKED), interval=60, started=T0, now=T0)
    assert backoff.waiting("t", at(60), lambda: 2)


def test_a_wall_clock_stepping_back_does_not_stretch_a_wait() -> None:
    backoff = Backoff(DEFAULTS, random.Random(7))
    backoff.failed("s", error(FailureKind.BLOCKED), interval=60, started=T0, now=T0)
    assert backoff.waiting("s", at(60))
    assert not backoff.waiting("s", at(-3 * 3600))  # NTP stepped the clock back three hours


# --- store.down at once -----------------------------------------------------------------------


def view(down: bool = False) -> EndpointView:
    return EndpointView(StoreHealth("line-1", Platform.SHOPLINE, down=down), EndpointState(KEY), {})


@pytest.mark.parametrize("kind", [FailureKind.AUTH, FailureKind.FROZEN, FailureKind.BLOCKED])
def test_failures_a_person_must_fix_take_the_store_down_at_the_first_one(
    kind: FailureKind,
) -> None:
    outcome = judge_failure(view(), error(kind), T0, Policy(down_after=3))
    [down] = outcome.events
    assert down.type == "bulkwatch.store.down"
    assert down.data["store"] == "line-1"
    assert down.data["kind"] == kind.value
    assert outcome.health.down
    # Already down: no second event.
    assert judge_failure(view(down=True), error(kind), T0, Policy(down_after=3)).events == []


@pytest.mark.parametrize(
    "kind",
    [FailureKind.SERVER, FailureKind.TIMEOUT, FailureKind.RATE_LIMITED, FailureKind.NETWORK],
)
def test_transient_failures_wait_for_down_after(kind: FailureKind) -> None:
    assert judge_failure(view(), error(kind), T0, Policy(down_after=3)).events == []
