"""Leases for leader election: create, optimistic renew, and the losing candidate's 409."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from kubernetes_asyncio import client  # noqa: TID251 - these tests drive the API directly
from kubernetes_asyncio.client.exceptions import ApiException  # noqa: TID251
from kubernetes_asyncio.leaderelection.leaderelectionrecord import LeaderElectionRecord  # noqa: TID251
from kubernetes_asyncio.leaderelection.resourcelock.leaselock import LeaseLock  # noqa: TID251

pytestmark = pytest.mark.integration


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


async def test_two_candidates_race_for_a_lease_and_the_stale_writer_gets_409(api, namespace):
    coordination = client.CoordinationV1Api(api)
    spec = {"holderIdentity": "a", "leaseDurationSeconds": 15, "acquireTime": _now(), "renewTime": _now()}
    await coordination.create_namespaced_lease(namespace, {"metadata": {"name": "leader"}, "spec": spec})
    with pytest.raises(ApiException) as taken:
        await coordination.create_namespaced_lease(namespace, {"metadata": {"name": "leader"}, "spec": spec})
    assert taken.value.status == 409
    assert json.loads(taken.value.body)["reason"] == "AlreadyExists"

    seen_by_a = await coordination.read_namespaced_lease("leader", namespace)
    seen_by_b = await coordination.read_namespaced_lease("leader", namespace)
    seen_by_a.spec.renew_time = datetime.now(UTC)
    renewed = await coordination.replace_namespaced_lease("leader", namespace, seen_by_a)
    assert renewed.spec.holder_identity == "a"
    seen_by_b.spec.holder_identity = "b"
    with pytest.raises(ApiException) as lost:
        await coordination.replace_namespaced_lease("leader", namespace, seen_by_b)
    assert lost.value.status == 409
    assert json.loads(lost.value.body)["reason"] == "Conflict"
    assert (await coordination.read_namespaced_lease("leader", namespace)).spec.holder_identity == "a"


async def test_kubernetes_asyncio_lease_lock_creates_reads_and_updates(api, namespace):
    lock = LeaseLock("watcher-leader", namespace, "replica-1", api)
    found, _ = await lock.get("watcher-leader", namespace)
    assert found is False
    record = LeaderElectionRecord("replica-1", "15", _now(), _now())
    assert await lock.create("watcher-leader", namespace, record) is True
    found, current = await lock.get("watcher-leader", namespace)
    assert found is True
    assert current.holder_identity == "replica-1"
    assert await lock.update(
        "watcher-leader", namespace, LeaderElectionRecord("replica-1", "15", _now(), _now())
    )
