"""The control plane built from source (bucketrun.devtools.control_plane) is a real, secured cluster:

1. a ServiceAccount token from the TokenRequest API is allowed exactly its Role's verbs, 403 elsewhere;
2. a namespace labelled ``pod-security.kubernetes.io/enforce: restricted`` refuses a pod that breaks
   the restricted profile and admits one that keeps it;
3. the controller manager turns a Job into a pod, and the scheduler binds it once a Ready Node exists
   (made by hand here, as a node agent registers one);
4. after an etcd compaction and an API server restart, reads and watches at an older
   resourceVersion get 410 (a running API server serves them from its watch cache: it learns only of
   the compactions it runs itself);
5. the API server stops and starts again on the same port with the same data.

Startup time and resident memory of each server are printed. Skipped, saying why, where
``make servers`` has not built the binaries.
"""

from __future__ import annotations

import json
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from functools import partial
from typing import Any

import pytest

from bucketrun.devtools.control_plane import (
    ControlPlane,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

NAMESPACE = "cp-test"
RESTRICTED_CONTAINER = {
    "name": "main",
    "image": "busybox",
    "command": ["true"],
    "securityContext": {
        "runAsNonRoot": True,
        "runAsUser": 1000,
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    },
}


def wait_for(check: Callable[[], Any], what: str, within: float = 60.0) -> Any:
    """Poll *check* until it returns something truthy; fail naming *what* after *within* s."""
    deadline, last = time.monotonic() + within, None
    while time.monotonic() < deadline:
        if last := check():
            return last
        time.sleep(0.2)  # the state lives in the servers: polling is the only way to see it
    pytest.fail(f"timed out after {within} s waiting for {what} (last: {last!r})")


@pytest.fixture(scope="module")
def plane(private_control_plane: ControlPlane) -> ControlPlane:
    return private_control_plane


@pytest.fixture(scope="module")
def namespace(plane: ControlPlane) -> str:
    labels = {"pod-security.kubernetes.io/enforce": "restricted"}
    ns = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE, "labels": labels}}
    status, body = plane.request("POST", "/api/v1/namespaces", ns)
    assert status == 201, body
    # the controller manager creates both: pods need the ServiceAccount to be admitted, and the CA
    # ConfigMap for their token volume
    for path in ("serviceaccounts/default", "configmaps/kube-root-ca.crt"):
        wait_for(partial(exists, plane, f"/api/v1/namespaces/{NAMESPACE}/{path}"), path)
    return NAMESPACE


def exists(plane: ControlPlane, path: str) -> bool:
    return plane.request("GET", path)[0] == 200


def call(plane: ControlPlane, method: str, path: str, token: str, body: Any = None) -> int:
    """The HTTP status of one API call authenticated by a bearer *token*."""
    context = ssl.create_default_context(cafile=str(plane.ca_cert))
    request = urllib.request.Request(  # noqa: S310 - https to the test's server
        plane.api_url + path,
        data=json.dumps(body).encode() if body is not None else None,
        method=method,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30, context=context) as response:  # noqa: S310
            return int(response.status)
    except urllib.error.HTTPError as error:
        with error:  # an error answer holds its connection open until closed
            return error.code


def test_startup_and_memory_of_each_server(plane: ControlPlane, capsys: pytest.CaptureFixture[str]) -> None:
    with capsys.disabled():
        print(f"\ncontrol plane at {plane.api_url}:\n{plane.summary()}")
    assert set(plane.components) == {"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler"}
    assert all(pid for pid in plane.pids.values()), plane.pids
    assert all(plane.rss().values())
    assert plane.versions["kube-apiserver"].startswith("v1.")
    out = plane.kubectl("version", "--output=json").stdout
    assert json.loads(out)["serverVersion"]["gitVersion"] == plane.versions["kube-apiserver"]


def test_token_is_allowed_exactly_its_roles_verbs(plane: ControlPlane, namespace: str) -> None:
    base = f"/api/v1/namespaces/{namespace}"
    rbac = f"/apis/rbac.authorization.k8s.io/v1/namespaces/{namespace}"
    sa = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "reader"}}
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": {"name": "configmap-reader"},
        "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list"]}],
    }
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": "reader"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "configmap-reader"},
        "subjects": [{"kind": "ServiceAccount", "name": "reader", "namespace": namespace}],
    }
    for path, doc in (
        (f"{base}/serviceaccounts", sa),
        (f"{rbac}/roles", role),
        (f"{rbac}/rolebindings", binding),
    ):
        status, body = plane.request("POST", path, doc)
        assert status == 201, body
    token_request = {
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenRequest",
        "spec": {"expirationSeconds": 600},
    }
    status, body = plane.request("POST", f"{base}/serviceaccounts/reader/token", token_request)
    assert status == 201, body
    token = body["status"]["token"]

    configmap = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "written"}}
    assert call(plane, "GET", f"{base}/configmaps", token) == 200
    assert call(plane, "GET", f"{base}/configmaps/kube-root-ca.crt", token) == 200
    assert call(plane, "POST", f"{base}/configmaps", token, configmap) == 403
    assert call(plane, "DELETE", f"{base}/configmaps/kube-root-ca.crt", token) == 403
    assert call(plane, "GET", f"{base}/secrets", token) == 403
    assert call(plane, "GET", "/api/v1/namespaces/default/configmaps", token) == 403
    assert call(plane, "GET", f"{base}/configmaps", "not-a-token") == 401


