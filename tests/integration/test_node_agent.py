"""The node agent (bucketrun.devtools.node_agent) as the node of the real control plane built from source.

The agent runs as its own process (`python -m bucketrun.devtools.node_agent`, as the stack runs it)
with the node identity `system:node:NAME` and a serving certificate from the cluster CA; the API
server, controller manager and scheduler are the real ones. Checked: the Node is Ready with its
capacity and kubelet port and its Lease is renewed; a Job runs to completion and a failing one ends
Failed with its exit code; `kubectl logs` reaches the agent through the API server with --tail and
--limit-bytes; a missing Secret keeps the pod waiting with CreateContainerConfigError until it is
created; a PersistentVolumeClaim bound (by the controller manager) to a hostPath volume is mounted;
a deleted pod is terminated within its grace period; activeDeadlineSeconds ends a pod
DeadlineExceeded; a memory limit is enforced (OOMKilled, 137); the image-pull fault holds a pod in
ErrImagePull/ImagePullBackOff, the config-error and OOM faults act; fifty Jobs at once all complete
(time and the agent's RSS printed); the unreachable fault makes the node NotReady (last: it takes
the node lifecycle controller's grace period). Skipped, saying why, where ``make servers`` has not
built the binaries.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from bucketrun.devtools.control_plane import (
    ControlPlane,
)
from bucketrun.devtools.node_agent.memory import process_rss

pytestmark = [pytest.mark.integration, pytest.mark.slow]

NODE = "agent-test-node"
NAMESPACE = "node-agent-test"
AGENT_BOOT = 60.0
NOT_READY_WITHIN = 150.0
"""The node lifecycle controller's grace period (50 s by default) plus its monitor period, with room."""


def wait_for(check: Callable[[], Any], what: str, within: float = 60.0) -> Any:
    """Poll *check* until it returns something truthy; fail naming *what* after *within* s."""
    deadline, last = time.monotonic() + within, None
    while time.monotonic() < deadline:
        if last := check():
            return last
        time.sleep(0.2)  # the state lives in the servers: polling is the only way to see it
    pytest.fail(f"timed out after {within} s waiting for {what} (last: {last!r})")


class Agent:
    """The node agent process and its fault control endpoint."""

    def __init__(self, process: subprocess.Popen[str], control_port: int, log: Path) -> None:
        self.process = process
        self.control_url = f"http://127.0.0.1:{control_port}/faults"
        self.log = log

    def set_faults(self, **faults: Any) -> dict[str, Any]:
        request = urllib.request.Request(  # noqa: S310 - the test's own agent on loopback
            self.control_url, data=json.dumps(faults).encode(), method="PUT"
        )
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            answer: dict[str, Any] = json.loads(response.read())
        return answer

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()


@pytest.fixture(scope="module")
def plane(private_control_plane: ControlPlane) -> ControlPlane:
    return private_control_plane


@pytest.fixture(scope="module")
def agent(plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Agent]:
    base = tmp_path_factory.mktemp("node-agent")
    cert, key = plane.issue_serving_cert(NODE)
    kubeconfig = plane.kubeconfig_for(f"system:node:{NODE}", ["system:nodes"])
    argv = [
        sys.executable, "-m", "bucketrun.devtools.node_agent",
        "--kubeconfig", str(kubeconfig), "--node-name", NODE, "--port", "0",
        "--tls-cert", str(cert), "--tls-key", str(key), "--client-ca", str(plane.ca_cert),
        "--workdir", str(base / "work"), "--control-port", "0", "--renew-seconds", "2",
        "--max-grace-seconds", "10", "--cpu", "8", "--memory", "16Gi",
    ]  # fmt: skip
    log = base / "agent.log"
    with log.open("w") as stderr:
        process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=stderr, text=True)
    started = Agent(process, 0, log)
    try:
        assert process.stdout is not None
        line = (
            process.stdout.readline()
        )  # "node N ready; logs on https://...:P; faults at http://...:C/faults"
        if "ready" not in line:
            pytest.fail(f"the node agent did not start: {line!r}\n{log.read_text()[-3000:]}")
        control_port = int(line.rsplit(":", 1)[1].split("/")[0])
        started = Agent(process, control_port, log)
        yield started
    finally:
        started.stop()


@pytest.fixture(scope="module")
def namespace(plane: ControlPlane, agent: Agent) -> str:
    ns = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}}
    status, body = plane.request("POST", "/api/v1/namespaces", ns)
    assert status == 201, body
    wait_for(
        lambda: plane.request("GET", f"/api/v1/namespaces/{NAMESPACE}/serviceaccounts/default")[0] == 200,
        "the namespace's default ServiceAccount",
    )
    return NAMESPACE


