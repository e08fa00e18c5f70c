"""Fault injection reaches kubernetes_asyncio as the apiserver's errors would; stats count every request."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from kubernetes_asyncio import client, watch  # noqa: TID251 - these tests drive the API directly
from kubernetes_asyncio.client.exceptions import ApiException  # noqa: TID251

from tests.emulator.helpers import job_body
from tests.k8s_emulator import WRITE_VERBS, ControlError

pytestmark = pytest.mark.integration


async def test_429_with_retry_after_reaches_the_client(api, namespace, control):
    control.set_faults(error_rates={429: 1.0}, verbs=["create"], resources=["jobs"], retry_after_seconds=3)
    batch, core = client.BatchV1Api(api), client.CoreV1Api(api)
    with pytest.raises(ApiException) as throttled:
        await batch.create_namespaced_job(namespace, job_body("throttled", "true"))
    assert throttled.value.status == 429
    assert throttled.value.headers["Retry-After"] == "3"
    status = json.loads(throttled.value.body)
    assert status["reason"] == "TooManyRequests"
    assert status["details"]["retryAfterSeconds"] == 3
    # The rule is limited to creating jobs: reads and other resources are served.
    assert (await batch.list_namespaced_job(namespace)).items == []
    await core.create_namespaced_config_map(namespace, {"metadata": {"name": "unaffected"}})


async def test_an_error_rate_fails_about_that_share_of_requests_deterministically(api, namespace, control):
    core = client.CoreV1Api(api)

    async def pattern() -> list[int]:
        control.set_faults(error_rates={500: 0.3}, resources=["configmaps"], seed=7)
        codes = []
        for _ in range(60):
            response = await core.list_namespaced_config_map(namespace, _preload_content=False)
            codes.append(response.status)
            if response.status == 500:
                assert json.loads(await response.read())["reason"] == "InternalError"
            response.release()
        return codes

    control.reset_stats()
    first = await pattern()
    assert set(first) == {200, 500}
    failures = first.count(500)
    assert 6 <= failures <= 35
    assert (
        control.request_count(verb="list", resource="configmaps", namespace=namespace, code=500) == failures
    )
    assert (
        control.request_count(verb="list", resource="configmaps", namespace=namespace, code=200)
        == 60 - failures
    )
    assert await pattern() == first


async def test_latency_is_added_to_api_requests_but_not_to_control_requests(api, namespace, control):
    control.set_faults(latency=0.3, error_rates={503: 1.0}, resources=["secrets"])
    core = client.CoreV1Api(api)
    started = time.monotonic()
    await core.list_namespaced_config_map(namespace)
    assert time.monotonic() - started >= 0.3
    started = time.monotonic()
    state = control.state()
    assert time.monotonic() - started < 0.3
    assert state["faults"]["latency"] == [0.3, 0.3]
    with pytest.raises(ApiException) as unavailable:
        await core.list_namespaced_secret(namespace)
    assert unavailable.value.status == 503


async def test_faults_apply_to_watch_calls(api, namespace, control):
    control.set_faults(error_rates={503: 1.0}, verbs=["watch"])
    core = client.CoreV1Api(api)

    async def drain() -> None:
        async with asyncio.timeout(10), watch.Watch() as stream:
            async for _ in stream.stream(core.list_namespaced_config_map, namespace, timeout_seconds=5):
                pass

    with pytest.raises(ApiException) as unavailable:
        await drain()
    assert unavailable.value.status == 503


async def test_stats_count_writes_by_namespace(api, namespace, control):
    batch = client.BatchV1Api(api)
    control.reset_stats()
    await batch.create_namespaced_job(namespace, job_body("counted", "true", suspend=True))
    await batch.patch_namespaced_job("counted", namespace, {"metadata": {"labels": {"a": "b"}}})
    await batch.read_namespaced_job("counted", namespace)
    assert control.request_count(verb=WRITE_VERBS, namespace=namespace) == 2
    assert control.request_count(verb="create", resource="jobs", namespace=namespace, code=201) == 1
    assert control.request_count(verb="get", resource="jobs", namespace=namespace) == 1


async def test_bad_fault_settings_are_refused(control):
    with pytest.raises(ControlError, match="within"):
        control._call("PUT", "faults", {"rules": [{"code": 500, "rate": 2}]})
    with pytest.raises(ControlError, match="kubelet mode"):
        control.set_kubelet("sideways")
