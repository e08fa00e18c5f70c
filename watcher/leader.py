"""Leader election through a ``coordination.k8s.io/v1`` Lease, as client-go's leaderelection does it.

- A candidate takes the Lease when it does not exist (create; a 409 means another was faster), when it
  holds it already, when it has no holder (released), or when it has seen the Lease **unchanged** for
  its ``leaseDurationSeconds``. Expiry is judged by this process's monotonic clock from the moment it
  last saw the Lease change, never by comparing the holder's ``renewTime`` with the local wall clock,
  so clock skew between replicas cannot make two leaders.
- Every write carries the resourceVersion it read (optimistic concurrency): of two candidates, the
  slower one gets 409 and stays a follower.
- The leader renews every ``renew_period``. It steps down when the Lease shows another holder, or when
  it has not managed to renew for ``lease_duration - renew_period`` (before any follower can consider
  the Lease expired).
- On a clean stop the leader releases the Lease (no holder), so a standby takes over at once.

``decide`` is the pure rule; ``LeaderElector`` runs it against a ``LeaseApi`` (the cluster adapter).
"""

from __future__ import annotations

import asyncio
import enum
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import structlog

from dispatcher.domain import kube
from dispatcher.domain.constants import LABEL_MANAGED_BY, MANAGED_BY
from dispatcher.domain.errors import BucketrunError

_log = structlog.get_logger(__name__)


class LeaseApi(Protocol):
    """The Lease calls: ``dispatcher.adapters.kube.lease.Leases`` (a fake in tests)."""

    async def read_lease(self, name: str) -> dict[str, Any] | None:
        """The Lease, or None when it does not exist."""
        ...

    async def create_lease(self, doc: Mapping[str, Any]) -> dict[str, Any] | None:
        """Create it; None when it exists already."""
        ...

    async def replace_lease(self, doc: Mapping[str, Any]) -> dict[str, Any] | None:
        """Replace it (resourceVersion precondition); None on conflict."""
        ...


class Decision(enum.Enum):
    """What a candidate does with the Lease it read."""

    TAKE = "take"
    """Write it with this candidate as holder (renewal included)."""
    FOLLOW = "follow"
    """Someone else holds a live Lease: wait."""


def micro_time(moment: datetime) -> str:
    """A ``MicroTime`` as the API writes it: UTC with microseconds, ``Z``."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def holder_of(lease: Mapping[str, Any] | None) -> str | None:
    """The Lease's holder identity, or None when it has none."""
    holder = ((lease or {}).get("spec") or {}).get("holderIdentity")
    return holder if isinstance(holder, str) and holder else None


def decide(
    lease: Mapping[str, Any], identity: str, *, unchanged_for: float, default_duration: float
) -> Decision:
    """Whether *identity* may write the Lease it has seen unchanged for *unchanged_for* seconds."""
    holder = holder_of(lease)
    if holder is None or holder == identity:
        return Decision.TAKE
    duration = (lease.get("spec") or {}).get("leaseDurationSeconds")
    if not isinstance(duration, int | float) or isinstance(duration, bool) or duration <= 0:
        duration = default_duration
    return Decision.TAKE if unchanged_for >= duration else Decision.FOLLOW


def claimed(
    name: str, identity: str, duration: float, now: datetime, previous: Mapping[str, Any] | None
) -> dict[str, Any]:
    """The Lease document that makes *identity* its holder (renewing it if it held it already)."""
    spec = dict((previous or {}).get("spec") or {})
    metadata: dict[str, Any] = dict(kube.meta(previous or {}))
    metadata.setdefault("name", name)
    metadata.setdefault("labels", {LABEL_MANAGED_BY: MANAGED_BY})
    stamp = micro_time(now)
    if spec.get("holderIdentity") != identity:
        spec["acquireTime"] = stamp
        transitions = spec.get("leaseTransitions")
        spec["leaseTransitions"] = (transitions if isinstance(transitions, int) else 0) + (
            1 if previous is not None else 0
        )
    spec["holderIdentity"] = identity
    spec["leaseDurationSeconds"] = max(1, round(duration))
    spec["renewTime"] = stamp
    return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": metadata, "spec": spec}