def node_ready(plane: ControlPlane) -> str | None:
    status, node = plane.request("GET", f"/api/v1/nodes/{NODE}")
    if status != 200:
        return None
    ready = [c for c in node["status"].get("conditions", []) if c["type"] == "Ready"]
    return str(ready[0]["status"]) if ready else None


def container(name: str, script: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "image": "busybox:1.36", "command": ["sh", "-c", script], **extra}


def create_pod(
    plane: ControlPlane, name: str, containers: list[dict[str, Any]], **spec: Any
) -> dict[str, Any]:
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {"restartPolicy": "Never", "containers": containers, **spec},
    }
    status, body = plane.request("POST", f"/api/v1/namespaces/{NAMESPACE}/pods", pod)
    assert status == 201, body
    return dict(body)


def get_pod(plane: ControlPlane, name: str) -> dict[str, Any] | None:
    status, body = plane.request("GET", f"/api/v1/namespaces/{NAMESPACE}/pods/{name}")
    return dict(body) if status == 200 else None


def pod_phase(plane: ControlPlane, name: str, *phases: str) -> dict[str, Any] | None:
    pod = get_pod(plane, name)
    return pod if pod is not None and pod.get("status", {}).get("phase") in phases else None


def main_state(pod: dict[str, Any]) -> dict[str, Any]:
    [status] = pod["status"]["containerStatuses"]
    return dict(status["state"])


def waiting_reason(plane: ControlPlane, name: str) -> str | None:
    pod = get_pod(plane, name)
    statuses = (pod or {}).get("status", {}).get("containerStatuses") or []
    return statuses[0]["state"].get("waiting", {}).get("reason") if statuses else None


def job(name: str, script: str, backoff_limit: int = 0) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {
            "backoffLimit": backoff_limit,
            "template": {"spec": {"restartPolicy": "Never", "containers": [container("main", script)]}},
        },
    }


def job_condition(plane: ControlPlane, name: str) -> set[str]:
    status, body = plane.request("GET", f"/apis/batch/v1/namespaces/{NAMESPACE}/jobs/{name}")
    assert status == 200, body
    conditions = body.get("status", {}).get("conditions") or []
    return {c["type"] for c in conditions if c["status"] == "True"} & {"Complete", "Failed"}


def job_pod(plane: ControlPlane, name: str) -> dict[str, Any]:
    status, body = plane.request(
        "GET", f"/api/v1/namespaces/{NAMESPACE}/pods?labelSelector=job-name%3D{name}"
    )
    assert status == 200, body
    [pod] = body["items"]
    return dict(pod)


def test_node_is_ready_with_capacity_and_kubelet_port_and_renews_its_lease(
    plane: ControlPlane, agent: Agent
) -> None:
    assert wait_for(lambda: node_ready(plane) == "True", "the node to be Ready")
    _, node = plane.request("GET", f"/api/v1/nodes/{NODE}")
    status = node["status"]
    assert status["allocatable"]["cpu"] == "8"
    assert status["allocatable"]["memory"] == "16Gi"
    assert status["allocatable"]["pods"] == "110"
    assert status["addresses"] == [{"type": "InternalIP", "address": "127.0.0.1"}]
    assert status["daemonEndpoints"]["kubeletEndpoint"]["Port"] > 0
    assert status["nodeInfo"]["kubeletVersion"] == plane.versions["kube-apiserver"]
    lease_path = f"/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{NODE}"
    _, lease = plane.request("GET", lease_path)
    assert lease["spec"]["holderIdentity"] == NODE
    first = lease["spec"]["renewTime"]
    wait_for(lambda: plane.request("GET", lease_path)[1]["spec"]["renewTime"] != first, "a Lease renewal", 15)


def test_a_job_runs_to_completion(plane: ControlPlane, namespace: str) -> None:
    status, body = plane.request(
        "POST", f"/apis/batch/v1/namespaces/{namespace}/jobs", job("ok", "echo done")
    )
    assert status == 201, body

    assert wait_for(lambda: job_condition(plane, "ok"), "the Job to finish") == {"Complete"}
    pod = job_pod(plane, "ok")
    assert pod["status"]["phase"] == "Succeeded"
    terminated = main_state(pod)["terminated"]
    assert (terminated["exitCode"], terminated["reason"]) == (0, "Completed")
    assert pod["spec"]["nodeName"] == NODE
    assert pod["status"]["podIP"] == "127.0.0.1"


