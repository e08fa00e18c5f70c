"""Watch semantics through kubernetes_asyncio's Watch: replay, selectors, bookmarks, timeouts, 410, drops."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator

import pytest
from kubernetes_asyncio import client, watch  # noqa: TID251 - these tests drive the API directly
from kubernetes_asyncio.client.exceptions import ApiException  # noqa: TID251

from tests.backends.kubernetes import api_client_for
from tests.emulator.conftest import BOOKMARK_INTERVAL
from tests.emulator.helpers import wait_for
from tests.k8s_emulator import run_emulator

pytestmark = pytest.mark.integration


def _cm(name: str, **labels: str) -> dict:
    return {"metadata": {"name": name, "labels": labels}}


async def _collect(func, *args, count: int | None = None, within: float = 10.0, **kwargs) -> list[dict]:
    """Events from one Watch.stream (type, name, resourceVersion), until *count* or the stream ends."""
    events: list[dict] = []
    async with asyncio.timeout(within), watch.Watch() as stream:
        async for event in stream.stream(func, *args, **kwargs):
            meta = event["raw_object"].get("metadata", {})
            events.append(
                {"type": event["type"], "name": meta.get("name"), "rv": int(meta["resourceVersion"])}
            )
            if count is not None and len(events) >= count:
                break
    return events


async def test_watch_from_a_resource_version_replays_exactly_the_missed_events(api, namespace):
    core = client.CoreV1Api(api)
    start = int((await core.list_namespaced_config_map(namespace)).metadata.resource_version)
    x = await core.create_namespaced_config_map(namespace, _cm("x"))
    x_patched = await core.patch_namespaced_config_map("x", namespace, {"data": {"k": "v"}})
    await core.create_namespaced_config_map("default", _cm(f"elsewhere-{namespace}"))  # another namespace
    y = await core.create_namespaced_config_map(namespace, _cm("y"))
    await core.delete_namespaced_config_map("x", namespace)
    try:
        events = await _collect(
            core.list_namespaced_config_map, namespace, resource_version=str(start), timeout_seconds=1
        )
    finally:
        await core.delete_namespaced_config_map(f"elsewhere-{namespace}", "default")
    assert [(e["type"], e["name"]) for e in events] == [
        ("ADDED", "x"),
        ("MODIFIED", "x"),
        ("ADDED", "y"),
        ("DELETED", "x"),
    ]
    revisions = [e["rv"] for e in events]
    assert revisions == sorted(revisions)
    assert revisions[0] == int(x.metadata.resource_version) > start
    assert revisions[1] == int(x_patched.metadata.resource_version)
    assert revisions[2] == int(y.metadata.resource_version)


async def test_watch_without_a_resource_version_starts_with_synthetic_added_events_then_goes_live(
    api, namespace, control
):
    core = client.CoreV1Api(api)
    await core.create_namespaced_config_map(namespace, _cm("before"))

    async def later_write() -> None:
        await _wait_open_watches(control, 1)  # "after" must arrive live, not in the initial list
        await core.create_namespaced_config_map(namespace, _cm("after"))

    writer = asyncio.create_task(later_write())
    events = await _collect(core.list_namespaced_config_map, namespace, count=2, timeout_seconds=5)
    await writer
    assert [(e["type"], e["name"]) for e in events] == [("ADDED", "before"), ("ADDED", "after")]


async def test_label_selector_watch_turns_selector_transitions_into_added_and_deleted(api, namespace):
    core = client.CoreV1Api(api)
    start = (await core.list_namespaced_config_map(namespace)).metadata.resource_version
    await core.create_namespaced_config_map(namespace, _cm("a", tier="web"))
    await core.create_namespaced_config_map(namespace, _cm("c", tier="db"))
    await core.patch_namespaced_config_map("a", namespace, {"metadata": {"labels": {"tier": "db"}}})
    await core.patch_namespaced_config_map("c", namespace, {"metadata": {"labels": {"tier": "web"}}})
    await core.patch_namespaced_config_map("c", namespace, {"data": {"still": "web"}})
    await core.delete_namespaced_config_map("c", namespace)
    await core.delete_namespaced_config_map("a", namespace)
    events = await _collect(
        core.list_namespaced_config_map,
        namespace,
        label_selector="tier=web",
        resource_version=start,
        timeout_seconds=1,
    )
    assert [(e["type"], e["name"]) for e in events] == [
        ("ADDED", "a"),
        ("DELETED", "a"),
        ("ADDED", "c"),
        ("MODIFIED", "c"),
        ("DELETED", "c"),
    ]


async def test_cluster_wide_job_watch_sees_every_namespace(api, namespace, control):
    control.set_kubelet("off")
    batch = client.BatchV1Api(api)
    start = (await batch.list_job_for_all_namespaces()).metadata.resource_version
    body = {
        "metadata": {"name": "w"},
        "spec": {
            "suspend": True,
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "c", "image": "x", "command": ["true"]}],
                }
            },
        },
    }
    await batch.create_namespaced_job(namespace, body)
    events = await _collect(
        batch.list_job_for_all_namespaces,
        resource_version=start,
        field_selector=f"metadata.namespace={namespace}",
        count=1,
        timeout_seconds=5,
    )
    assert events[0]["type"] == "ADDED"
    assert events[0]["name"] == "w"


async def test_bookmarks_arrive_periodically_and_before_a_timeout_close(api, namespace):
    core = client.CoreV1Api(api)
    start = int((await core.list_namespaced_config_map(namespace)).metadata.resource_version)
    started = time.monotonic()
    events = await _collect(
        core.list_namespaced_config_map,
        namespace,
        resource_version=str(start),
        allow_watch_bookmarks=True,
        timeout_seconds=2,
    )
    bookmarks = [e for e in events if e["type"] == "BOOKMARK"]
    assert len(bookmarks) >= int(2 / BOOKMARK_INTERVAL) - 1
    assert all(b["rv"] >= start for b in bookmarks)
    assert [b["rv"] for b in bookmarks] == sorted(b["rv"] for b in bookmarks)
    assert time.monotonic() - started >= 1.9


async def test_no_bookmarks_unless_asked_for(api, namespace):
    core = client.CoreV1Api(api)
    events = await _collect(core.list_namespaced_config_map, namespace, timeout_seconds=1)
    assert events == []


async def test_timeout_seconds_ends_the_stream(api, namespace):
    core = client.CoreV1Api(api)
    started = time.monotonic()
    events = await _collect(core.list_namespaced_config_map, namespace, timeout_seconds=1, within=10)
    elapsed = time.monotonic() - started
    assert events == []
    assert 0.9 <= elapsed < 5


@pytest.fixture
async def small_window(tmp_path) -> AsyncIterator[client.CoreV1Api]:
    """An emulator of the test's own keeping 5 watch events, with 10 ConfigMaps created after `old`."""
    with run_emulator(tmp_path, history_window=5, kubelet="off") as small:
        async with await api_client_for(small.kubeconfig) as small_api:
            yield client.CoreV1Api(small_api)


