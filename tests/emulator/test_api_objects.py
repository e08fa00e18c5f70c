"""CRUD semantics through kubernetes_asyncio: names, conflicts, selectors, paging, patches, status, GC."""

from __future__ import annotations

import base64
import json

import pytest
from kubernetes_asyncio import client  # noqa: TID251 - these tests drive the API directly
from kubernetes_asyncio.client.exceptions import ApiException  # noqa: TID251

from tests.emulator.helpers import job_body
from tests.k8s_emulator.names import SUFFIX_ALPHABET

pytestmark = pytest.mark.integration


def _config_map(name: str, labels: dict[str, str] | None = None, **data: str) -> dict:
    return {"metadata": {"name": name, "labels": labels or {}}, "data": data}


async def test_create_get_list_delete_round_trip(api, namespace):
    core = client.CoreV1Api(api)
    created = await core.create_namespaced_config_map(namespace, _config_map("settings", mode="fast"))
    assert created.metadata.uid
    assert created.metadata.namespace == namespace
    assert int(created.metadata.resource_version) > 0
    assert created.metadata.creation_timestamp is not None

    fetched = await core.read_namespaced_config_map("settings", namespace)
    assert fetched.data == {"mode": "fast"}
    assert fetched.metadata.uid == created.metadata.uid

    listed = await core.list_namespaced_config_map(namespace)
    assert [item.metadata.name for item in listed.items] == ["settings"]
    assert int(listed.metadata.resource_version) >= int(created.metadata.resource_version)

    await core.delete_namespaced_config_map("settings", namespace)
    with pytest.raises(ApiException) as missing:
        await core.read_namespaced_config_map("settings", namespace)
    assert missing.value.status == 404
    assert json.loads(missing.value.body)["reason"] == "NotFound"


async def test_duplicate_name_is_409_already_exists_with_a_status_body(api, namespace):
    batch = client.BatchV1Api(api)
    await batch.create_namespaced_job(namespace, job_body("once", "true"))
    with pytest.raises(ApiException) as duplicate:
        await batch.create_namespaced_job(namespace, job_body("once", "true"))
    assert duplicate.value.status == 409
    status = json.loads(duplicate.value.body)
    assert status["kind"] == "Status"
    assert status["status"] == "Failure"
    assert status["reason"] == "AlreadyExists"
    assert status["code"] == 409
    assert status["details"] == {"name": "once", "group": "batch", "kind": "jobs"}
    assert status["message"] == 'jobs.batch "once" already exists'


async def test_generate_name_appends_five_characters_of_the_kubernetes_alphabet(api, namespace):
    core = client.CoreV1Api(api)
    names = set()
    for _ in range(5):
        created = await core.create_namespaced_config_map(namespace, {"metadata": {"generateName": "cfg-"}})
        name = created.metadata.name
        assert name.startswith("cfg-")
        assert len(name) == len("cfg-") + 5
        assert set(name[4:]) <= set(SUFFIX_ALPHABET)
        names.add(name)
    assert len(names) == 5


@pytest.mark.parametrize("bad_name", ["Upper", "under_score", "-leading", "x" * 254])
async def test_invalid_names_are_422_invalid(api, namespace, bad_name):
    core = client.CoreV1Api(api)
    with pytest.raises(ApiException) as rejected:
        await core.create_namespaced_config_map(namespace, _config_map(bad_name))
    assert rejected.value.status == 422
    status = json.loads(rejected.value.body)
    assert status["reason"] == "Invalid"
    assert status["details"]["causes"][0]["field"] == "metadata.name"


async def test_missing_name_is_422(api, namespace):
    with pytest.raises(ApiException) as rejected:
        await client.CoreV1Api(api).create_namespaced_config_map(namespace, {"metadata": {}})
    assert rejected.value.status == 422
    assert "name or generateName is required" in json.loads(rejected.value.body)["message"]