def test_a_failing_job_ends_failed_with_the_exit_code(plane: ControlPlane, namespace: str) -> None:
    status, body = plane.request("POST", f"/apis/batch/v1/namespaces/{namespace}/jobs", job("bad", "exit 3"))
    assert status == 201, body

    assert wait_for(lambda: job_condition(plane, "bad"), "the Job to finish") == {"Failed"}
    pod = job_pod(plane, "bad")
    assert pod["status"]["phase"] == "Failed"
    terminated = main_state(pod)["terminated"]
    assert (terminated["exitCode"], terminated["reason"]) == (3, "Error")


def test_pod_logs_come_through_the_api_server_with_tail_and_limit(
    plane: ControlPlane, namespace: str
) -> None:
    create_pod(plane, "talker", [container("main", "for i in 1 2 3 4 5; do echo line-$i; done")])
    wait_for(lambda: pod_phase(plane, "talker", "Succeeded"), "the pod to succeed")

    def logs(*args: str) -> str:
        return plane.kubectl("logs", "-n", namespace, "talker", *args).stdout

    assert logs() == "line-1\nline-2\nline-3\nline-4\nline-5\n"
    assert logs("--tail=2") == "line-4\nline-5\n"
    assert logs("--limit-bytes=9") == "line-1\nli"
    stamped = logs("--tail=1", "--timestamps").split(" ")
    assert stamped[1] == "line-5\n"
    assert stamped[0].endswith("Z")


def test_kubectl_logs_follow_streams_until_the_container_ends(plane: ControlPlane, namespace: str) -> None:
    create_pod(plane, "ticker", [container("main", "for i in 1 2 3 4; do echo tick-$i; sleep 0.5; done")])
    wait_for(lambda: pod_phase(plane, "ticker", "Running", "Succeeded"), "the pod to start")

    followed = plane.kubectl("logs", "-n", namespace, "ticker", "--follow").stdout

    assert followed == "tick-1\ntick-2\ntick-3\ntick-4\n"


def test_a_missing_secret_keeps_the_pod_waiting_until_it_exists(plane: ControlPlane, namespace: str) -> None:
    env = [{"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "late", "key": "token"}}}]
    create_pod(plane, "needs-secret", [container("main", "echo token=$TOKEN", env=env)])

    wait_for(
        lambda: waiting_reason(plane, "needs-secret") == "CreateContainerConfigError", "the config error"
    )
    time.sleep(3)  # it must stay so: a real kubelet waits for ever
    pod = get_pod(plane, "needs-secret")
    assert pod is not None
    assert pod["status"]["phase"] == "Pending"
    assert waiting_reason(plane, "needs-secret") == "CreateContainerConfigError"

    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "late"},
        "stringData": {"token": "s3cr3t"},
    }
    status, body = plane.request("POST", f"/api/v1/namespaces/{namespace}/secrets", secret)
    assert status == 201, body
    wait_for(lambda: pod_phase(plane, "needs-secret", "Succeeded"), "the pod to run once the Secret exists")
    assert plane.kubectl("logs", "-n", namespace, "needs-secret").stdout == "token=s3cr3t\n"


def test_a_claim_bound_to_a_hostpath_volume_is_mounted(
    plane: ControlPlane, namespace: str, tmp_path: Path
) -> None:
    # The controller manager binds the claim; the agent reads claim and volume and mounts the host path.
    (tmp_path / "hello").write_text("from the volume\n")
    volume = {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {"name": "agent-test-pv"},
        "spec": {
            "capacity": {"storage": "1Gi"},
            "accessModes": ["ReadWriteMany"],
            "persistentVolumeReclaimPolicy": "Retain",
            "storageClassName": "",
            "hostPath": {"path": str(tmp_path), "type": "Directory"},
        },
    }
    claim = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": "data"},
        "spec": {"accessModes": ["ReadWriteMany"], "resources": {"requests": {"storage": "1Gi"}}},
    }
    status, body = plane.request("POST", "/api/v1/persistentvolumes", volume)
    assert status == 201, body
    status, body = plane.request("POST", f"/api/v1/namespaces/{namespace}/persistentvolumeclaims", claim)
    assert status == 201, body
    mounts = [{"name": "data", "mountPath": "/data"}]
    create_pod(
        plane,
        "uses-claim",
        [container("main", "cat /data/hello && echo written > /data/out", volumeMounts=mounts)],
        volumes=[{"name": "data", "persistentVolumeClaim": {"claimName": "data"}}],
    )

    wait_for(lambda: pod_phase(plane, "uses-claim", "Succeeded"), "the pod to run with its claim")
    claim_path = f"/api/v1/namespaces/{namespace}/persistentvolumeclaims/data"
    assert plane.request("GET", claim_path)[1]["spec"]["volumeName"] == "agent-test-pv"
    assert plane.kubectl("logs", "-n", namespace, "uses-claim").stdout == "from the volume\n"
    assert (tmp_path / "out").read_text() == "written\n"


