"""A pod's life on the node agent against a recording fake API: status writes, deadline, deletion."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bucketrun.devtools.node_agent.api import ApiError
from bucketrun.devtools.node_agent.faults import Faults
from bucketrun.devtools.node_agent.pods import NodeContext, PodManager

TIMEOUT = 20.0


class RecordingApi:
    """Records status patches and deletes; GETs of Secrets and ConfigMaps find nothing."""

    def __init__(self) -> None:
        self.patches: list[tuple[str, dict[str, Any]]] = []
        self.deletes: list[tuple[str, dict[str, Any] | None]] = []
        self.changed = asyncio.Event()

    async def get(self, path: str, params: Any = None) -> dict[str, Any]:
        raise ApiError(404, "NotFound", path)

    async def create(self, path: str, body: Any) -> dict[str, Any]:
        raise ApiError(403, "Forbidden", path)

    async def merge_patch(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        self.patches.append((path, body))
        self.changed.set()
        return body

    async def delete(self, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        self.deletes.append((path, body))
        self.changed.set()
        return {}

    def phases(self) -> list[str]:
        return [body["status"]["phase"] for _, body in self.patches]

    async def until(self, check: Any) -> None:
        async with asyncio.timeout(TIMEOUT):
            while not check():
                self.changed.clear()
                await self.changed.wait()


def context(api: RecordingApi, tmp_path: Path, faults: Faults | None = None) -> NodeContext:
    reachable = asyncio.Event()
    reachable.set()
    changed = asyncio.Event()
    return NodeContext(
        api=api,  # type: ignore[arg-type]
        node_name="n1",
        workroot=tmp_path,
        faults=lambda: faults or Faults(),
        reachable=reachable,
        faults_changed=lambda: changed,
        retry_seconds=0.05,
        memory_poll_seconds=0.05,
        max_grace_seconds=None,
    )


def pod(script: str, **spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "p", "namespace": "ns", "uid": "uid-1"},
        "spec": {
            "nodeName": "n1",
            "restartPolicy": "Never",
            "containers": [{"name": "main", "image": "busybox", "command": ["sh", "-c", script]}],
            **spec,
        },
        "status": {"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "True"}]},
    }


def deleting(manifest: dict[str, Any], grace: int) -> dict[str, Any]:
    meta = {
        **manifest["metadata"],
        "deletionTimestamp": "2026-12-04T07:00:00Z",
        "deletionGracePeriodSeconds": grace,
    }
    return {**manifest, "metadata": meta}


async def test_a_pod_runs_its_status_is_written_with_the_uid_and_deletion_ends_with_grace_zero(
    tmp_path: Path,
) -> None:
    api = RecordingApi()
    manager = PodManager(context(api, tmp_path))
    manifest = pod("echo hi")
    manager.event("ADDED", manifest)

    await api.until(lambda: "Succeeded" in api.phases())
    path, body = api.patches[-1]
    assert path == "/api/v1/namespaces/ns/pods/p/status"
    assert body["metadata"] == {"uid": "uid-1"}
    assert api.phases()[0] == "Pending"
    assert {c["type"] for c in body["status"]["conditions"]} >= {"PodScheduled", "Ready", "Initialized"}
    worker = manager.worker_for("ns", "p")
    assert worker is not None
    assert (worker.workdir / "logs" / "main.log").read_text() == "hi\n"
    assert api.deletes == []

    manager.event("MODIFIED", deleting(manifest, 30))
    await api.until(lambda: api.deletes)
    assert api.deletes == [
        ("/api/v1/namespaces/ns/pods/p", {"gracePeriodSeconds": 0, "preconditions": {"uid": "uid-1"}})
    ]

    manager.event("DELETED", manifest)
    await manager.stop()
    assert not worker.workdir.exists()


async def test_deleting_a_running_pod_kills_it_after_the_deletions_grace(tmp_path: Path) -> None:
    api = RecordingApi()
    manager = PodManager(context(api, tmp_path))
    manifest = pod(
        "trap '' TERM; echo armed; while :; do sleep 0.05; done", terminationGracePeriodSeconds=300
    )
    manager.event("ADDED", manifest)
    await api.until(lambda: "Running" in api.phases())
    worker = manager.worker_for("ns", "p")
    assert worker is not None
    log = worker.workdir / "logs" / "main.log"
    async with asyncio.timeout(TIMEOUT):
        # The shell must have set its trap before the deletion's SIGTERM; only its log says so.
        while "armed" not in await asyncio.to_thread(log.read_text):  # noqa: ASYNC110 - a child's file
            await asyncio.sleep(0.02)

    loop = asyncio.get_running_loop()
    started = loop.time()
    manager.event("MODIFIED", deleting(manifest, 1))
    await api.until(lambda: api.deletes)

    assert 1.0 <= loop.time() - started < 5.0
    final = api.patches[-1][1]["status"]
    assert final["phase"] == "Failed"
    assert "reason" in final
    assert final["reason"] is None  # a deletion gives the pod no reason of its own
    assert final["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 137
    await manager.stop()


async def test_active_deadline_fails_the_pod_with_deadline_exceeded(tmp_path: Path) -> None:
    api = RecordingApi()
    manager = PodManager(context(api, tmp_path))
    manager.event("ADDED", pod("sleep 30", activeDeadlineSeconds=1, terminationGracePeriodSeconds=1))

    await api.until(lambda: "Failed" in api.phases())
    status = api.patches[-1][1]["status"]
    assert (status["reason"], status["message"]) == (
        "DeadlineExceeded",
        "Pod was active on the node longer than the specified deadline",
    )
    assert status["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 143
    await manager.stop()


async def test_the_config_error_fault_keeps_the_containers_waiting_until_the_pod_is_deleted(
    tmp_path: Path,
) -> None:
    api = RecordingApi()
    manager = PodManager(context(api, tmp_path, Faults(config_errors=("ns/*",))))
    manager.event("ADDED", pod("echo never"))

    def waiting() -> bool:
        statuses = [body["status"]["containerStatuses"] for _, body in api.patches]
        return any(
            s and s[0]["state"].get("waiting", {}).get("reason") == "CreateContainerConfigError"
            for s in statuses
        )

    await api.until(waiting)
    assert set(api.phases()) == {"Pending"}

    manager.event("MODIFIED", deleting(pod("echo never"), 30))
    await api.until(lambda: api.deletes)
    final = api.patches[-1][1]["status"]
    assert final["phase"] == "Failed"
    assert final["containerStatuses"][0]["state"]["terminated"]["reason"] == "ContainerStatusUnknown"
    await manager.stop()


async def test_the_instant_knob_ends_pods_at_once_with_their_annotated_exit_code(tmp_path: Path) -> None:
    api = RecordingApi()
    manager = PodManager(context(api, tmp_path, Faults(instant=True)))
    manifest = pod("sleep 300", initContainers=[{"name": "setup", "image": "x", "command": ["false"]}])
    manifest["metadata"]["annotations"] = {"emulator.bucketrun.io/exit-code": "5"}
    manager.event("ADDED", manifest)

    await api.until(lambda: "Failed" in api.phases())
    status = api.patches[-1][1]["status"]
    assert status["initContainerStatuses"][0]["state"]["terminated"]["exitCode"] == 0
    terminated = status["containerStatuses"][0]["state"]["terminated"]
    assert (terminated["exitCode"], terminated["reason"]) == (5, "Error")
    worker = manager.worker_for("ns", "p")
    assert worker is not None
    assert worker.runner is None  # nothing ran
    await manager.stop()


def knobs_of(shared: NodeContext, faults: Faults) -> Callable[[Faults], None]:
    """Faults for *shared* that change as the agent changes them (the change event replaced and set):
    the returned function sets new ones."""
    state = {"faults": faults, "changed": asyncio.Event()}
    shared.faults = lambda: state["faults"]
    shared.faults_changed = lambda: state["changed"]

    def change(new: Faults) -> None:
        changed = state["changed"]
        state["faults"], state["changed"] = new, asyncio.Event()
        changed.set()

    return change


async def test_held_pods_wait_for_a_change_without_polling(tmp_path: Path) -> None:
    """A node holding thousands of pods must not wake each of them every retry_seconds."""
    api = RecordingApi()
    shared = context(api, tmp_path)
    change = knobs_of(shared, Faults(hold=True))
    reads = {"faults": 0}
    held = shared.faults

    def counted() -> Faults:
        reads["faults"] += 1
        return held()

    shared.faults = counted
    manager = PodManager(shared)
    manager.event("ADDED", pod("true"))
    await api.until(lambda: shared.admission.pending == 1)
    before = reads["faults"]
    await asyncio.sleep(shared.retry_seconds * 6)  # six retry periods: a poller would have looked again
    assert reads["faults"] == before
    change(Faults())
    await api.until(lambda: api.phases().count("Succeeded") == 1)
    await manager.stop()


async def test_hold_and_max_running_keep_pods_pending_until_a_slot_frees(tmp_path: Path) -> None:
    api = RecordingApi()
    shared = context(api, tmp_path)
    change = knobs_of(shared, Faults(hold=True))
    manager = PodManager(shared)
    first = pod("sleep 0.5")
    second = {**pod("true"), "metadata": {"name": "q", "namespace": "ns", "uid": "uid-2"}}
    manager.event("ADDED", first)
    manager.event("ADDED", second)
    await api.until(lambda: shared.admission.pending == 2)
    assert shared.admission.running == 0

    change(Faults(max_running=1))
    await api.until(lambda: shared.admission.running == 1 and shared.admission.pending == 1)
    await api.until(lambda: api.phases().count("Succeeded") == 2)
    assert shared.admission.running == 0
    await manager.stop()


class LaggingAuthorizerApi(RecordingApi):
    """Refuses the first TokenRequest, as the Node authorizer does before it has seen the pod's binding."""

    def __init__(self) -> None:
        super().__init__()
        self.token_requests: list[dict[str, Any]] = []

    async def get(self, path: str, params: Any = None) -> dict[str, Any]:
        if path.endswith("/configmaps/kube-root-ca.crt"):
            return {"data": {"ca.crt": "PEM"}}
        return await super().get(path, params)

    async def create(self, path: str, body: Any) -> dict[str, Any]:
        self.token_requests.append(body)
        if len(self.token_requests) == 1:
            raise ApiError(
                403, "Forbidden", "node requested token bound to a pod scheduled on a different node"
            )
        return {"status": {"token": "t0ken"}}


async def test_a_refused_token_request_is_retried_while_the_container_waits_for_its_volume(
    tmp_path: Path,
) -> None:
    api = LaggingAuthorizerApi()
    manager = PodManager(context(api, tmp_path))
    api_access = {
        "name": "kube-api-access",
        "projected": {
            "sources": [
                {"serviceAccountToken": {"path": "token", "expirationSeconds": 3607}},
                {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
            ]
        },
    }
    manifest = pod("cat /var/run/secrets/kubernetes.io/serviceaccount/token", volumes=[api_access])
    mount = {"name": "kube-api-access", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"}
    manifest["spec"]["containers"][0]["volumeMounts"] = [mount]
    manager.event("ADDED", manifest)

    await api.until(lambda: "Succeeded" in api.phases())
    assert len(api.token_requests) == 2
    bound = api.token_requests[0]["spec"]["boundObjectRef"]
    assert (bound["kind"], bound["name"], bound["uid"]) == ("Pod", "p", "uid-1")
    worker = manager.worker_for("ns", "p")
    assert worker is not None
    assert (worker.workdir / "logs" / "main.log").read_text() == "t0ken"
    await manager.stop()