async def _outrun_the_window(core: client.CoreV1Api) -> str:
    """Create 10 ConfigMaps in `default`; the resourceVersion before them (now compacted away)."""
    old = (await core.list_namespaced_config_map("default")).metadata.resource_version
    for index in range(10):
        await core.create_namespaced_config_map("default", _cm(f"n{index}"))
    return str(old)


async def test_the_history_window_compacts_old_revisions_on_its_own(small_window):
    core = small_window
    old = await _outrun_the_window(core)
    recent = int((await core.list_namespaced_config_map("default")).metadata.resource_version) - 3
    replayed = await _collect(
        core.list_namespaced_config_map, "default", resource_version=str(recent), timeout_seconds=1
    )
    assert [e["name"] for e in replayed] == ["n7", "n8", "n9"]
    for kwargs in ({"timeout_seconds": 5}, {}):  # with a timeout, and a watch that would run for ever
        with pytest.raises(ApiException) as expired:
            await _collect(core.list_namespaced_config_map, "default", resource_version=old, **kwargs)
        assert expired.value.status == 410
        assert f"too old resource version: {old}" in expired.value.reason


async def test_the_410_is_an_http_200_stream_with_one_error_event(small_window):
    core = small_window
    old = await _outrun_the_window(core)
    response = await core.list_namespaced_config_map(
        "default", watch=True, resource_version=old, _preload_content=False
    )
    try:
        assert response.status == 200
        lines = (await response.read()).decode().splitlines()
    finally:
        response.release()
    assert len(lines) == 1
    event = json.loads(lines[0])
    assert event["type"] == "ERROR"
    assert event["object"]["code"] == 410
    assert event["object"]["reason"] == "Expired"
    assert event["object"]["kind"] == "Status"