def test_deleting_a_running_pod_terminates_it_within_the_grace_period(
    plane: ControlPlane, namespace: str
) -> None:
    # The shell ignores SIGTERM, so only the SIGKILL after the grace period ends it.
    create_pod(
        plane, "stubborn", [container("main", "trap '' TERM; echo pid=$$$$; while :; do sleep 0.1; done")]
    )
    wait_for(lambda: pod_phase(plane, "stubborn", "Running"), "the pod to run")
    log = wait_for(lambda: plane.kubectl("logs", "-n", namespace, "stubborn").stdout, "the pod's pid")
    pid = int(log.strip().split("=")[1])
    assert Path(f"/proc/{pid}").exists()

    started = time.monotonic()
    status, body = plane.request(
        "DELETE", f"/api/v1/namespaces/{namespace}/pods/stubborn", {"gracePeriodSeconds": 2}
    )
    assert status == 200, body
    wait_for(lambda: get_pod(plane, "stubborn") is None, "the pod to be deleted", 30)
    elapsed = time.monotonic() - started

    assert 2.0 <= elapsed < 10.0
    assert not _alive(pid)


def _complete(job: dict[str, Any] | None) -> bool:
    conditions = (job or {}).get("status", {}).get("conditions") or []
    return any(c["type"] == "Complete" and c["status"] == "True" for c in conditions)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return not Path(f"/proc/{pid}/stat").read_text().split(") ")[1].startswith("Z")


def test_active_deadline_fails_the_pod_with_deadline_exceeded(plane: ControlPlane, namespace: str) -> None:
    create_pod(
        plane,
        "slow",
        [container("main", "sleep 300")],
        activeDeadlineSeconds=2,
        terminationGracePeriodSeconds=1,
    )

    pod = wait_for(lambda: pod_phase(plane, "slow", "Failed"), "the deadline", 30)
    assert pod["status"]["reason"] == "DeadlineExceeded"
    assert "deadline" in pod["status"]["message"]


def test_a_container_over_its_memory_limit_is_oom_killed(plane: ControlPlane, namespace: str) -> None:
    hog = "python3 -c \"import time; data = b'x' * (400 * 2**20); time.sleep(60)\""
    resources = {"limits": {"memory": "100Mi"}, "requests": {"memory": "100Mi"}}
    create_pod(plane, "hog", [container("main", hog, resources=resources)])

    pod = wait_for(lambda: pod_phase(plane, "hog", "Failed"), "the OOM kill", 30)
    terminated = main_state(pod)["terminated"]
    assert (terminated["exitCode"], terminated["reason"]) == (137, "OOMKilled")


def test_the_image_pull_fault_holds_a_pod_until_it_is_cleared(
    plane: ControlPlane, agent: Agent, namespace: str
) -> None:
    agent.set_faults(failing_images=["registry.invalid/*"])
    try:
        pulled = container("main", "echo pulled", image="registry.invalid/app:1")
        create_pod(plane, "unpullable", [pulled])
        wait_for(lambda: waiting_reason(plane, "unpullable") == "ImagePullBackOff", "ImagePullBackOff")
    finally:
        agent.set_faults(failing_images=[])
    wait_for(lambda: pod_phase(plane, "unpullable", "Succeeded"), "the pod to run once pulls work")


