"""The fault proxy in front of the real kube-apiserver (built by `make servers`): what its control
interface promises, checked with kubernetes_asyncio through the proxy against the real server.

The module starts its own control plane (etcd, kube-apiserver, controller manager, scheduler; no node)
and stops it at the end; it stops and restarts the API server for the outage test, so it shares the
control plane with no other module. Skipped, saying why, where the binaries are not built.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest
from kubernetes_asyncio import client, watch  # noqa: TID251 - the tests call the API directly
from kubernetes_asyncio.client.exceptions import ApiException  # noqa: TID251

from bucketrun.devtools.control_plane import (
    ControlPlane,
)
from dispatcher.adapters.kube import KubeApi
from dispatcher.adapters.kube.creating import create_job
from dispatcher.domain.errors import TransientError
from tests.backends import record_backend
from tests.backends.fault_proxy import UNREACHABLE, FaultProxyControl, FaultProxyHandle, proxy_for
from tests.backends.kubernetes import api_client_for
from tests.emulator.helpers import wait_for
from tests.integration.watcher_support import job_doc

pytestmark = pytest.mark.integration

WITHIN = 20.0  # bound of every wait on a condition


@pytest.fixture(scope="module")
def plane(private_control_plane: ControlPlane) -> ControlPlane:
    return private_control_plane


@pytest.fixture(scope="module")
def proxy(plane: ControlPlane) -> Iterator[FaultProxyHandle]:
    with proxy_for(plane) as handle:
        record_backend("kubernetes-proxy", "fault-proxy", f"{handle.url} -> {plane.api_url}")
        yield handle


@pytest.fixture
def control(proxy: FaultProxyHandle) -> Iterator[FaultProxyControl]:
    proxy.control.reset()
    proxy.control.reset_stats()
    yield proxy.control
    proxy.control.reset()


@pytest.fixture
def kubeconfig(proxy: FaultProxyHandle, tmp_path: Path) -> Path:
    return proxy.write_kubeconfig(tmp_path / "proxy.kubeconfig")


@pytest.fixture
async def api(kubeconfig: Path, control: FaultProxyControl) -> AsyncIterator[client.ApiClient]:
    async with await api_client_for(kubeconfig) as api_client:
        yield api_client


@pytest.fixture
async def namespace(plane: ControlPlane, request: pytest.FixtureRequest) -> AsyncIterator[str]:
    """A namespace of the test's own, made and removed straight at the API server (not counted)."""
    name = f"fp-{request.node.name[5:25].replace('_', '-').strip('-')}-{secrets.token_hex(3)}"
    status, body = await asyncio.to_thread(
        plane.request, "POST", "/api/v1/namespaces", {"metadata": {"name": name}}
    )
    assert status == 201, body
    yield name
    await asyncio.to_thread(plane.request, "DELETE", f"/api/v1/namespaces/{name}")


def config_map(name: str) -> client.V1ConfigMap:
    return client.V1ConfigMap(metadata=client.V1ObjectMeta(name=name), data={"k": "v"})


async def test_seeded_faults_hit_only_their_verb_and_resource_and_are_counted(api, namespace, control):
    core = client.CoreV1Api(api)

    async def failures(seed: int) -> list[int]:
        control.set_faults(
            error_rates={500: 0.3, 503: 0.2}, verbs=["list"], resources=["configmaps"], seed=seed
        )
        seen, errors = [], []
        for _ in range(40):
            try:
                await core.list_namespaced_config_map(namespace)
                seen.append(200)
            except ApiException as error:
                seen.append(error.status)
                errors.append((error.status, json.loads(error.body)))
        for status, body in errors:
            assert (body["kind"], body["code"]) == ("Status", status)
            assert body["reason"] == {500: "InternalError", 503: "ServiceUnavailable"}[status]
            assert "fault proxy" in body["message"]
        await core.list_namespaced_secret(namespace)  # another resource: never hit
        await core.read_namespace(namespace)  # another verb: never hit
        return seen

    first = await failures(seed=11)
    assert first.count(500) > 0
    assert first.count(503) > 0
    assert first.count(200) > 10
    assert await failures(seed=11) == first  # the same seed rolls the same dice
    for code in (200, 500, 503):
        assert control.request_count(verb="list", resource="configmaps", namespace=namespace, code=code) == (
            2 * first.count(code)
        )
    assert control.request_count(verb="list", resource="secrets", namespace=namespace, code=200) == 2
    assert control.request_count(verb="get", resource="namespaces", code=200) == 2
    assert control.state()["faults"]["injected"] == 2 * (40 - first.count(200))


