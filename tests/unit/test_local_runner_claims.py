"""persistentVolumeClaim volumes: claim → bound PersistentVolume → its hostPath/local path, as a kubelet
mounts a bound claim (pkg/kubelet/volumemanager/populator: the claim must be Bound with a volumeName,
the volume's claimRef must carry the claim's uid); a missing or unbound claim keeps the container in
ContainerCreating until it is bound.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from bucketrun.devtools.node_agent.refs import FetchedRefs, claim_names
from dispatcher.executors.local.pod.model import NoPodRefs
from dispatcher.executors.local.pod.volumes import VolumeError, claimed_directory
from dispatcher.executors.local.runner import ContainerState, LocalPodRunner, StaticPodRefs
from tests.node_api_fake import ObjectsApi

TIMEOUT = 10.0
NAMESPACE = "oscar-svc"


def claim(
    name: str = "data", *, phase: str = "Bound", volume: str = "pv-1", uid: str = "c-1"
) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": NAMESPACE, "uid": uid},
        "spec": {"accessModes": ["ReadWriteMany"], "volumeName": volume},
        "status": {"phase": phase},
    }


def persistent_volume(
    source: dict[str, Any], *, claim_name: str = "data", uid: str = "c-1"
) -> dict[str, Any]:
    return {
        "metadata": {"name": "pv-1"},
        "spec": {
            "capacity": {"storage": "2Gi"},
            "accessModes": ["ReadWriteMany"],
            "claimRef": {"namespace": NAMESPACE, "name": claim_name, "uid": uid},
            **source,
        },
        "status": {"phase": "Bound"},
    }


def refs(claims: dict[str, Any], volumes: dict[str, Any]) -> StaticPodRefs:
    return StaticPodRefs(claims=claims, persistent_volumes=volumes)


def test_a_bound_claim_is_its_volumes_host_path(tmp_path: Path) -> None:
    found = claimed_directory(
        "data", refs({"data": claim()}, {"pv-1": persistent_volume({"hostPath": {"path": str(tmp_path)}})})
    )
    assert found == tmp_path


def test_a_local_volume_is_its_path(tmp_path: Path) -> None:
    found = claimed_directory(
        "data", refs({"data": claim()}, {"pv-1": persistent_volume({"local": {"path": str(tmp_path)}})})
    )
    assert found == tmp_path


def test_a_hostpath_volume_follows_its_type(tmp_path: Path) -> None:
    wanted = tmp_path / "made"
    volume = persistent_volume({"hostPath": {"path": str(wanted), "type": "DirectoryOrCreate"}})
    assert claimed_directory("data", refs({"data": claim()}, {"pv-1": volume})) == wanted
    assert wanted.is_dir()
    missing = persistent_volume({"hostPath": {"path": str(tmp_path / "absent")}})
    with pytest.raises(VolumeError, match="does not exist on this host"):
        claimed_directory("data", refs({"data": claim()}, {"pv-1": missing}))


@pytest.mark.parametrize(
    ("claims", "volumes", "message"),
    [
        ({}, {}, "persistentvolumeclaim 'data' not found"),
        ({"data": claim(phase="Pending", volume="")}, {}, "persistentvolumeclaim 'data' is not bound"),
        ({"data": claim()}, {}, "persistentvolume 'pv-1' of claim 'data' not found"),
        (
            {"data": claim()},
            {"pv-1": persistent_volume({"hostPath": {"path": "/"}}, uid="another")},
            "bound to another claim",
        ),
        (
            {"data": claim()},
            {"pv-1": persistent_volume({"hostPath": {"path": "/"}}, claim_name="other")},
            "bound to another claim",
        ),
        (
            {"data": claim()},
            {"pv-1": persistent_volume({"nfs": {"server": "x", "path": "/"}})},
            "only hostPath and local volumes are supported by the local runner, not nfs",
        ),
    ],
)
def test_what_stops_a_claim_from_being_mounted(
    claims: dict[str, Any], volumes: dict[str, Any], message: str
) -> None:
    with pytest.raises(VolumeError, match=message):
        claimed_directory("data", refs(claims, volumes))


def test_refs_that_cannot_read_claims_refuse_the_volume() -> None:
    with pytest.raises(VolumeError, match="need refs that can read claims"):
        claimed_directory("data", NoPodRefs())


def claim_pod(script: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p", "namespace": NAMESPACE, "uid": "u-1"},
        "spec": {
            "restartPolicy": "Never",
            "containers": [
                {
                    "name": "main",
                    "image": "ignored",
                    "command": ["/bin/sh", "-c"],
                    "args": [script],
                    "volumeMounts": [{"name": "bin", "mountPath": "/oscar/bin", "readOnly": True}],
                }
            ],
            "volumes": [{"name": "bin", "persistentVolumeClaim": {"claimName": "data"}}],
        },
    }


async def test_a_pod_waits_in_container_creating_until_its_claim_is_bound(tmp_path: Path) -> None:
    host = tmp_path / "pv"
    host.mkdir()
    (host / "tool").write_text("from the volume\n")
    claims: dict[str, Any] = {"data": claim(phase="Pending", volume="")}
    volumes: dict[str, Any] = {"pv-1": persistent_volume({"hostPath": {"path": str(host)}})}
    events: list[ContainerState] = []
    runner = LocalPodRunner(
        claim_pod("cat /oscar/bin/tool"),
        workdir=tmp_path / "pod",
        refs=refs(claims, volumes),
        on_change=events.append,
        wait_when_unstartable=True,
        retry_seconds=0.05,
    )
    task = asyncio.create_task(runner.run())
    async with asyncio.timeout(TIMEOUT):
        while not any(e.reason == "ContainerCreating" and e.message for e in events):  # noqa: ASYNC110
            await asyncio.sleep(0.01)
    waiting = next(e for e in events if e.reason == "ContainerCreating" and e.message)
    assert "persistentvolumeclaim 'data' is not bound" in (waiting.message or "")
    assert not task.done()

    claims["data"] = claim()
    outcome = await asyncio.wait_for(task, TIMEOUT)

    assert outcome.phase == "Succeeded"
    assert runner.log_path("main").read_text() == "from the volume\n"


async def test_without_waiting_a_missing_claim_ends_the_container(tmp_path: Path) -> None:
    runner = LocalPodRunner(claim_pod("true"), workdir=tmp_path / "pod", refs=StaticPodRefs())
    outcome = await asyncio.wait_for(runner.run(), TIMEOUT)
    assert outcome.phase == "Failed"
    assert outcome.containers[0].reason == "ContainerCannotRun"
    assert "persistentvolumeclaim 'data' not found" in (outcome.containers[0].message or "")


async def test_the_node_agent_reads_the_claim_then_its_bound_volume(tmp_path: Path) -> None:
    manifest = claim_pod("true")
    assert claim_names(manifest) == {"data"}
    claim_path = f"/api/v1/namespaces/{NAMESPACE}/persistentvolumeclaims/data"
    api = ObjectsApi({claim_path: claim(phase="Pending", volume="")})
    fetched = FetchedRefs(api, manifest)  # type: ignore[arg-type]
    assert not fetched.empty
    await fetched.refresh()
    assert api.calls == [claim_path]  # not bound: no volume to read yet
    with pytest.raises(VolumeError, match="is not bound"):
        claimed_directory("data", fetched)

    api.objects[claim_path] = claim()
    api.objects["/api/v1/persistentvolumes/pv-1"] = persistent_volume({"hostPath": {"path": str(tmp_path)}})
    await fetched.refresh()

    assert api.calls[-2:] == [claim_path, "/api/v1/persistentvolumes/pv-1"]
    assert claimed_directory("data", fetched) == tmp_path