def test_restricted_pod_security_is_enforced(plane: ControlPlane, namespace: str) -> None:
    path = f"/api/v1/namespaces/{namespace}/pods?dryRun=All"
    plain = {"name": "main", "image": "busybox", "command": ["true"]}

    def pod(container: dict[str, Any]) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "p"},
            "spec": {"containers": [container]},
        }

    status, body = plane.request("POST", path, pod(plain))
    assert status == 403, body
    assert 'violates PodSecurity "restricted:latest"' in body["message"]
    status, body = plane.request("POST", path, pod(RESTRICTED_CONTAINER))
    assert status == 201, body


def test_job_gets_a_pod_bound_once_a_ready_node_exists(plane: ControlPlane, namespace: str) -> None:
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "hello"},
        "spec": {
            "backoffLimit": 0,
            "template": {"spec": {"restartPolicy": "Never", "containers": [RESTRICTED_CONTAINER]}},
        },
    }
    status, body = plane.request("POST", f"/apis/batch/v1/namespaces/{namespace}/jobs", job)
    assert status == 201, body

    def job_pod() -> dict[str, Any] | None:
        _, pods = plane.request("GET", f"/api/v1/namespaces/{namespace}/pods?labelSelector=job-name%3Dhello")
        return pods["items"][0] if pods["items"] else None

    pod = wait_for(job_pod, "the Job controller's pod")
    assert pod["metadata"]["ownerReferences"][0]["kind"] == "Job"

    def unschedulable() -> bool:
        conditions = (job_pod() or {}).get("status", {}).get("conditions", [])
        return any(c["type"] == "PodScheduled" and c.get("reason") == "Unschedulable" for c in conditions)

    wait_for(unschedulable, "the scheduler to find no node for the pod")

    make_ready_node(plane, "fake-node")
    bound = wait_for(lambda: (job_pod() or {}).get("spec", {}).get("nodeName"), "the pod bound to the node")
    assert bound == "fake-node"


def make_ready_node(plane: ControlPlane, name: str) -> None:
    """A Node object as a kubelet registers one: capacity, allocatable and a Ready condition."""
    resources = {"cpu": "4", "memory": "8Gi", "pods": "110"}
    node = {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
    }
    status, body = plane.request("POST", "/api/v1/nodes", node)
    assert status == 201, body
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    ready = {
        "type": "Ready",
        "status": "True",
        "reason": "KubeletReady",
        "lastHeartbeatTime": now,
        "lastTransitionTime": now,
    }
    node_status = {
        "capacity": resources,
        "allocatable": resources,
        "conditions": [ready],
        "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
    }
    status, body = plane.request("PUT", f"/api/v1/nodes/{name}/status", {**body, "status": node_status})
    assert status == 200, body


def test_compaction_and_restart_make_older_reads_gone(plane: ControlPlane, namespace: str) -> None:
    configmaps = f"/api/v1/namespaces/{namespace}/configmaps"
    old = plane.request("GET", configmaps)[1]["metadata"]["resourceVersion"]
    for index in range(3):
        configmap = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"after-{index}"}}
        assert plane.request("POST", configmaps, configmap)[0] == 201
    exact = f"{configmaps}?resourceVersion={old}&resourceVersionMatch=Exact"

    assert plane.compact() > int(old)
    # the running API server's watch cache still holds the history: it did not compact etcd itself
    assert plane.request("GET", exact)[0] == 200
    plane.stop_apiserver()
    plane.start_apiserver()

    status, body = plane.request("GET", exact)
    assert status == 410, body
    assert body["reason"] == "Expired", body
    event = watch_first_event(plane, f"{configmaps}?watch=1&resourceVersion={old}&timeoutSeconds=5")
    assert event["type"] == "ERROR", event
    assert event["object"]["code"] == 410, event


def watch_first_event(plane: ControlPlane, path: str) -> dict[str, Any]:
    """The first event of a watch as the admin."""
    request = urllib.request.Request(plane.api_url + path)  # noqa: S310 - https to the test's server
    with urllib.request.urlopen(request, timeout=30, context=plane.admin_context) as response:  # noqa: S310
        return dict(json.loads(response.readline()))


def test_apiserver_restarts_on_the_same_port_with_its_data(plane: ControlPlane, namespace: str) -> None:
    port = plane.api_port
    plane.stop_apiserver()
    assert plane.pids["kube-apiserver"] is None
    with pytest.raises(urllib.error.URLError):
        plane.request("GET", "/api/v1/namespaces")
    plane.start_apiserver()
    assert plane.api_port == port
    assert plane.request("GET", f"/api/v1/namespaces/{namespace}")[0] == 200
    print(f"kube-apiserver restarted in {plane.startup_seconds['kube-apiserver']:.1f} s")
