"""The API's service catalog on the real store and cluster: nothing is left half-applied unsaid.

A create that fails part-way is undone (its notification entry, ConfigMap and Secret are removed), and
the error says so; a definitions bucket that notifies someone is refused before anything is applied.
The one injected fault is the store refusing to keep the definition, after the real apply; every state
asserted is read back from MinIO and kube-apiserver.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from kubernetes_asyncio import client  # noqa: TID251 - the test inspects the cluster directly
from minio.notificationconfig import NotificationConfig, QueueConfig  # noqa: TID251

from bucketrun.api.catalog import ApplyFailedError, ServiceCatalog
from bucketrun.api.oscar_types import Service
from bucketrun.api.services_source import DirectorySource, SecretSource
from dispatcher.adapters.kube.api import MANAGED_SELECTOR
from dispatcher.domain.errors import TransientError
from dispatcher.fdl import load_services
from dispatcher.runtime.settings import Settings
from tests.backends.kubernetes import KubeTestEnv
from tests.backends.s3 import S3Scope
from tests.integration.admin_env import admin_env

pytestmark = pytest.mark.integration


class Scope:
    """One test's buckets and namespace, and a catalog over them."""

    def __init__(
        self, s3: S3Scope, kube: KubeTestEnv, monkeypatch: pytest.MonkeyPatch, services_dir: Path
    ) -> None:
        arn = s3.endpoint.notify_arn
        if arn is None:
            pytest.skip("needs MinIO's AMQP notifications (moto has none): run make servers")
        self.s3 = s3
        self.kube = kube
        self.arn = arn
        self.inbox = s3.bucket("in", create=False)
        self.outbox = s3.bucket("out", create=False)
        self.definitions = s3.bucket("api", create=False)
        records = s3.bucket("records", create=False)
        env = admin_env(s3.endpoint, records, kube, BUCKETRUN_STORAGE__NOTIFY_ARN=arn)
        for key in [key for key in env if key.startswith("BUCKETRUN_")]:
            monkeypatch.setenv(key, env[key])
        self.settings = Settings.load()
        self.services_dir = services_dir
        self.catalog = ServiceCatalog(self.settings, self.definitions, source=DirectorySource(services_dir))

    def fdl_files(self) -> list[str]:
        """The FDL files the dispatcher would read from the API's services directory."""
        if not self.services_dir.is_dir():
            return []
        return sorted(path.name for path in self.services_dir.iterdir())

    def service(self, **changes: Any) -> Service:
        body: dict[str, Any] = {
            "name": "upper",
            "image": "alpine:3.20",
            "script": '#!/bin/sh\ntr a-z A-Z < "$INPUT_FILE_PATH" > "$TMP_OUTPUT_DIR/out.txt"\n',
            "input": [{"storage_provider": "minio.default", "path": f"{self.inbox}/in"}],
            "output": [{"storage_provider": "minio.default", "path": f"{self.outbox}/results"}],
            "environment": {"secrets": {"TOKEN": "s3cr3t-value"}},
        }
        return Service.model_validate(body | changes)

    def queue_ids(self, bucket: str) -> list[str]:
        minio = self.s3.endpoint.client()
        if not minio.bucket_exists(bucket):
            return []
        return sorted(q.config_id or "" for q in minio.get_bucket_notification(bucket).queue_config_list)

    def kept(self) -> list[str]:
        minio = self.s3.endpoint.client()
        if not minio.bucket_exists(self.definitions):
            return []
        return [item.object_name or "" for item in minio.list_objects(self.definitions, recursive=True)]

    async def managed(self, api: client.ApiClient) -> tuple[list[str], list[str]]:
        """Names of the bucketrun-managed ConfigMaps and of every Secret named after the service."""
        core = client.CoreV1Api(api)
        maps = await core.list_namespaced_config_map(self.kube.namespace, label_selector=MANAGED_SELECTOR)
        secrets = await core.list_namespaced_secret(self.kube.namespace)
        return (
            [m.metadata.name for m in maps.items],
            [s.metadata.name for s in secrets.items if "upper" in s.metadata.name],
        )