async def test_job_with_restart_policy_always_or_a_name_too_long_for_its_label_is_invalid(api, namespace):
    batch = client.BatchV1Api(api)
    always = job_body("always", "true")
    always["spec"]["template"]["spec"]["restartPolicy"] = "Always"
    with pytest.raises(ApiException) as rejected:
        await batch.create_namespaced_job(namespace, always)
    assert rejected.value.status == 422
    assert "spec.template.spec.restartPolicy" in json.loads(rejected.value.body)["message"]
    with pytest.raises(ApiException) as too_long:
        await batch.create_namespaced_job(namespace, job_body("j" * 64, "true"))
    assert too_long.value.status == 422
    assert "must be no more than 63 characters" in json.loads(too_long.value.body)["message"]


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        ("tier=web", {"a", "b"}),
        ("tier==web", {"a", "b"}),
        ("tier!=web", {"c", "d"}),
        ("tier in (web, db)", {"a", "b", "c"}),
        ("tier notin (web)", {"c", "d"}),
        ("canary", {"b"}),
        ("!canary", {"a", "c", "d"}),
        ("tier=web,!canary", {"a"}),
    ],
)
async def test_label_selectors(api, namespace, selector, expected):
    core = client.CoreV1Api(api)
    for name, labels in {
        "a": {"tier": "web"},
        "b": {"tier": "web", "canary": "yes"},
        "c": {"tier": "db"},
        "d": {},
    }.items():
        await core.create_namespaced_config_map(namespace, _config_map(name, labels))
    listed = await core.list_namespaced_config_map(namespace, label_selector=selector)
    assert {item.metadata.name for item in listed.items} == expected


async def test_malformed_label_selector_is_400(api, namespace):
    with pytest.raises(ApiException) as rejected:
        await client.CoreV1Api(api).list_namespaced_config_map(namespace, label_selector="tier in (web")
    assert rejected.value.status == 400


async def test_field_selectors_on_name_namespace_and_pod_phase(api, namespace, control):
    control.set_kubelet("off")
    core = client.CoreV1Api(api)
    await core.create_namespaced_config_map(namespace, _config_map("one"))
    await core.create_namespaced_config_map(namespace, _config_map("two"))
    by_name = await core.list_namespaced_config_map(namespace, field_selector="metadata.name=two")
    assert [i.metadata.name for i in by_name.items] == ["two"]
    not_name = await core.list_namespaced_config_map(namespace, field_selector="metadata.name!=two")
    assert [i.metadata.name for i in not_name.items] == ["one"]
    everywhere = await core.list_config_map_for_all_namespaces(
        field_selector=f"metadata.namespace={namespace}"
    )
    assert {i.metadata.name for i in everywhere.items} == {"one", "two"}
    pod = {
        "metadata": {"name": "idle"},
        "spec": {"containers": [{"name": "c", "image": "x", "command": ["true"]}]},
    }
    await core.create_namespaced_pod(namespace, pod)
    pending = await core.list_namespaced_pod(namespace, field_selector="status.phase=Pending")
    assert [p.metadata.name for p in pending.items] == ["idle"]
    running = await core.list_namespaced_pod(namespace, field_selector="status.phase=Running")
    assert running.items == []
    with pytest.raises(ApiException) as unsupported:
        await core.list_namespaced_config_map(namespace, field_selector="data.x=1")
    assert unsupported.value.status == 400


async def test_limit_and_continue_page_through_a_list(api, namespace):
    core = client.CoreV1Api(api)
    for index in range(7):
        await core.create_namespaced_config_map(namespace, _config_map(f"cm-{index}"))
    seen: list[str] = []
    token = None
    pages = 0
    first_revision = None
    while True:
        page = await core.list_namespaced_config_map(namespace, limit=3, _continue=token)
        pages += 1
        first_revision = first_revision or page.metadata.resource_version
        assert page.metadata.resource_version == first_revision
        seen += [item.metadata.name for item in page.items]
        token = page.metadata._continue
        if not token:
            break
    assert pages == 3
    assert seen == [f"cm-{index}" for index in range(7)]


async def test_put_with_a_stale_resource_version_is_409_conflict(api, namespace):
    core = client.CoreV1Api(api)
    original = await core.create_namespaced_config_map(namespace, _config_map("shared", value="1"))
    first = await core.read_namespaced_config_map("shared", namespace)
    second = await core.read_namespaced_config_map("shared", namespace)
    first.data = {"value": "2"}
    updated = await core.replace_namespaced_config_map("shared", namespace, first)
    assert int(updated.metadata.resource_version) > int(original.metadata.resource_version)
    second.data = {"value": "3"}
    with pytest.raises(ApiException) as conflict:
        await core.replace_namespaced_config_map("shared", namespace, second)
    assert conflict.value.status == 409
    status = json.loads(conflict.value.body)
    assert status["reason"] == "Conflict"
    assert "the object has been modified" in status["message"]
    assert (await core.read_namespaced_config_map("shared", namespace)).data == {"value": "2"}


