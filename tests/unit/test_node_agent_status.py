"""The pod status the node agent writes, and the Node it registers: documents written out by hand from
the kubelet's status generation (pkg/kubelet/status/generate.go, kubelet_pods.go, kubelet_node_status.go)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from bucketrun.devtools.node_agent.node import NodeShape, micro_time, node_conditions, node_status
from bucketrun.devtools.node_agent.status import (
    ContainerRecord,
    container_status,
    merge_conditions,
    pod_status,
    running_phase,
)
from dispatcher.executors.local.runner import ContainerState

T0 = datetime(2026, 12, 4, 7, 0, 0, tzinfo=UTC)
T1 = datetime(2026, 12, 4, 7, 0, 5, tzinfo=UTC)
SPEC = {"name": "main", "image": "busybox:1.36"}


def pod(init: bool = False, conditions: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"containers": [SPEC]}
    if init:
        spec["initContainers"] = [{"name": "setup", "image": "busybox:1.36"}]
    return {
        "metadata": {"name": "p", "namespace": "n", "uid": "uid-1"},
        "spec": spec,
        "status": {"conditions": conditions or [], "qosClass": "BestEffort"},
    }


def by_type(status: dict[str, Any]) -> dict[str, tuple[str, str | None]]:
    return {c["type"]: (c["status"], c.get("reason")) for c in status["conditions"]}


def test_a_waiting_container_is_pending_with_its_reason_and_no_container_id() -> None:
    waiting = ContainerState(
        "main", False, "waiting", reason="CreateContainerConfigError", message='secret "s" not found'
    )
    status = pod_status(
        pod(), {"main": ContainerRecord(waiting)}, phase=None, start_time="2026-12-04T07:00:00Z", now=T0
    )

    assert status["phase"] == "Pending"
    [entry] = status["containerStatuses"]
    assert entry == {
        "name": "main",
        "image": "busybox:1.36",
        "imageID": "",
        "ready": False,
        "started": False,
        "restartCount": 0,
        "state": {"waiting": {"reason": "CreateContainerConfigError", "message": 'secret "s" not found'}},
        "lastState": {},
    }
    assert by_type(status) == {
        "PodReadyToStartContainers": ("True", None),
        "Initialized": ("True", None),
        "Ready": ("False", "ContainersNotReady"),
        "ContainersReady": ("False", "ContainersNotReady"),
    }
    assert status["hostIP"] == status["podIP"] == "127.0.0.1"
    assert status["startTime"] == "2026-12-04T07:00:00Z"


def test_a_running_container_makes_the_pod_running_and_ready() -> None:
    running = ContainerState("main", False, "running", started_at=T0)
    status = pod_status(pod(), {"main": ContainerRecord(running)}, phase=None, start_time="x", now=T1)

    assert status["phase"] == "Running"
    [entry] = status["containerStatuses"]
    assert entry["state"] == {"running": {"startedAt": "2026-12-04T07:00:00Z"}}
    assert (entry["ready"], entry["started"]) == (True, True)
    assert entry["containerID"].startswith("local://")
    assert by_type(status)["Ready"] == ("True", None)


def test_succeeded_pod_conditions_say_pod_completed() -> None:
    done = ContainerState(
        "main", False, "terminated", exit_code=0, reason="Completed", started_at=T0, finished_at=T1
    )
    status = pod_status(pod(), {"main": ContainerRecord(done)}, phase="Succeeded", start_time="x", now=T1)

    assert by_type(status) == {
        "PodReadyToStartContainers": ("False", None),
        "Initialized": ("True", None),
        "Ready": ("False", "PodCompleted"),
        "ContainersReady": ("False", "PodCompleted"),
    }
    assert status["containerStatuses"][0]["state"]["terminated"] == {
        "exitCode": 0,
        "reason": "Completed",
        "startedAt": "2026-12-04T07:00:00Z",
        "finishedAt": "2026-12-04T07:00:05Z",
        "containerID": status["containerStatuses"][0]["containerID"],
    }


def test_a_deadline_gives_the_pod_its_reason_and_message() -> None:
    killed = ContainerState(
        "main", False, "terminated", exit_code=143, signal=15, reason="Error", started_at=T0, finished_at=T1
    )
    status = pod_status(
        pod(),
        {"main": ContainerRecord(killed)},
        phase="Failed",
        start_time="x",
        reason="DeadlineExceeded",
        message="Pod was active on the node longer than the specified deadline",
    )

    assert (status["phase"], status["reason"]) == ("Failed", "DeadlineExceeded")
    assert by_type(status)["Ready"] == ("False", "ContainersNotReady")
    assert status["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 143


def test_an_unfinished_init_container_keeps_the_pod_pending_and_not_initialized() -> None:
    records = {
        "setup": ContainerRecord(ContainerState("setup", True, "running", started_at=T0)),
        "main": ContainerRecord(ContainerState("main", False, "waiting", reason="PodInitializing")),
    }
    status = pod_status(pod(init=True), records, phase=None, start_time="x", now=T1)

    assert status["phase"] == "Pending"
    initialized = next(c for c in status["conditions"] if c["type"] == "Initialized")
    assert (initialized["status"], initialized["reason"], initialized["message"]) == (
        "False",
        "ContainersNotInitialized",
        "containers with incomplete status: [setup]",
    )
    assert [s["name"] for s in status["initContainerStatuses"]] == ["setup"]


def test_a_restarted_container_shows_its_previous_run_in_last_state() -> None:
    first = ContainerState(
        "main", False, "terminated", exit_code=137, reason="OOMKilled", started_at=T0, finished_at=T1
    )
    again = ContainerState("main", False, "running", started_at=T1, restart_count=1)

    entry = container_status(SPEC, ContainerRecord(again, first), "uid-1")

    assert entry["restartCount"] == 1
    assert entry["lastState"]["terminated"]["reason"] == "OOMKilled"
    assert entry["lastState"]["terminated"]["exitCode"] == 137
    assert entry["lastState"]["terminated"]["containerID"] != entry["containerID"]
    assert (
        running_phase(pod(), {"main": {"state": {"waiting": {}}, "lastState": entry["lastState"]}})
        == "Running"
    )


def test_conditions_keep_transition_times_and_foreign_conditions() -> None:
    old = [
        {"type": "PodScheduled", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z"},
        {
            "type": "DisruptionTarget",
            "status": "True",
            "reason": "DeletionByTaintManager",
            "lastTransitionTime": "t0",
        },
        {"type": "Ready", "status": "False", "lastTransitionTime": "t-ready"},
        {"type": "Initialized", "status": "False", "lastTransitionTime": "t-init"},
    ]
    owned = [
        {"type": "Ready", "status": "False", "lastTransitionTime": "now"},
        {"type": "Initialized", "status": "True", "lastTransitionTime": "now"},
    ]

    merged = merge_conditions(old, owned)

    assert [(c["type"], c["lastTransitionTime"]) for c in merged] == [
        ("PodScheduled", "2026-01-01T00:00:00Z"),
        ("DisruptionTarget", "t0"),
        ("Ready", "t-ready"),
        ("Initialized", "now"),
    ]


SHAPE = NodeShape(
    name="n1",
    cpu="4",
    memory="8Gi",
    pods=110,
    ephemeral_storage="100Gi",
    port=10250,
    kubelet_version="v1.37.2",
)


def test_node_status_offers_capacity_address_and_kubelet_port() -> None:
    status = node_status(SHAPE, T0, None)

    assert (
        status["capacity"]
        == status["allocatable"]
        == {
            "cpu": "4",
            "memory": "8Gi",
            "pods": "110",
            "ephemeral-storage": "100Gi",
        }
    )
    assert status["addresses"] == [{"type": "InternalIP", "address": "127.0.0.1"}]
    assert status["daemonEndpoints"] == {"kubeletEndpoint": {"Port": 10250}}
    assert status["nodeInfo"]["kubeletVersion"] == "v1.37.2"
    assert status["nodeInfo"]["operatingSystem"] == "linux"


def test_node_conditions_heartbeat_and_keep_their_transition_times() -> None:
    first = node_conditions(T0, None)
    second = node_conditions(T1, first)

    ready = {c["type"]: c for c in second}["Ready"]
    assert (ready["status"], ready["reason"], ready["message"]) == (
        "True",
        "KubeletReady",
        "kubelet is posting ready status",
    )
    assert ready["lastHeartbeatTime"] == "2026-12-04T07:00:05Z"
    assert ready["lastTransitionTime"] == "2026-12-04T07:00:00Z"
    assert {c["type"]: c["status"] for c in second} == {
        "MemoryPressure": "False",
        "DiskPressure": "False",
        "PIDPressure": "False",
        "Ready": "True",
    }
    assert micro_time(T1) == "2026-12-04T07:00:05.000000Z"


def test_containers_that_never_started_in_a_terminal_pod_are_container_status_unknown() -> None:
    # pkg/kubelet/status TerminatePod: a waiting container of a terminal pod becomes terminated with
    # reason ContainerStatusUnknown, that message and exit code 137; a terminated one stays as it was.
    records = {
        "setup": ContainerRecord(
            ContainerState(
                "setup", True, "terminated", exit_code=1, reason="Error", started_at=T0, finished_at=T1
            )
        ),
        "main": ContainerRecord(ContainerState("main", False, "waiting", reason="PodInitializing")),
    }
    status = pod_status(pod(init=True), records, phase="Failed", start_time="x", now=T1)

    [main] = status["containerStatuses"]
    assert main["state"] == {
        "terminated": {
            "exitCode": 137,
            "reason": "ContainerStatusUnknown",
            "message": "The container could not be located when the pod was terminated",
        }
    }
    assert (main["imageID"], "containerID" in main) == ("", False)
    [setup] = status["initContainerStatuses"]
    assert (setup["state"]["terminated"]["exitCode"], setup["state"]["terminated"]["reason"]) == (1, "Error")