async def test_429_carries_retry_after_and_nothing_is_created(api, kubeconfig, namespace, control):
    core = client.CoreV1Api(api)
    control.set_faults(
        error_rates={429: 1.0}, verbs=["create"], resources=["configmaps"], retry_after_seconds=4
    )
    with pytest.raises(ApiException) as raised:
        await core.create_namespaced_config_map(namespace, config_map("refused"))
    assert raised.value.status == 429
    assert raised.value.headers["Retry-After"] == "4"
    body = json.loads(raised.value.body)
    assert (body["reason"], body["details"]["retryAfterSeconds"]) == ("TooManyRequests", 4)
    # bucketrun's own adapter reads it as a transient error that says how long to wait
    control.set_faults(error_rates={429: 1.0}, verbs=["create"], resources=["jobs"], retry_after_seconds=4)
    adapter = await KubeApi.connect(namespace, kubeconfig=kubeconfig, request_timeout=5.0)
    try:
        with pytest.raises(TransientError) as transient:
            await create_job(adapter, job_doc("refused"))
    finally:
        await adapter.close()
    assert (transient.value.kind, transient.value.retry_after) == ("api-429", 4.0)
    control.clear_faults()
    with pytest.raises(ApiException) as missing:
        await core.read_namespaced_config_map("refused", namespace)
    assert missing.value.status == 404  # the request never reached the API server
    await core.create_namespaced_config_map(namespace, config_map("refused"))


async def test_latency_delays_each_request(api, namespace, control):
    core = client.CoreV1Api(api)

    async def seconds_per_read() -> float:
        began = time.monotonic()
        await core.read_namespace(namespace)
        return time.monotonic() - began

    plain = min([await seconds_per_read() for _ in range(5)])
    control.set_faults(latency=0.4, resources=["namespaces"])
    delayed = [await seconds_per_read() for _ in range(3)]
    assert all(0.4 <= took < 0.4 + 1.0 for took in delayed), delayed
    assert plain < 0.2
    control.set_faults(latency=(0.1, 0.2), seed=3)
    assert 0.1 <= await seconds_per_read() < 1.2


async def test_request_counts_and_peaks_match_what_a_client_did(api, namespace, control):
    core = client.CoreV1Api(api)
    for index in range(3):
        await core.create_namespaced_config_map(namespace, config_map(f"c{index}"))
    with pytest.raises(ApiException):
        await core.create_namespaced_config_map(namespace, config_map("c0"))
    await core.read_namespaced_config_map("c1", namespace)
    with pytest.raises(ApiException):
        await core.read_namespaced_config_map("absent", namespace)
    await core.patch_namespaced_config_map("c2", namespace, {"data": {"k": "w"}})
    await core.delete_namespaced_config_map("c2", namespace)
    await core.list_namespaced_config_map(namespace)
    assert control.request_count(verb="create", resource="configmaps", namespace=namespace, code=201) == 3
    assert control.request_count(verb="create", resource="configmaps", namespace=namespace, code=409) == 1
    assert control.request_count(verb="get", resource="configmaps", code=200) == 1
    assert control.request_count(verb="get", resource="configmaps", code=404) == 1
    assert control.request_count(verb=("create", "update", "patch", "delete"), namespace=namespace) == 6
    assert control.request_count(verb="list", resource="configmaps", namespace=namespace) == 1
    assert control.request_count(namespace=namespace) == 9

    control.reset_stats()
    assert control.stats() == []
    control.set_faults(latency=0.3, verbs=["get"])
    await asyncio.gather(*(core.read_namespaced_config_map("c1", namespace) for _ in range(5)))
    assert control.peak_in_flight(verb="get", resource="configmaps") == 5
    assert control.peak_in_flight(verb="list", resource="configmaps") == 0