async def test_resource_versions_grow_with_every_write_across_resources(api, namespace):
    core = client.CoreV1Api(api)
    versions = []
    created = await core.create_namespaced_config_map(namespace, _config_map("a"))
    versions.append(int(created.metadata.resource_version))
    secret = await core.create_namespaced_secret(
        namespace, {"metadata": {"name": "s"}, "stringData": {"k": "v"}}
    )
    versions.append(int(secret.metadata.resource_version))
    patched = await core.patch_namespaced_config_map("a", namespace, {"data": {"x": "1"}})
    versions.append(int(patched.metadata.resource_version))
    listed = await core.list_namespaced_config_map(namespace)
    versions.append(int(listed.metadata.resource_version))
    assert versions == sorted(versions)
    assert len(set(versions[:3])) == 3
    assert base64.b64decode(secret.data["k"]) == b"v"


async def test_merge_and_strategic_patches_apply_and_json_patch_is_refused(api, namespace):
    core = client.CoreV1Api(api)
    await core.create_namespaced_config_map(
        namespace, _config_map("p", {"keep": "1", "drop": "1"}, a="1", b="2")
    )
    merged = await core.patch_namespaced_config_map(
        "p",
        namespace,
        {"metadata": {"labels": {"drop": None, "new": "2"}}, "data": {"b": None, "c": "3"}},
        _content_type="application/merge-patch+json",
    )
    assert merged.metadata.labels == {"keep": "1", "new": "2"}
    assert merged.data == {"a": "1", "c": "3"}
    strategic = await core.patch_namespaced_config_map("p", namespace, {"data": {"d": "4"}})
    assert strategic.data == {"a": "1", "c": "3", "d": "4"}
    with pytest.raises(ApiException) as json_patch:  # a list body: kubernetes_asyncio sends a JSON patch
        await core.patch_namespaced_config_map("p", namespace, [{"op": "remove", "path": "/data/c"}])
    assert json_patch.value.status == 415
    assert "application/json-patch+json" in json_patch.value.body


async def test_patch_with_a_stale_resource_version_is_409(api, namespace):
    core = client.CoreV1Api(api)
    created = await core.create_namespaced_config_map(namespace, _config_map("guarded"))
    await core.patch_namespaced_config_map("guarded", namespace, {"data": {"x": "1"}})
    with pytest.raises(ApiException) as conflict:
        await core.patch_namespaced_config_map(
            "guarded",
            namespace,
            {"metadata": {"resourceVersion": created.metadata.resource_version}, "data": {"x": "2"}},
            _content_type="application/merge-patch+json",
        )
    assert conflict.value.status == 409


async def test_status_subresource_and_main_resource_write_only_their_part(api, namespace, control):
    control.set_kubelet("off")  # nothing else writes this pod's status
    core = client.CoreV1Api(api)
    pod = {
        "metadata": {"name": "split"},
        "spec": {"containers": [{"name": "c", "image": "x", "command": ["true"]}]},
    }
    created = await core.create_namespaced_pod(namespace, pod)
    assert created.metadata.generation == 1
    assert created.status.phase == "Pending"
    status_patch = {
        "status": {"message": "from the status writer"},
        "metadata": {"labels": {"ignored": "yes"}},
        "spec": {"activeDeadlineSeconds": 99},
    }
    after_status = await core.patch_namespaced_pod_status(
        "split", namespace, status_patch, _content_type="application/merge-patch+json"
    )
    assert after_status.status.message == "from the status writer"
    assert after_status.spec.active_deadline_seconds is None
    assert not (after_status.metadata.labels or {}).get("ignored")
    main_patch = {"status": {"message": "ignored"}, "spec": {"activeDeadlineSeconds": 60}}
    after_main = await core.patch_namespaced_pod(
        "split", namespace, main_patch, _content_type="application/merge-patch+json"
    )
    assert after_main.spec.active_deadline_seconds == 60
    assert after_main.status.message == "from the status writer"
    assert after_main.metadata.generation == 2
    assert after_main.metadata.uid == created.metadata.uid
    with pytest.raises(ApiException) as immutable:
        await core.patch_namespaced_pod("split", namespace, {"spec": {"restartPolicy": "Never"}})
    assert immutable.value.status == 422


