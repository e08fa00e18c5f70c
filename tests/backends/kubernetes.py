"""Kubernetes for tests: a K3s container, a configured cluster, the local control plane built from
source, or the API emulator over real HTTP.

Choice order (`kube_backend`, once per session):
1. testcontainers K3s, where a Docker engine answers;
2. the cluster of the `KUBECONFIG` environment variable (its first file, current context);
3. the local control plane (`tests.backends.local_kube`: etcd, kube-apiserver, the controller manager
   and the scheduler that `make servers` builds, the node agent running pods, a fault proxy in front);
4. `tests.k8s_emulator` (fallback where the servers are not built: a Job controller and a kubelet of
   our own).
`BUCKETRUN_TEST_KUBE=local` or `=emulator` picks one of the last two (and fails if it cannot start).

`kube` gives each test its own namespace (created first, deleted afterwards) and the cluster's control
client: the emulator's, or the local cluster's with the same interface (None on other clusters: tests
needing fault injection call `kube.require_control()`, which skips them there). `kube_api` is a
kubernetes_asyncio ApiClient for that cluster.
"""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from kubernetes_asyncio import client, config  # noqa: TID251 - test infrastructure talks to the API directly
from kubernetes_asyncio.client.exceptions import ApiException  # noqa: TID251

from bucketrun.devtools.control_plane import (
    ControlPlane,
    ServersNotBuiltError,
    find_binaries,
    start_control_plane,
)
from tests.backends import docker_available, import_quietly, record_backend
from tests.backends.local_kube import LocalClusterControl, run_local_cluster
from tests.k8s_emulator import EmulatorControl, run_emulator

_NAMESPACE_PREFIX = "t-"
_CHOICE_ENV = "BUCKETRUN_TEST_KUBE"
_CHOICES = ("local", "emulator")
_SERVICE_ACCOUNT_TIMEOUT = 30.0
"""Seconds a real cluster's serviceaccount controller may take to create a new namespace's `default`."""
Control = EmulatorControl | LocalClusterControl
_NAMESPACE_SLUG = 40


@dataclass(frozen=True)
class KubeBackend:
    """The cluster this session tests against."""

    name: str
    """"testcontainers", "env", "local" or "emulator"."""
    kubeconfig: Path
    control: Control | None
    """The emulator's or the local cluster's control client; None for other clusters."""
    detail: str

    @property
    def real(self) -> bool:
        """True on a real Kubernetes (everything but the emulator)."""
        return self.name != "emulator"


@dataclass(frozen=True)
class KubeTestEnv:
    """One test's slice of the cluster: its own namespace, plus how to reach and (maybe) steer the cluster."""

    namespace: str
    kubeconfig: Path
    control: Control | None
    backend: KubeBackend

    def require_control(self) -> Control:
        """The cluster's control client, or skip the test on a cluster without one (no fault injection)."""
        if self.control is None:
            pytest.skip(f"needs the cluster's fault control; the backend is {self.backend.name}")
        return self.control


def namespace_for(test_name: str) -> str:
    """A unique DNS-1123 namespace name derived from the test's name."""
    slug = re.sub(r"[^a-z0-9]+", "-", test_name.lower()).strip("-")[:_NAMESPACE_SLUG].strip("-") or "test"
    return f"{_NAMESPACE_PREFIX}{slug}-{secrets.token_hex(3)}"


async def api_client_for(kubeconfig: Path) -> client.ApiClient:
    """A kubernetes_asyncio ApiClient configured from *kubeconfig* (close it when done)."""
    configuration = client.Configuration()
    await config.load_kube_config(config_file=str(kubeconfig), client_configuration=configuration)
    return client.ApiClient(configuration=configuration)


