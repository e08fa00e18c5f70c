"""The API users' store keys against the real MinIO: least privilege, following the API's services.

The catalog applies a service through the real store and cluster, and the store user's policy follows
it. Then the keys themselves are tried on MinIO: they put into the service's input folder and get from
its output folder, and MinIO refuses them (403) everywhere else: another folder of the same bucket, the
records bucket, the definitions bucket, a bucket of no API service. After the delete they reach nothing.
On moto (no admin API) the API says so and serves empty keys.
"""

from __future__ import annotations

import contextlib
import io
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import structlog
from minio import Minio  # noqa: TID251 - the test signs in with the users' keys itself
from minio.credentials.providers import StaticProvider  # noqa: TID251
from minio.error import MinioAdminException, S3Error  # noqa: TID251
from minio.minioadmin import MinioAdmin  # noqa: TID251

from bucketrun.api.app import cluster_config
from bucketrun.api.catalog import ServiceCatalog
from bucketrun.api.oscar_types import Service
from bucketrun.api.settings import ApiSettings
from bucketrun.api.store_user import StoreUser, policy_name
from dispatcher.runtime.settings import Settings
from tests.backends.kubernetes import KubeTestEnv
from tests.backends.s3 import S3Endpoint, S3Scope
from tests.integration.admin_env import admin_env

pytestmark = pytest.mark.integration

SCRIPT = '#!/bin/sh\ntr a-z A-Z < "$INPUT_FILE_PATH" > "$TMP_OUTPUT_DIR/out.txt"\n'


def _admin(endpoint: S3Endpoint) -> MinioAdmin:
    return MinioAdmin(
        endpoint=endpoint.endpoint,
        credentials=StaticProvider(endpoint.access_key, endpoint.secret_key),
        region=endpoint.region,
        secure=endpoint.secure,
    )


class Scope:
    """One test's buckets, namespace and store keys, and a catalog whose changes rewrite their policy."""

    def __init__(self, s3: S3Scope, kube: KubeTestEnv, monkeypatch: pytest.MonkeyPatch) -> None:
        self.s3 = s3
        self.inbox = s3.bucket("in")
        self.outbox = s3.bucket("out")
        self.other = s3.bucket("other")
        self.records = s3.bucket("records")
        self.definitions = s3.bucket("api", create=False)
        self.access_key = f"apiu{uuid.uuid4().hex[:12]}"
        self.secret_key = f"secret-{uuid.uuid4().hex}"
        env = admin_env(
            s3.endpoint, self.records, kube, BUCKETRUN_STORAGE__NOTIFY_ARN=s3.endpoint.notify_arn or ""
        )
        env |= {
            "BUCKETRUN_API__USERNAME": "oscar",
            "BUCKETRUN_API__PASSWORD": "a-test-password",
            "BUCKETRUN_API__DEFINITIONS_BUCKET": self.definitions,
            "BUCKETRUN_API__STORE_ACCESS_KEY": self.access_key,
            "BUCKETRUN_API__STORE_SECRET_KEY": self.secret_key,
        }
        for key in [key for key in env if key.startswith("BUCKETRUN_")]:
            monkeypatch.setenv(key, env[key])
        self.settings = Settings.load()
        self.api = ApiSettings()
        self.user = StoreUser(self.settings, self.api)
        self.catalog = ServiceCatalog(self.settings, self.definitions, on_change=self.user.grant)

    def service(self, output: str = "results") -> Service:
        return Service.model_validate(
            {
                "name": "upper",
                "image": "alpine:3.20",
                "script": SCRIPT,
                "input": [{"storage_provider": "minio.default", "path": f"{self.inbox}/in"}],
                "output": [{"storage_provider": "minio", "path": f"{self.outbox}/{output}"}],
            }
        )

    def as_user(self) -> Minio:
        endpoint = self.s3.endpoint
        return Minio(
            endpoint.endpoint,
            access_key=self.access_key,
            secret_key=self.secret_key,
            region=endpoint.region,
            secure=endpoint.secure,
        )

    def put_as_admin(self, bucket: str, key: str) -> None:
        self.s3.endpoint.client().put_object(bucket, key, io.BytesIO(b"admin's"), 7)

    def remove_user(self) -> None:
        admin = _admin(self.s3.endpoint)
        for remove in (
            lambda: admin.user_remove(self.access_key),
            lambda: admin.policy_remove(policy_name(self.definitions)),
        ):
            with contextlib.suppress(MinioAdminException):  # not created: the test failed before
                remove()


def _put(client: Minio, bucket: str, key: str) -> str:
    """``ok``, or the S3 error code MinIO answered a put of a small object with."""
    try:
        client.put_object(bucket, key, io.BytesIO(b"user's"), 6)
    except S3Error as error:
        return error.code or str(error.response.status)
    return "ok"