async def _open_watch(control: FaultProxyControl, count: int = 1) -> None:
    async def opened() -> bool | None:
        return True if await asyncio.to_thread(control.open_watches) == count else None

    await wait_for(opened, within=WITHIN, what=f"{count} relayed watch(es)")


async def test_a_watch_receives_events_and_drop_watches_ends_it(api, namespace, control):
    core = client.CoreV1Api(api)
    seen: list[tuple[str, str]] = []

    async def consume() -> None:
        async for event in watch.Watch().stream(
            core.list_namespaced_config_map, namespace, timeout_seconds=60
        ):
            seen.append((event["type"], event["object"].metadata.name))

    task = asyncio.create_task(consume())
    await _open_watch(control)
    await core.create_namespaced_config_map(namespace, config_map("live"))
    await wait_for(lambda: _now(("ADDED", "live") in seen), within=WITHIN, what="the ADDED event")
    began = time.monotonic()
    assert control.drop_watches() == 1
    async with asyncio.timeout(WITHIN):
        await task  # the stream ended cleanly: the client's iteration stops
    assert time.monotonic() - began < 5.0
    assert control.open_watches() == 0
    assert control.request_count(verb="watch", resource="configmaps", namespace=namespace, code=200) == 1


async def _now(value: bool) -> bool | None:
    return True if value else None


async def _raw_watch(session: aiohttp.ClientSession, url: str, query: str) -> aiohttp.ClientResponse:
    response = await session.get(f"{url}?watch=true&{query}")
    assert response.status == 200, await response.text()
    return response


ONLY_UNSEEN = "fieldSelector=metadata.name%3Dunseen"
"""The stalled watches see only the ConfigMap the test makes: kube-controller-manager adds kube-root-ca.crt
to every new namespace on its own time, and its ADDED event could reach the client before the stall."""


async def test_a_stalled_watch_stays_open_and_silent_until_its_client_leaves(proxy, api, namespace, control):
    core = client.CoreV1Api(api)
    url = f"{proxy.url}/api/v1/namespaces/{namespace}/configmaps"
    rv = (await core.list_namespaced_config_map(namespace)).metadata.resource_version
    async with aiohttp.ClientSession() as session:
        response = await _raw_watch(session, url, f"resourceVersion={rv}&timeoutSeconds=2&{ONLY_UNSEEN}")
        await _open_watch(control)
        assert control.stall_watches() == 1
        assert (control.open_watches(), control.stalled_watches()) == (0, 1)
        await core.create_namespaced_config_map(namespace, config_map("unseen"))
        with pytest.raises(TimeoutError):  # nothing: not the event, not the end at timeoutSeconds=2
            async with asyncio.timeout(3.5):
                await response.content.readline()
        assert not response.content.at_eof()
        assert control.stalled_watches() == 1
        response.close()  # the client gives up
    await wait_for(
        lambda: asyncio.to_thread(lambda: True if control.stalled_watches() == 0 else None),
        within=WITHIN,
        what="the stalled stream to go once its client left",
    )

    async with aiohttp.ClientSession() as session:  # drop_watches ends a stalled stream too
        rv = (await core.list_namespaced_config_map(namespace)).metadata.resource_version
        response = await _raw_watch(session, url, f"resourceVersion={rv}&timeoutSeconds=60&{ONLY_UNSEEN}")
        await _open_watch(control)
        control.stall_watches()
        assert control.drop_watches() == 1
        async with asyncio.timeout(WITHIN):
            assert await response.content.read() == b""  # a clean end, nothing relayed after the stall
        response.close()