@dataclass
class LeaderStatus:
    """What the elector knows (for logs and metrics)."""

    is_leader: bool = False
    holder: str | None = None
    """The holder last seen."""
    terms: int = 0
    """Times this process became leader."""


class LeaderElector:
    """Campaigns for Lease *name* as *identity* until cancelled; ``leading`` is set while leader."""

    def __init__(
        self,
        api: LeaseApi,
        name: str,
        identity: str,
        *,
        duration: float,
        renew_period: float,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        if not 0 < renew_period < duration:
            raise ValueError(f"renew_period ({renew_period}) must be above 0 and below duration ({duration})")
        self._api = api
        self.name = name
        self.identity = identity
        self._duration = duration
        self._renew_period = renew_period
        self._clock = clock
        self._wall = wall_clock
        self._seen: tuple[str | None, Any] | None = None
        """(resourceVersion, spec) of the Lease last read, to notice that it changed."""
        self._seen_at = 0.0
        self._renewed_at = 0.0
        self._lease: dict[str, Any] | None = None
        self.leading = asyncio.Event()
        """Set while this process is the leader."""
        self.following = asyncio.Event()
        """Set while it is not."""
        self.following.set()
        self.status = LeaderStatus()

    @property
    def is_leader(self) -> bool:
        """True while this process holds the Lease."""
        return self.leading.is_set()

    async def run(self) -> None:
        """Acquire, renew, step down and try again, until cancelled (then release the Lease if held)."""
        try:
            while True:
                await self._round()
                await asyncio.sleep(self._renew_period)
        finally:
            if self.is_leader:
                await asyncio.shield(self._release())

    async def _round(self) -> None:
        try:
            taken = await self._try_take()
        except BucketrunError as error:
            _log.warning("leader election: the Lease could not be read or written", error=str(error))
            taken = False
        if taken:
            self._renewed_at = self._clock()
            self._set_leader(True)
        elif self.is_leader and (
            holder_of(self._lease) not in (None, self.identity)
            or self._clock() - self._renewed_at > self._duration - self._renew_period
        ):
            _log.warning("leader election: stepping down", holder=holder_of(self._lease))
            self._set_leader(False)

    async def _try_take(self) -> bool:
        lease = await self._api.read_lease(self.name)
        now = self._clock()
        if lease is None:
            created = await self._api.create_lease(
                claimed(self.name, self.identity, self._duration, self._wall(), None)
            )
            self._observe(created, now)
            return created is not None
        self._observe(lease, now)
        decision = decide(
            lease, self.identity, unchanged_for=now - self._seen_at, default_duration=self._duration
        )
        if decision is Decision.FOLLOW:
            return False
        written = await self._api.replace_lease(
            claimed(self.name, self.identity, self._duration, self._wall(), lease)
        )
        if written is not None:
            self._observe(written, now)
        return written is not None

    def _observe(self, lease: dict[str, Any] | None, now: float) -> None:
        self._lease = lease
        if lease is None:
            return
        self.status.holder = holder_of(lease)
        seen = (kube.meta(lease).get("resourceVersion"), lease.get("spec"))
        if seen != self._seen:
            self._seen, self._seen_at = seen, now

    def _set_leader(self, leader: bool) -> None:
        if leader == self.is_leader:
            return
        self.status.is_leader = leader
        if leader:
            self.status.terms += 1
            self.following.clear()
            self.leading.set()
            _log.info("leader election: now leading", lease=self.name, identity=self.identity)
        else:
            self.leading.clear()
            self.following.set()

    async def _release(self) -> None:
        """Give the Lease up (no holder) so a standby need not wait for it to expire."""
        self._set_leader(False)
        lease = self._lease
        if lease is None or holder_of(lease) != self.identity:
            return
        spec = {**(lease.get("spec") or {}), "holderIdentity": None, "renewTime": micro_time(self._wall())}
        try:
            await self._api.replace_lease({**lease, "spec": spec})
        except BucketrunError as error:
            _log.warning("leader election: could not release the Lease", error=str(error))