def _get(client: Minio, bucket: str, key: str) -> str:
    """``ok`` with what was read, or the S3 error code MinIO answered."""
    try:
        response = client.get_object(bucket, key)
    except S3Error as error:
        return error.code or str(error.response.status)
    try:
        return f"ok {response.read().decode()}"
    finally:
        response.close()
        response.release_conn()


def _listed(client: Minio, bucket: str, prefix: str) -> list[str] | str:
    try:
        return sorted(item.object_name or "" for item in client.list_objects(bucket, prefix, recursive=True))
    except S3Error as error:
        return error.code or str(error.response.status)


@pytest.fixture
def scope(s3: S3Scope, kube: KubeTestEnv, monkeypatch: pytest.MonkeyPatch) -> Iterator[Scope]:
    if s3.endpoint.notify_arn is None:
        pytest.skip("needs the MinIO built here (its admin API and AMQP target): run make servers")
    made = Scope(s3, kube, monkeypatch)
    yield made
    made.remove_user()


async def test_the_users_keys_reach_only_the_folders_of_the_apis_services(scope: Scope) -> None:
    await scope.user.start(scope.catalog.list)
    access, secret = scope.user.keys
    assert (access, secret) == (scope.access_key, scope.secret_key)
    served = cluster_config(scope.settings, scope.user.keys).minio_provider
    assert (served.access_key, served.secret_key) == (scope.access_key, scope.secret_key)
    user = scope.as_user()
    assert _put(user, scope.inbox, "in/before.txt") == "AccessDenied"  # no service yet: nothing granted

    await scope.catalog.create(scope.service())
    scope.put_as_admin(scope.outbox, "results/out.txt")
    scope.put_as_admin(scope.records, "records/upper/job/status.json")
    scope.put_as_admin(scope.other, "in/x.txt")

    assert _put(user, scope.inbox, "in/photo.txt") == "ok"  # put-file into the input folder
    assert _get(user, scope.outbox, "results/out.txt") == "ok admin's"  # get-file of an output
    listing = _listed(user, scope.outbox, "results")  # list-files: the folder without its slash
    assert isinstance(listing, list)
    assert "results/out.txt" in listing
    assert _put(user, scope.outbox, "results/mine.txt") == "ok"  # read and write both folders
    assert _get(user, scope.inbox, "in/photo.txt") == "ok user's"
    denied = {
        "another folder of the input bucket": _put(user, scope.inbox, "elsewhere/x.txt"),
        "the records bucket": _get(user, scope.records, "records/upper/job/status.json"),
        "writing the records bucket": _put(user, scope.records, "records/upper/forged.json"),
        "the definitions bucket": _get(user, scope.definitions, "services/upper.json"),
        "a bucket of no API service": _get(user, scope.other, "in/x.txt"),
        "listing the definitions": str(_listed(user, scope.definitions, "services")),
        "listing the input bucket's root": str(_listed(user, scope.inbox, "")),
    }
    assert denied == dict.fromkeys(denied, "AccessDenied")

    await scope.catalog.update(scope.service(output="final"))  # the policy follows an update too
    assert _put(user, scope.outbox, "final/x.txt") == "ok"
    assert _get(user, scope.outbox, "results/out.txt") == "AccessDenied"
    assert _put(user, scope.inbox, "in/still.txt") == "ok"

    await scope.catalog.delete("upper")
    assert _put(user, scope.inbox, "in/after.txt") == "AccessDenied"
    assert _get(user, scope.outbox, "results/out.txt") == "AccessDenied"


async def test_a_store_without_an_admin_api_gets_empty_keys_and_a_warning(
    moto_s3: S3Scope, monkeypatch: pytest.MonkeyPatch
) -> None:
    endpoint = moto_s3.endpoint
    env = {
        "BUCKETRUN_STORAGE__ENDPOINT": endpoint.endpoint,
        "BUCKETRUN_STORAGE__ACCESS_KEY": endpoint.access_key,
        "BUCKETRUN_STORAGE__SECRET_KEY": endpoint.secret_key,
        "BUCKETRUN_STORAGE__RECORDS_BUCKET": moto_s3.bucket("records"),
        "BUCKETRUN_API__USERNAME": "oscar",
        "BUCKETRUN_API__PASSWORD": "a-test-password",
        "BUCKETRUN_API__DEFINITIONS_BUCKET": moto_s3.bucket("api", create=False),
        "BUCKETRUN_API__STORE_ACCESS_KEY": "apiuser",
        "BUCKETRUN_API__STORE_SECRET_KEY": "api-user-secret",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    user = StoreUser(Settings.load(), ApiSettings())

    async def nothing() -> list[dict[str, Any]]:
        return []

    with structlog.testing.capture_logs() as logs:
        await user.start(nothing)

    assert user.keys == ("", "")
    (warning,) = [line for line in logs if line["log_level"] == "warning"]
    assert warning["event"].startswith("the API users' store user cannot be created")
    assert "refused MinIO's admin API" in warning["error"]
