"""The `kube` / `kube_api` fixtures of tests/backends/kubernetes.py (registered by the root conftest)."""

from __future__ import annotations

import re

import pytest
from kubernetes_asyncio import client  # noqa: TID251 - these tests drive the API directly

pytestmark = pytest.mark.integration


async def test_kube_gives_a_fresh_namespace_and_a_working_client(kube, kube_api):
    assert re.fullmatch(r"t-[a-z0-9-]+-[0-9a-f]{6}", kube.namespace)
    assert len(kube.namespace) <= 63
    namespace = await client.CoreV1Api(kube_api).read_namespace(kube.namespace)
    assert namespace.status.phase == "Active"
    assert kube.kubeconfig.exists()


async def test_kube_resets_emulator_faults_before_each_test(kube, kube_api):
    control = kube.require_control()
    assert control.state()["faults"]["rules"] == []
    control.set_faults(error_rates={500: 1.0}, resources=["secrets"])
    with pytest.raises(client.exceptions.ApiException):
        await client.CoreV1Api(kube_api).list_namespaced_secret(kube.namespace)