@pytest.fixture
def scope(s3: S3Scope, kube: KubeTestEnv, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Scope:
    return Scope(s3, kube, monkeypatch, tmp_path / "api-services")


async def test_a_create_whose_definition_cannot_be_kept_is_undone(
    scope: Scope, kube_api: client.ApiClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def refuse(*_: Any, **__: Any) -> None:
        raise TransientError("the store answered 503 SlowDown", kind="s3-5xx")

    monkeypatch.setattr(scope.catalog._storage, "put_object", refuse)  # the one fault
    with pytest.raises(ApplyFailedError) as refused:
        await scope.catalog.create(scope.service())

    message = str(refused.value)
    assert "its definition could not be kept" in message
    assert "the service was not created; what was applied is undone" in message
    assert "s3cr3t-value" not in message
    assert scope.queue_ids(scope.inbox) == []
    assert await scope.managed(kube_api) == ([], [])
    assert scope.kept() == []
    assert scope.fdl_files() == []


async def test_a_failed_update_says_which_changes_were_applied_and_keeps_the_service(
    scope: Scope, kube_api: client.ApiClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    await scope.catalog.create(scope.service())
    assert scope.queue_ids(scope.inbox) == ["bucketrun-upper-0"]
    assert scope.fdl_files() == ["upper.yaml"]

    async def refuse(*_: Any, **__: Any) -> None:
        raise TransientError("the store answered 503 SlowDown", kind="s3-5xx")

    monkeypatch.setattr(scope.catalog._storage, "put_object", refuse)  # the one fault
    with pytest.raises(ApplyFailedError) as refused:
        await scope.catalog.update(scope.service(memory="512Mi"))

    message = str(refused.value)
    assert "the service was not updated; changes already applied:" in message
    assert "create configmap bucketrun-upper-" in message, message  # the new ConfigMap is named
    assert scope.queue_ids(scope.inbox) == ["bucketrun-upper-0"]
    created = message.split("create configmap ", 1)[1].split(maxsplit=1)[0]
    config_maps, secrets = await scope.managed(kube_api)
    assert created in config_maps  # what the message says was applied is there
    assert "bucketrun-upper-secrets" in secrets
    assert scope.kept() == ["services/upper.json"]


async def test_a_noisy_definitions_bucket_is_refused_before_anything_is_applied(
    scope: Scope, kube_api: client.ApiClient
) -> None:
    minio = scope.s3.endpoint.client()
    minio.make_bucket(scope.definitions)
    noisy = NotificationConfig(
        queue_config_list=[QueueConfig(["s3:ObjectCreated:*"], config_id="someone-else", queue=scope.arn)]
    )
    minio.set_bucket_notification(scope.definitions, noisy)

    with pytest.raises(ApplyFailedError) as refused:
        await scope.catalog.create(scope.service())

    assert str(refused.value).startswith("nothing was applied: the definitions bucket")
    assert "someone-else" in str(refused.value)
    assert scope.queue_ids(scope.inbox) == []
    assert await scope.managed(kube_api) == ([], [])
    assert scope.kept() == []
    assert scope.fdl_files() == []


async def test_the_dispatcher_learns_each_service_from_the_source_and_forgets_it_on_delete(
    scope: Scope, kube_api: client.ApiClient
) -> None:
    outcome = await scope.catalog.create(scope.service())
    assert f"fdl upper.yaml written to the directory {scope.services_dir}" in outcome.lines
    (loaded,) = load_services([scope.services_dir]).services
    assert (loaded.name, loaded.image) == ("upper", "alpine:3.20")
    assert loaded.inputs[0].bucket == scope.inbox

    await scope.catalog.update(scope.service(image="alpine:3.21"))
    (loaded,) = load_services([scope.services_dir]).services
    assert loaded.image == "alpine:3.21"

    await scope.catalog.delete("upper")
    assert scope.fdl_files() == []


async def test_in_kubernetes_the_services_go_to_a_secret_one_key_each(
    scope: Scope, kube_api: client.ApiClient
) -> None:
    catalog = ServiceCatalog(
        scope.settings,
        scope.definitions,
        source=SecretSource(scope.settings.cluster, "bucketrun-api-services"),
    )
    core = client.CoreV1Api(kube_api)
    await catalog.create(scope.service())
    await catalog.create(scope.service(name="lower", input=[], output=[]))

    secret = await core.read_namespaced_secret("bucketrun-api-services", scope.kube.namespace)
    assert sorted(secret.data) == ["lower.yaml", "upper.yaml"]
    document = json.loads(base64.b64decode(secret.data["upper.yaml"]))
    assert document["functions"]["oscar"][0]["oscar"]["name"] == "upper"

    await catalog.delete("upper")
    secret = await core.read_namespaced_secret("bucketrun-api-services", scope.kube.namespace)
    assert sorted(secret.data) == ["lower.yaml"]