async def test_expire_next_watch_forces_a_410(api, namespace, control):
    control.expire_next_watch()
    core = client.CoreV1Api(api)
    with pytest.raises(ApiException) as expired:
        await _collect(core.list_namespaced_config_map, namespace, timeout_seconds=5)
    assert expired.value.status == 410
    assert await _collect(core.list_namespaced_config_map, namespace, timeout_seconds=1) == []


async def _wait_open_watches(control, at_least: int) -> None:
    async def opened() -> bool | None:
        return True if control.open_watches() >= at_least else None

    await wait_for(opened, what=f"{at_least} open watch(es)")


async def test_dropping_watch_streams_ends_them_and_the_client_can_resume(api, namespace, control):
    core = client.CoreV1Api(api)
    watcher = asyncio.create_task(_collect(core.list_namespaced_config_map, namespace, timeout_seconds=30))
    await _wait_open_watches(control, 1)
    started = time.monotonic()
    assert control.drop_watches() >= 1
    assert await watcher == []
    assert time.monotonic() - started < 5


async def test_watch_forever_reconnects_after_a_drop_without_losing_or_repeating_events(
    api, namespace, control
):
    core = client.CoreV1Api(api)
    start = (await core.list_namespaced_config_map(namespace)).metadata.resource_version
    await core.create_namespaced_config_map(namespace, _cm("first"))
    watcher = asyncio.create_task(
        _collect(core.list_namespaced_config_map, namespace, resource_version=start, count=3)
    )
    await _wait_open_watches(control, 1)
    await asyncio.sleep(0.1)  # let "first" reach the client before the drop
    control.drop_watches()
    await core.create_namespaced_config_map(namespace, _cm("second"))
    await core.delete_namespaced_config_map("first", namespace)
    events = await watcher
    assert [(e["type"], e["name"]) for e in events] == [
        ("ADDED", "first"),
        ("ADDED", "second"),
        ("DELETED", "first"),
    ]
    served = control.state()["watches"]["served"]
    assert served >= 2


async def test_a_stalled_stream_goes_silent_but_stays_open_until_the_client_leaves(api, namespace, control):
    core = client.CoreV1Api(api)
    start = (await core.list_namespaced_config_map(namespace)).metadata.resource_version
    response = await core.list_namespaced_config_map(
        namespace,
        watch=True,
        allow_watch_bookmarks=True,
        resource_version=start,
        timeout_seconds=1,
        _preload_content=False,
    )
    try:
        async with asyncio.timeout(10):
            first = json.loads(await response.content.readline())
        assert first["type"] == "BOOKMARK"  # the stream is alive
        assert control.stall_watches() == 1
        await core.create_namespaced_config_map(namespace, _cm("unseen"))
        # Nothing more arrives: no event, no bookmark, no end at timeoutSeconds (a real end would be EOF).
        silence = 1 + 3 * BOOKMARK_INTERVAL
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(silence):
                await response.content.readline()
        assert control.stalled_watches() == 1
        assert control.open_watches() == 0
    finally:
        response.close()

    async def released() -> bool | None:
        return True if control.stalled_watches() == 0 else None

    await wait_for(released, what="the stalled stream to end once its client left")
    # Later streams are served normally, and resume from where the stalled one was.
    events = await _collect(core.list_namespaced_config_map, namespace, resource_version=start, count=1)
    assert [(e["type"], e["name"]) for e in events] == [("ADDED", "unseen")]


async def test_a_streaming_list_is_refused_naming_the_parameter(api, namespace):
    core = client.CoreV1Api(api)
    with pytest.raises(ApiException) as refused:
        await core.list_namespaced_config_map(
            namespace, watch=True, send_initial_events=True, resource_version_match="NotOlderThan"
        )
    assert refused.value.status == 400
    assert "sendInitialEvents=true (a streaming list) is not emulated" in refused.value.body
