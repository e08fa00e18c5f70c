"""Leader election against an in-memory Lease store with optimistic concurrency and a fake clock."""

from __future__ import annotations

import copy
from datetime import UTC, datetime

import pytest

from watcher.leader import Decision, LeaderElector, claimed, decide


class Leases:
    """Create, read, replace with a resourceVersion precondition (409 = None), like the API server."""

    def __init__(self) -> None:
        self.doc: dict | None = None
        self.version = 0

    async def read_lease(self, name):
        return copy.deepcopy(self.doc)

    async def create_lease(self, doc):
        if self.doc is not None:
            return None
        return self._store(doc)

    async def replace_lease(self, doc):
        if (
            self.doc is None
            or doc["metadata"].get("resourceVersion") != self.doc["metadata"]["resourceVersion"]
        ):
            return None
        return self._store(doc)

    def _store(self, doc):
        self.version += 1
        self.doc = copy.deepcopy(doc)
        self.doc["metadata"]["resourceVersion"] = str(self.version)
        return copy.deepcopy(self.doc)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


WALL = datetime(2026, 1, 1, tzinfo=UTC)


def elector(leases, identity, clock):
    return LeaderElector(
        leases, "lease", identity, duration=10, renew_period=2, clock=clock, wall_clock=lambda: WALL
    )


@pytest.mark.parametrize(
    ("holder", "unchanged_for", "decision"),
    [
        (None, 0, Decision.TAKE),
        ("me", 0, Decision.TAKE),
        ("other", 9.9, Decision.FOLLOW),
        ("other", 10, Decision.TAKE),
    ],
)
def test_decide(holder, unchanged_for, decision) -> None:
    lease = {"spec": {"holderIdentity": holder, "leaseDurationSeconds": 10}}
    assert decide(lease, "me", unchanged_for=unchanged_for, default_duration=15) is decision


def test_claimed_counts_transitions_and_keeps_acquire_time_on_renewal() -> None:
    first = claimed("lease", "a", 10, WALL, None)
    assert first["spec"]["leaseTransitions"] == 0
    assert first["spec"]["holderIdentity"] == "a"
    taken = claimed("lease", "b", 10, WALL.replace(second=5), first)
    assert taken["spec"]["leaseTransitions"] == 1
    renewed = claimed("lease", "b", 10, WALL.replace(second=9), taken)
    assert renewed["spec"]["acquireTime"] == taken["spec"]["acquireTime"]
    assert renewed["spec"]["renewTime"].endswith("09.000000Z")


async def test_one_leader_then_takeover_only_after_the_lease_was_seen_unchanged_for_its_duration() -> None:
    leases, clock = Leases(), Clock()
    a, b = elector(leases, "a", clock), elector(leases, "b", clock)
    await a._round()
    await b._round()
    assert (a.is_leader, b.is_leader) == (True, False)
    clock.now += 9  # a stops renewing (crashed); b has seen the Lease unchanged for 9 s
    await b._round()
    assert not b.is_leader
    clock.now += 1.5
    await b._round()
    assert b.is_leader
    assert leases.doc["spec"]["holderIdentity"] == "b"
    assert leases.doc["spec"]["leaseTransitions"] == 1
    # a comes back: it sees another holder and steps down
    await a._round()
    assert not a.is_leader
    assert a.status.holder == "b"


async def test_renewals_keep_a_follower_waiting() -> None:
    leases, clock = Leases(), Clock()
    a, b = elector(leases, "a", clock), elector(leases, "b", clock)
    await a._round()
    for _ in range(10):
        clock.now += 2
        await a._round()
        await b._round()
    assert (a.is_leader, b.is_leader) == (True, False)


async def test_a_leader_that_cannot_renew_steps_down_before_others_may_take_over() -> None:
    leases, clock = Leases(), Clock()
    a = elector(leases, "a", clock)
    await a._round()

    async def failing(*_):
        from dispatcher.domain.errors import TransientError  # noqa: PLC0415

        raise TransientError("down", kind="api-connection")

    leases.read_lease = failing
    clock.now += 7.9
    await a._round()
    assert a.is_leader
    clock.now += 0.2  # 8.1 s without renewal > duration - renew period
    await a._round()
    assert not a.is_leader


async def test_the_slower_of_two_candidates_gets_a_conflict() -> None:
    leases, clock = Leases(), Clock()
    a, b = elector(leases, "a", clock), elector(leases, "b", clock)
    leases._store(claimed("lease", "gone", 10, WALL, None))
    leases.doc["spec"]["holderIdentity"] = None
    read_by_b = await leases.read_lease("lease")
    await a._round()
    assert a.is_leader
    assert await leases.replace_lease(claimed("lease", "b", 10, WALL, read_by_b)) is None
    await b._round()
    assert not b.is_leader


async def test_release_clears_the_holder() -> None:
    leases, clock = Leases(), Clock()
    a = elector(leases, "a", clock)
    await a._round()
    await a._release()
    assert leases.doc["spec"]["holderIdentity"] is None
    assert not a.is_leader
    b = elector(leases, "b", clock)
    await b._round()
    assert b.is_leader  # no need to wait for expiry