async def test_watch_knobs_end_streams_and_add_bookmarks(proxy, api, namespace, control):
    core = client.CoreV1Api(api)
    for index in range(4):
        await core.create_namespaced_config_map(namespace, config_map(f"k{index}"))
    url = f"{proxy.url}/api/v1/namespaces/{namespace}/configmaps"
    async with aiohttp.ClientSession() as session:
        control.set_watch_knobs(drop_after_events=3)
        response = await _raw_watch(session, url, "resourceVersion=0&timeoutSeconds=60")
        async with asyncio.timeout(WITHIN):
            lines = (await response.content.read()).splitlines()
        assert [json.loads(line)["type"] for line in lines] == ["ADDED"] * 3

        control.set_watch_knobs(drop_after_events=0, drop_after_seconds=0.5)
        began = time.monotonic()
        response = await _raw_watch(session, url, "timeoutSeconds=60")
        async with asyncio.timeout(WITHIN):
            await response.content.read()
        assert 0.5 <= time.monotonic() - began < 3.0

        control.set_watch_knobs(drop_after_seconds=0, bookmark_interval=0.2)
        listed = await core.list_namespaced_config_map(namespace)
        rv = listed.metadata.resource_version
        response = await _raw_watch(
            session, url, f"resourceVersion={rv}&allowWatchBookmarks=true&timeoutSeconds=60"
        )
        async with asyncio.timeout(WITHIN):
            bookmarks = [json.loads(await response.content.readline()) for _ in range(3)]
        assert [event["type"] for event in bookmarks] == ["BOOKMARK"] * 3
        assert {event["object"]["metadata"]["resourceVersion"] for event in bookmarks} == {rv}
        assert bookmarks[0]["object"]["kind"] == "ConfigMap"
        response.close()
    with pytest.raises(ValueError, match="bookmark_interval must be positive, got 0"):
        control.set_watch_knobs(bookmark_interval=0)


async def test_expire_next_watch_answers_410_as_the_watch_cache_does(api, namespace, control):
    core = client.CoreV1Api(api)
    listed = await core.list_namespaced_config_map(namespace)
    control.expire_next_watch()
    stream = watch.Watch().stream(
        core.list_namespaced_config_map,
        namespace,
        resource_version=listed.metadata.resource_version,
        timeout_seconds=5,
    )
    with pytest.raises(ApiException) as raised:
        async for _ in stream:
            pass
    assert raised.value.status == 410
    assert "too old resource version" in str(raised.value.reason)
    assert control.state()["watches"]["expire_next"] == 0
    # only the next one: the watch after it is served
    await core.create_namespaced_config_map(namespace, config_map("after"))
    seen = []
    async with watch.Watch() as served:
        async for event in served.stream(
            core.list_namespaced_config_map,
            namespace,
            resource_version=listed.metadata.resource_version,
            timeout_seconds=5,
        ):
            # The controller manager may add the namespace's kube-root-ca.crt after the list: it comes first.
            seen.append(event["object"].metadata.name)
            if seen[-1] == "after":
                break
    assert seen[-1:] == ["after"], seen


async def test_compaction_gives_a_real_410_to_a_watch_from_before_it(api, namespace, control):
    """Events are the resource the API server keeps no watch cache for: a watch of them goes to etcd,
    which refuses a compacted revision. (Cached resources answer 410 once the cache no longer holds the
    revision, for example after the API server restarted: see the outage test.)"""
    core = client.CoreV1Api(api)
    first = None
    for index in range(3):
        created = await core.create_namespaced_event(
            namespace,
            client.CoreV1Event(
                metadata=client.V1ObjectMeta(name=f"e{index}"),
                involved_object=client.V1ObjectReference(kind="ConfigMap", name="x", namespace=namespace),
                reason="Test",
                message="a compaction test",
            ),
        )
        first = first or created.metadata.resource_version
    assert first is not None
    compacted = await asyncio.to_thread(control.compact)
    assert compacted > int(first)
    assert control.state()["compacted_revision"] == compacted
    with pytest.raises(ApiException) as raised:
        async for _ in watch.Watch().stream(
            core.list_namespaced_event, namespace, resource_version=first, timeout_seconds=5
        ):
            pass
    assert raised.value.status == 410
    with pytest.raises(ValueError, match="current revision only"):
        control.compact(revision=1)