def test_a_job_stuck_on_an_image_pull_ends_at_its_deadline(
    plane: ControlPlane, agent: Agent, namespace: str
) -> None:
    # The real Job controller deletes the waiting pod at the Job's deadline; the agent ends it at once.
    stuck = job("stuck", "echo never")
    stuck["spec"]["activeDeadlineSeconds"] = 3
    stuck["spec"]["template"]["spec"]["containers"][0]["image"] = "registry.invalid/stuck:1"
    agent.set_faults(failing_images=["registry.invalid/stuck:*"])
    try:
        status, body = plane.request("POST", f"/apis/batch/v1/namespaces/{namespace}/jobs", stuck)
        assert status == 201, body
        assert wait_for(lambda: job_condition(plane, "stuck"), "the Job's deadline", 60) == {"Failed"}
    finally:
        agent.set_faults(failing_images=[])
    _, finished = plane.request("GET", f"/apis/batch/v1/namespaces/{namespace}/jobs/stuck")
    failed = [c for c in finished["status"]["conditions"] if c["type"] == "Failed"]
    assert failed[0]["reason"] == "DeadlineExceeded"
    wait_for(
        lambda: (
            not plane.request("GET", f"/api/v1/namespaces/{namespace}/pods?labelSelector=job-name%3Dstuck")[
                1
            ]["items"]
        ),
        "the pod to be gone",
        30,
    )


def test_the_config_error_fault_holds_a_pod_until_it_is_cleared(
    plane: ControlPlane, agent: Agent, namespace: str
) -> None:
    agent.set_faults(config_errors=[f"{namespace}/misconfigured"])
    try:
        create_pod(plane, "misconfigured", [container("main", "echo configured")])
        wait_for(
            lambda: waiting_reason(plane, "misconfigured") == "CreateContainerConfigError", "the config error"
        )
        time.sleep(2)  # it persists
        assert waiting_reason(plane, "misconfigured") == "CreateContainerConfigError"
    finally:
        agent.set_faults(config_errors=[])
    wait_for(
        lambda: pod_phase(plane, "misconfigured", "Succeeded"), "the pod to run once the fault is cleared"
    )


def test_the_oom_fault_kills_a_container_without_a_limit(
    plane: ControlPlane, agent: Agent, namespace: str
) -> None:
    agent.set_faults(oom=[f"{namespace}/victim"])
    try:
        create_pod(plane, "victim", [container("main", "sleep 60")])
        pod = wait_for(lambda: pod_phase(plane, "victim", "Failed"), "the OOM kill", 30)
    finally:
        agent.set_faults(oom=[])
    terminated = main_state(pod)["terminated"]
    assert (terminated["exitCode"], terminated["reason"]) == (137, "OOMKilled")


def test_fifty_jobs_at_once_all_complete(
    plane: ControlPlane, agent: Agent, namespace: str, capsys: pytest.CaptureFixture[str]
) -> None:
    started = time.monotonic()
    for index in range(50):
        status, body = plane.request(
            "POST", f"/apis/batch/v1/namespaces/{namespace}/jobs", job(f"many-{index}", "echo hi")
        )
        assert status == 201, body

    def unfinished() -> list[str]:
        _, jobs = plane.request("GET", f"/apis/batch/v1/namespaces/{namespace}/jobs")
        many = {j["metadata"]["name"]: j for j in jobs["items"] if j["metadata"]["name"].startswith("many-")}
        return [f"many-{index}" for index in range(50) if not _complete(many.get(f"many-{index}"))]

    def pod_phases(names: list[str]) -> dict[str, Any]:
        _, pods = plane.request("GET", f"/api/v1/namespaces/{namespace}/pods")
        return {
            p["metadata"]["name"]: (p.get("spec", {}).get("nodeName"), p.get("status", {}).get("phase"))
            for p in pods["items"]
            if p["metadata"].get("labels", {}).get("job-name") in names
        }

    deadline = time.monotonic() + 180
    while (left := unfinished()) and time.monotonic() < deadline:
        time.sleep(0.5)  # the state lives in the servers: polling is the only way to see it
    if left:
        pytest.fail(
            f"{len(left)} Jobs did not complete within 180 s: {left[:5]}; their pods: {pod_phases(left[:5])}"
        )
    with capsys.disabled():
        elapsed, rss = time.monotonic() - started, process_rss(agent.process.pid) / 2**20
        print(
            f"\n50 Jobs created and completed on the node agent in {elapsed:.1f} s; agent RSS {rss:.0f} MiB"
        )


def test_the_unreachable_fault_makes_the_node_not_ready(plane: ControlPlane, agent: Agent) -> None:
    assert wait_for(lambda: node_ready(plane) == "True", "the node to be Ready")
    agent.set_faults(unreachable=True)
    try:
        wait_for(lambda: node_ready(plane) == "Unknown", "the node to go NotReady", NOT_READY_WITHIN)
    finally:
        agent.set_faults(unreachable=False)
    wait_for(lambda: node_ready(plane) == "True", "the node to be Ready again", 30)
