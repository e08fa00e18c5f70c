"""Kubernetes for tests: a K3s container, a configured cluster, or the API emulator over real HTTP.

Choice order (`kube_backend`, once per session):
1. testcontainers K3s, where a Docker engine answers;
2. the cluster of the `KUBECONFIG` environment variable (its first file, current context);
3. `tests.k8s_emulator`, started here (a Job controller and a kubelet running pods as local processes).

`kube` gives each test its own namespace (created first, deleted afterwards) and the emulator's
control client (None on real clusters: tests needing fault injection call `kube.require_control()`,
which skips them there). `kube_api` is a kubernetes_asyncio ApiClient for that cluster.
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from kubernetes_asyncio import client, config  # noqa: TID251 - test infrastructure talks to the API directly
from kubernetes_asyncio.client.exceptions import ApiException  # noqa: TID251

from tests.backends import docker_available, import_quietly, record_backend
from tests.k8s_emulator import EmulatorControl, run_emulator

_NAMESPACE_PREFIX = "t-"
_NAMESPACE_SLUG = 40


@dataclass(frozen=True)
class KubeBackend:
    """The cluster this session tests against."""

    name: str
    """"testcontainers", "env" or "emulator"."""
    kubeconfig: Path
    control: EmulatorControl | None
    """The emulator's control client; None for real clusters."""
    detail: str


@dataclass(frozen=True)
class KubeTestEnv:
    """One test's slice of the cluster: its own namespace, plus how to reach and (maybe) steer the cluster."""

    namespace: str
    kubeconfig: Path
    control: EmulatorControl | None
    backend: KubeBackend

    def require_control(self) -> EmulatorControl:
        """The emulator's control client, or skip the test on a real cluster (no fault injection there)."""
        if self.control is None:
            pytest.skip(f"needs the Kubernetes emulator's control API; the backend is {self.backend.name}")
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
    configured = os.environ.get("KUBECONFIG")
    if configured:
        path = Path(configured.split(os.pathsep)[0]).expanduser()
        record_backend("kubernetes", "env", f"KUBECONFIG={path}")
        yield KubeBackend("env", path, None, f"KUBECONFIG={path}")
        return
    with run_emulator(tmp_path_factory.mktemp("k8s-emulator")) as emulator:
        record_backend("kubernetes", "emulator", emulator.url)
        yield KubeBackend("emulator", emulator.kubeconfig, emulator.control, emulator.url)


@pytest.fixture
async def kube(kube_backend: KubeBackend, request: pytest.FixtureRequest) -> AsyncIterator[KubeTestEnv]:
    """A fresh namespace for this test (deleted afterwards); emulator knobs and faults reset first."""
    if kube_backend.control is not None:
        kube_backend.control.reset()
    namespace = namespace_for(request.node.name)
    async with await api_client_for(kube_backend.kubeconfig) as api:
        core = client.CoreV1Api(api)
        await core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace)))
        try:
            yield KubeTestEnv(namespace, kube_backend.kubeconfig, kube_backend.control, kube_backend)
        finally:
            if kube_backend.control is not None:
                kube_backend.control.reset()  # faults a test left on must not break the clean-up
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