@pytest.fixture(scope="session")
def kube_backend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeBackend]:
    """The session's cluster: K3s in Docker, else $KUBECONFIG, else the emulator (printed either way)."""
    if docker_available():
        containers = import_quietly("testcontainers.community.k3s")
        with containers.K3SContainer() as k3s:
            path = tmp_path_factory.mktemp("k3s") / "kubeconfig"
            path.write_text(k3s.config_yaml())
            record_backend("kubernetes", "testcontainers", "k3s container")
            yield KubeBackend("testcontainers", path, None, "k3s container")
        return
    choice = os.environ.get(_CHOICE_ENV, "")
    if choice and choice not in _CHOICES:
        raise pytest.UsageError(f"{_CHOICE_ENV} must be one of {', '.join(_CHOICES)}, not {choice!r}")
    configured = os.environ.get("KUBECONFIG")
    if configured and not choice:
        path = Path(configured.split(os.pathsep)[0]).expanduser()
        record_backend("kubernetes", "env", f"KUBECONFIG={path}")
        yield KubeBackend("env", path, None, f"KUBECONFIG={path}")
        return
    if choice != "emulator":
        missing = missing_servers()
        if missing is None:
            with run_local_cluster(tmp_path_factory.mktemp("kube-local")) as cluster:
                detail = f"{cluster.plane.api_url} via fault proxy {cluster.proxy.url}"
                versions = cluster.plane.versions["kube-apiserver"]
                record_backend("kubernetes", "local", f"kube-apiserver {versions} at {detail}")
                record_backend("kubernetes-servers", "local", cluster.summary().replace("\n", "; "))
                yield KubeBackend("local", cluster.kubeconfig, cluster.control, detail)
            return
        if choice == "local":
            raise pytest.UsageError(f"{_CHOICE_ENV}=local but {missing}")
    with run_emulator(tmp_path_factory.mktemp("k8s-emulator")) as emulator:
        record_backend("kubernetes", "emulator", emulator.url)
        yield KubeBackend("emulator", emulator.kubeconfig, emulator.control, emulator.url)


def missing_servers() -> str | None:
    """Why the local control plane cannot run here (a binary `make servers` did not build), or None."""
    try:
        find_binaries()
    except ServersNotBuiltError as error:
        return str(error)
    return None


def require_built_servers() -> None:
    """Skip the test where `make servers` has not built the control plane; fail it under CI, which
    builds it."""
    missing = missing_servers()
    if missing is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI builds the control plane with make servers, yet {missing}")
        pytest.skip(f"the control plane is not built: {missing}")


@pytest.fixture(scope="module")
def private_control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    """A control plane of the module's own (no node, no proxy), for tests that stop, compact or fault
    it, or run their own node agent; skipped where `make servers` has not built it (a failure under CI,
    which builds it)."""
    require_built_servers()
    plane = start_control_plane(tmp_path_factory.mktemp("control-plane"))
    try:
        yield plane
    finally:
        plane.stop()


@pytest.fixture
async def kube(kube_backend: KubeBackend, request: pytest.FixtureRequest) -> AsyncIterator[KubeTestEnv]:
    """A fresh namespace for this test (deleted afterwards); emulator knobs and faults reset first."""
    if kube_backend.control is not None:
        kube_backend.control.reset()
    namespace = namespace_for(request.node.name)
    async with await api_client_for(kube_backend.kubeconfig) as api:
        core = client.CoreV1Api(api)
        await core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace)))
        if kube_backend.real:
            await _default_service_account(core, namespace)
        try:
            yield KubeTestEnv(namespace, kube_backend.kubeconfig, kube_backend.control, kube_backend)
        finally:
            control = kube_backend.control
            if isinstance(control, LocalClusterControl):
                control.reset_api()  # API faults a test left on must not break the clean-up
                await _end_workloads(api, namespace)  # before the node agent's hold is lifted
            elif kube_backend.real:
                await _end_workloads(api, namespace)
            if control is not None:
                control.reset()  # faults a test left on must not break the clean-up
            try:
                await core.delete_namespace(namespace, propagation_policy="Background")
            except ApiException as error:
                if error.status != 404:
                    raise


@pytest.fixture
async def kube_api(kube: KubeTestEnv) -> AsyncIterator[client.ApiClient]:
    """A kubernetes_asyncio ApiClient for the test's cluster, closed afterwards."""
    async with await api_client_for(kube.kubeconfig) as api:
        yield api


async def _default_service_account(core: client.CoreV1Api, namespace: str) -> None:
    """Wait for the ServiceAccount `default` of a new namespace: until the serviceaccount controller has
    created it, ServiceAccount admission refuses the namespace's pods."""
    deadline = time.monotonic() + _SERVICE_ACCOUNT_TIMEOUT
    while True:
        try:
            await core.read_namespaced_service_account("default", namespace)
        except ApiException as error:
            if error.status != 404 or time.monotonic() > deadline:
                raise
        else:
            return
        await asyncio.sleep(0.05)


async def _end_workloads(api: client.ApiClient, namespace: str) -> None:
    """Delete a test's Jobs, then force-delete their pods (grace 0), before its namespace goes.

    A real namespace controller deletes pods gracefully and one by one: the pods a test held Pending
    (hundreds, for the burst tests) would start on the node agent as soon as the next test clears the
    hold, and run beside it. Jobs first, so that the Job controller makes no new pod meanwhile."""
    await client.BatchV1Api(api).delete_collection_namespaced_job(namespace, propagation_policy="Background")
    await client.CoreV1Api(api).delete_collection_namespaced_pod(namespace, grace_period_seconds=0)