async def test_deleting_a_job_in_the_background_deletes_its_pods_and_orphan_keeps_them(
    api, namespace, control
):
    control.set_kubelet("off")
    batch, core = client.BatchV1Api(api), client.CoreV1Api(api)
    for name in ("background", "orphan"):
        await batch.create_namespaced_job(namespace, job_body(name, "true"))

    async def pods_of(job: str) -> list:
        listed = await core.list_namespaced_pod(namespace, label_selector=f"job-name={job}")
        return listed.items

    for name in ("background", "orphan"):
        assert len(await pods_of(name)) == 1
    await batch.delete_namespaced_job("background", namespace, propagation_policy="Background")
    assert await pods_of("background") == []
    await batch.delete_namespaced_job("orphan", namespace, propagation_policy="Orphan")
    kept = await pods_of("orphan")
    assert len(kept) == 1
    assert not kept[0].metadata.owner_references


async def test_deleting_a_job_without_a_policy_orphans_its_pods_with_the_apiserver_warning(
    api, namespace, control
):
    control.set_kubelet("off")
    batch, core = client.BatchV1Api(api), client.CoreV1Api(api)
    await batch.create_namespaced_job(namespace, job_body("legacy", "true"))
    _, code, headers = await batch.delete_namespaced_job_with_http_info("legacy", namespace)
    assert code == 200
    assert "child pods are preserved by default" in headers["Warning"]
    assert len((await core.list_namespaced_pod(namespace, label_selector="job-name=legacy")).items) == 1


async def test_delete_collection_by_label(api, namespace):
    core = client.CoreV1Api(api)
    for name, labels in {"x": {"batch": "1"}, "y": {"batch": "1"}, "z": {"batch": "2"}}.items():
        await core.create_namespaced_config_map(namespace, _config_map(name, labels))
    await core.delete_collection_namespaced_config_map(namespace, label_selector="batch=1")
    remaining = await core.list_namespaced_config_map(namespace)
    assert [item.metadata.name for item in remaining.items] == ["z"]


async def test_finalizers_delay_deletion_until_removed(api, namespace):
    core = client.CoreV1Api(api)
    await core.create_namespaced_config_map(
        namespace, {"metadata": {"name": "held", "finalizers": ["example.com/hold"]}}
    )
    await core.delete_namespaced_config_map("held", namespace)
    marked = await core.read_namespaced_config_map("held", namespace)
    assert marked.metadata.deletion_timestamp is not None
    await core.patch_namespaced_config_map(
        "held", namespace, {"metadata": {"finalizers": None}}, _content_type="application/merge-patch+json"
    )
    with pytest.raises(ApiException) as gone:
        await core.read_namespaced_config_map("held", namespace)
    assert gone.value.status == 404


async def test_namespaces_can_be_listed_and_deleting_one_deletes_its_objects(api, control):
    core = client.CoreV1Api(api)
    await core.create_namespace({"metadata": {"name": "t-doomed"}})
    names = {ns.metadata.name for ns in (await core.list_namespace()).items}
    assert {"default", "t-doomed"} <= names
    await core.create_namespaced_config_map("t-doomed", _config_map("inside"))
    await core.delete_namespace("t-doomed")
    assert (await core.list_namespaced_config_map("t-doomed")).items == []
    with pytest.raises(ApiException) as gone:
        await core.read_namespace("t-doomed")
    assert gone.value.status == 404
    del control


async def test_discovery_documents_are_not_served(api):
    with pytest.raises(ApiException) as missing:
        await client.BatchV1Api(api).get_api_resources()
    assert missing.value.status == 404
    assert json.loads(missing.value.body)["kind"] == "Status"


async def test_dry_run_is_refused_and_nothing_is_written(api, namespace):
    core = client.CoreV1Api(api)
    before = (await core.list_namespaced_config_map(namespace)).metadata.resource_version
    with pytest.raises(ApiException) as refused:
        await core.create_namespaced_config_map(namespace, _config_map("dry", a="1"), dry_run="All")
    assert refused.value.status == 400
    assert "dryRun='All' is not emulated" in refused.value.body
    listed = await core.list_namespaced_config_map(namespace)
    assert (listed.items, listed.metadata.resource_version) == ([], before)
