"""Fault injection: error responses by rate, latency, and their deterministic dice (pure decisions + RNG).

Faults apply to the Kubernetes API only, never to the emulator's control endpoints.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from tests.k8s_emulator.errors import REASONS, ApiError

_MESSAGES = {
    # What quota admission answers when its ResourceQuota update races another write.
    409: 'Operation cannot be fulfilled on resourcequotas "quota": the object has been modified; '
    "please apply your changes to the latest version and try again",
    429: "Too many requests, please try again later.",
    500: "Internal error occurred: fault injected by the emulator",
    503: "the server is currently unable to handle the request (fault injected by the emulator)",
    504: "the server was unable to return a response in the time allotted (fault injected by the emulator)",
}


@dataclass(frozen=True)
class FaultRule:
    """Answer *code* to a fraction *rate* of the requests whose verb and resource match (None: any)."""

    code: int
    rate: float
    verbs: frozenset[str] | None = None
    resources: frozenset[str] | None = None

    def __post_init__(self) -> None:
        if not 0.0 <= self.rate <= 1.0:
            raise ValueError(f"fault rate for HTTP {self.code} must be within [0, 1], got {self.rate}")
        if not 400 <= self.code <= 599:
            raise ValueError(f"fault code must be an HTTP error status (400-599), got {self.code}")

    def applies_to(self, verb: str, resource: str) -> bool:
        """True when this rule covers requests of *verb* on *resource*."""
        return (self.verbs is None or verb in self.verbs) and (
            self.resources is None or resource in self.resources
        )

    def to_json(self) -> dict[str, Any]:
        """The rule as the control API shows and accepts it."""
        return {
            "code": self.code,
            "rate": self.rate,
            "verbs": sorted(self.verbs) if self.verbs is not None else None,
            "resources": sorted(self.resources) if self.resources is not None else None,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FaultRule:
        """Parse one rule; ValueError naming what is wrong."""
        try:
            verbs, resources = data.get("verbs"), data.get("resources")
            return cls(
                int(data["code"]),
                float(data["rate"]),
                frozenset(verbs) if verbs is not None else None,
                frozenset(resources) if resources is not None else None,
            )
        except (KeyError, TypeError) as error:
            raise ValueError(
                f"a fault rule needs 'code' and 'rate' (optional 'verbs', 'resources'): {data!r}"
            ) from error


@dataclass(frozen=True)
class FaultPlan:
    """Every request-level fault in force: error rules, latency, and the Retry-After of injected 429s."""

    rules: tuple[FaultRule, ...] = ()
    latency: tuple[float, float] = (0.0, 0.0)
    """Seconds added to each request: uniform between the two bounds (equal bounds: fixed)."""
    retry_after_seconds: int = 1
    seed: int | None = None

    def __post_init__(self) -> None:
        low, high = self.latency
        if low < 0 or high < low:
            raise ValueError(f"latency bounds must satisfy 0 <= min <= max, got {self.latency}")

    def to_json(self) -> dict[str, Any]:
        """The plan as the control API shows and accepts it."""
        return {
            "rules": [rule.to_json() for rule in self.rules],
            "latency": list(self.latency),
            "retry_after_seconds": self.retry_after_seconds,
            "seed": self.seed,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FaultPlan:
        """Parse a plan: `rules`, `latency` (a number or [min, max]), `retry_after_seconds`, `seed`."""
        latency = data.get("latency") or 0.0
        bounds = (
            (float(latency), float(latency))
            if isinstance(latency, int | float)
            else (float(latency[0]), float(latency[1]))
        )
        return cls(
            tuple(FaultRule.from_json(rule) for rule in data.get("rules") or ()),
            bounds,
            int(data.get("retry_after_seconds", 1)),
            data.get("seed"),
        )


@dataclass(frozen=True)
class Decision:
    """What to do to one request: wait `delay` seconds, then fail with `error` (None: serve it)."""

    delay: float
    error: ApiError | None


def injected_error(code: int, retry_after_seconds: int) -> ApiError:
    """The error an injected fault answers with; 429 carries Retry-After and details.retryAfterSeconds."""
    if code == 429:
        return ApiError(
            429,
            _MESSAGES[429],
            details={"retryAfterSeconds": retry_after_seconds},
            headers={"Retry-After": str(retry_after_seconds)},
        )
    return ApiError(
        code, _MESSAGES.get(code, f"fault injected by the emulator (HTTP {code})"), reason=REASONS.get(code)
    )


@dataclass
class FaultInjector:
    """Rolls the dice for each API request against the current plan; reseeded whenever the plan changes."""

    plan: FaultPlan = field(default_factory=FaultPlan)
    injected: int = 0

    def __post_init__(self) -> None:
        self._rng = random.Random(self.plan.seed)  # noqa: S311 - fault dice, not cryptography

    def set_plan(self, plan: FaultPlan) -> None:
        """Replace the plan and restart the dice from its seed (deterministic runs)."""
        self.plan = plan
        self._rng = random.Random(plan.seed)  # noqa: S311 - fault dice, not cryptography

    def decide(self, verb: str, resource: str) -> Decision:
        """Latency and possibly an error for one request of *verb* on *resource*."""
        low, high = self.plan.latency
        delay = low if high == low else self._rng.uniform(low, high)
        applicable = [rule for rule in self.plan.rules if rule.applies_to(verb, resource)]
        if not applicable:
            return Decision(delay, None)
        roll = self._rng.random()
        threshold = 0.0
        for rule in applicable:
            threshold += rule.rate
            if roll < threshold:
                self.injected += 1
                return Decision(delay, injected_error(rule.code, self.plan.retry_after_seconds))
        return Decision(delay, None)
