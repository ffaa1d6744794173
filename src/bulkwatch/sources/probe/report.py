"""What `bulkwatch probe` found: one `Check` per behaviour of one store's platform."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["Check", "StoreReport", "Verdict"]

# ok: bulkwatch's configuration suits what was seen; warn: it works, but look (not a failure);
# fail: it does not suit (the probe exits 1); skip: not checked, an earlier check failed.
Verdict = Literal["ok", "warn", "fail", "skip"]


@dataclass(frozen=True, slots=True)
class Check:
    """One behaviour: `value` is what was observed, in a word a script can compare (the
    variant's name where there is one); `observed` says it in a sentence; `advice` says what
    to change when it does not suit."""

    name: str
    verdict: Verdict
    value: Any
    observed: str
    advice: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "check": self.name,
            "verdict": self.verdict,
            "value": self.value,
            "observed": self.observed,
            "advice": self.advice,
        }


@dataclass(slots=True)
class StoreReport:
    """Every check of one store, in the order they are printed."""

    store: str
    platform: str
    base_url: str
    checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Whether everything suits (warnings and skipped checks aside)."""
        return all(c.verdict != "fail" for c in self.checks)

    def add(self, name: str, verdict: Verdict, value: Any, observed: str, advice: str = "") -> None:
        self.checks.append(Check(name, verdict, value, observed, advice))

    def skip(self, *names: str, why: str) -> None:
        """Checks that could not run, each saying why."""
        for name in names:
            self.add(name, "skip", None, f"not checked: {why}")

    def check(self, name: str) -> Check:
        """The check called `name`; KeyError when there is none."""
        for c in self.checks:
            if c.name == name:
                return c
        raise KeyError(name)

    def as_dict(self) -> dict[str, Any]:
        return {
            "store": self.store,
            "platform": self.platform,
            "base_url": self.base_url,
            "ok": self.ok,
            "checks": [c.as_dict() for c in self.checks],
        }