async def test_a_bearer_token_is_forwarded_and_authorized_as_its_user(
    proxy, api, namespace, control, tmp_path
):
    rbac = client.RbacAuthorizationV1Api(api)
    core = client.CoreV1Api(api)
    await core.create_namespaced_service_account(
        namespace, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name="reader"))
    )
    await rbac.create_namespaced_role(
        namespace,
        client.V1Role(
            metadata=client.V1ObjectMeta(name="read-configmaps"),
            rules=[client.V1PolicyRule(api_groups=[""], resources=["configmaps"], verbs=["get", "list"])],
        ),
    )
    await rbac.create_namespaced_role_binding(
        namespace,
        client.V1RoleBinding(
            metadata=client.V1ObjectMeta(name="reader"),
            role_ref=client.V1RoleRef(
                api_group="rbac.authorization.k8s.io", kind="Role", name="read-configmaps"
            ),
            subjects=[client.RbacV1Subject(kind="ServiceAccount", name="reader", namespace=namespace)],
        ),
    )
    token = await core.create_namespaced_service_account_token(
        "reader", namespace, client.AuthenticationV1TokenRequest(spec=client.V1TokenRequestSpec(audiences=[]))
    )
    kubeconfig = proxy.write_kubeconfig(tmp_path / "reader.kubeconfig", token=token.status.token)
    async with await api_client_for(kubeconfig) as reader:
        as_reader = client.CoreV1Api(reader)
        await as_reader.list_namespaced_config_map(namespace)  # inside its Role
        with pytest.raises(ApiException) as refused:
            await as_reader.list_namespaced_secret(namespace)  # outside it
    assert refused.value.status == 403
    assert f"system:serviceaccount:{namespace}:reader" in json.loads(refused.value.body)["message"]
    await core.list_namespaced_secret(namespace)  # without a token: the admin's certificate
    assert control.request_count(verb="list", resource="secrets", namespace=namespace, code=403) == 1


async def test_an_api_server_outage_is_a_connection_error_then_recovers(plane, api, namespace, control):
    core = client.CoreV1Api(api)
    await core.create_namespaced_config_map(namespace, config_map("before"))
    listed = await core.list_namespaced_config_map(namespace)
    watched: list[str] = []

    async def consume() -> None:
        async for event in watch.Watch().stream(
            core.list_namespaced_config_map, namespace, timeout_seconds=120
        ):
            watched.append(event["type"])

    task = asyncio.create_task(consume())
    await _open_watch(control)
    await asyncio.to_thread(plane.stop_apiserver)
    try:
        async with asyncio.timeout(WITHIN):
            await asyncio.gather(task, return_exceptions=True)  # the stream ends (cleanly or broken)
        with pytest.raises(aiohttp.ClientConnectionError):
            await core.read_namespaced_config_map("before", namespace)
        # counted once or twice: aiohttp tries an idempotent request again on a fresh connection
        assert control.request_count(verb="get", resource="configmaps", code=UNREACHABLE) >= 1
    finally:
        await asyncio.to_thread(plane.start_apiserver)

    async def served() -> bool | None:
        try:
            await core.read_namespaced_config_map("before", namespace)
        except (aiohttp.ClientError, ApiException):
            return None
        return True

    await wait_for(served, within=WITHIN, what="reads through the proxy to work again")
    # The restarted API server's watch cache starts at the present: a watch from before is 410 Expired.
    with pytest.raises(ApiException) as raised:
        async for _ in watch.Watch().stream(
            core.list_namespaced_config_map,
            namespace,
            resource_version=listed.metadata.resource_version,
            timeout_seconds=5,
        ):
            pass
    assert raised.value.status == 410
