"""The API users' store keys without servers: which folders they get, the policy, refusals, the routes.

The policy is tried against the real MinIO in tests/integration/test_api_store_user.py; here the pure
parts: what a kept definition grants, the document, the keys' checks, and the admin API's answers.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import pytest
import structlog
from fastapi.testclient import TestClient
from minio.error import MinioAdminException  # noqa: TID251 - the adapter's input, built by hand

from bucketrun.api.app import create_app, with_storage_providers
from bucketrun.api.settings import ApiSettings
from bucketrun.api.store_user import Grant, StoreUser, StoreUserError, grants, policy_document, policy_name
from dispatcher.adapters.s3.users import AdminApiUnavailableError, StoreUsers, policy_of
from dispatcher.domain.errors import PermanentError, TransientError
from dispatcher.runtime.settings import Settings

ADMIN_KEY = "admin-key"


def settings() -> Settings:
    return Settings.model_validate(
        {
            "storage": {
                "endpoint": "minio.example:9000",
                "access_key": ADMIN_KEY,
                "secret_key": "admin-secret",
                "records_bucket": "records",
            }
        }
    )


def api(**keys: str) -> ApiSettings:
    return ApiSettings(username="oscar", password="pw", definitions_bucket="api-defs", **keys)  # type: ignore[arg-type]


def definition(name: str, inputs: list[dict[str, Any]], outputs: list[dict[str, Any]]) -> dict[str, Any]:
    return {"name": name, "image": "alpine", "script": "true", "input": inputs, "output": outputs}


def test_grants_are_the_input_and_output_folders_on_bucketruns_store() -> None:
    kept = [
        definition(
            "upper",
            [{"storage_provider": "minio.default", "path": "/photos/in/"}],
            [
                {"storage_provider": "minio", "path": "photos/out/small"},
                {"storage_provider": "s3.aws", "path": "elsewhere/out"},  # a store with keys of its own
                {"storage_provider": "minio.other", "path": "other/out"},
            ],
        ),
        # OSCAR 4.1's reading of a path without a slash: a folder of the bucket named after the service.
        definition("lower", [{"storage_provider": "minio", "path": "in"}], []),
        definition("again", [{"storage_provider": "minio", "path": "photos/in"}], []),  # a repeat
        definition(
            "sneaky",
            [{"storage_provider": "minio", "path": "records/records"}],
            [
                {"storage_provider": "minio", "path": "api-defs/services"},
            ],
        ),
    ]

    assert grants(kept, withheld=("records", "api-defs")) == (
        Grant("lower", "in"),
        Grant("photos", "in"),
        Grant("photos", "out/small"),
    )


def test_the_policy_allows_objects_under_each_folder_and_listing_within_it() -> None:
    document = policy_document([Grant("photos", "in"), Grant("photos", "out"), Grant("whole", "")])

    objects, location, *listings = document["Statement"]
    assert objects["Effect"] == "Allow"
    assert set(objects["Action"]) >= {"s3:GetObject", "s3:PutObject"}
    assert not any(action.startswith(("s3:*", "admin:", "s3:PutBucket")) for action in objects["Action"])
    assert objects["Resource"] == [
        "arn:aws:s3:::photos/in/*",
        "arn:aws:s3:::photos/out/*",
        "arn:aws:s3:::whole/*",
    ]
    assert location == {
        "Effect": "Allow",
        "Action": ["s3:GetBucketLocation"],
        "Resource": ["arn:aws:s3:::photos", "arn:aws:s3:::whole"],
    }
    assert listings == [
        {
            "Effect": "Allow",
            "Action": ["s3:ListBucket"],
            "Resource": ["arn:aws:s3:::photos"],
            "Condition": {"StringLike": {"s3:prefix": ["in", "in/*", "out", "out/*"]}},
        },
        {"Effect": "Allow", "Action": ["s3:ListBucket"], "Resource": ["arn:aws:s3:::whole"]},
    ]


def test_no_service_no_access() -> None:
    assert policy_document([]) == {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Deny", "Action": ["s3:*"], "Resource": ["arn:aws:s3:::*"]}],
    }


def test_the_policy_is_named_after_the_definitions_bucket() -> None:
    assert policy_name("api-defs") == "bucketrun-api-users.api-defs"


def test_the_admins_key_is_refused_for_the_users() -> None:
    with pytest.raises(StoreUserError, match="BUCKETRUN_STORAGE__ACCESS_KEY"):
        StoreUser(settings(), api(store_access_key=ADMIN_KEY, store_secret_key="anything-long"))


@pytest.mark.parametrize("keys", [{"store_access_key": "apiuser"}, {"store_secret_key": "a-long-secret"}])
def test_one_key_without_the_other_is_refused(keys: dict[str, str]) -> None:
    with pytest.raises(StoreUserError, match="set both BUCKETRUN_API__STORE_ACCESS_KEY"):
        StoreUser(settings(), api(**keys))


async def test_keys_are_served_only_once_the_user_exists() -> None:
    user = StoreUser(settings(), api(store_access_key="apiuser", store_secret_key="a-long-secret"))
    assert user.keys == ("", "")  # not started
    await user.grant([definition("x", [{"storage_provider": "minio", "path": "b/in"}], [])])  # a no-op
    assert user.keys == ("", "")


def admin_error(status: str, body: str = "") -> TransientError | PermanentError:
    users = StoreUsers(settings().storage)
    return users._admin_error("write policy p", MinioAdminException(status, body))


def test_admin_answers_become_bucketruns_errors() -> None:
    assert isinstance(admin_error("503"), TransientError)
    assert isinstance(admin_error("429"), TransientError)
    refused = admin_error(
        "403", "<Error><Code>AccessDenied</Code>\n<Message>Access Denied.</Message></Error>"
    )
    assert isinstance(refused, AdminApiUnavailableError)
    assert str(refused) == (
        "the store at minio.example:9000 refused MinIO's admin API (write policy p): HTTP 403 "
        "<Error><Code>AccessDenied</Code> <Message>Access Denied.</Message></Error>"
    )
    assert isinstance(admin_error("404"), AdminApiUnavailableError)  # moto, AWS: no such API
    other = admin_error("409", "conflict")
    assert isinstance(other, PermanentError)
    assert not isinstance(other, AdminApiUnavailableError)
    assert "admin-secret" not in repr(StoreUsers(settings().storage))


def test_only_minios_description_of_a_user_names_its_policy() -> None:
    assert policy_of('{"policyName":"bucketrun-api-users.x","status":"enabled"}') == "bucketrun-api-users.x"
    assert policy_of("<Error>no</Error>") is None
    assert policy_of('["policyName"]') is None
    assert policy_of('{"policyName": 3}') is None


def test_a_service_is_shown_with_its_storage_providers_always() -> None:
    assert with_storage_providers({"name": "x"}) == {"name": "x", "storage_providers": {}}
    kept = {"name": "x", "storage_providers": {"s3": {"aws": {"region": "eu"}}}}
    assert with_storage_providers(kept) == kept


def test_system_config_answers_with_and_without_the_trailing_slash() -> None:
    app = create_app(settings(), api())
    with TestClient(app) as client:
        plain = client.get("/system/config", auth=("oscar", "pw"))
        slashed = client.get("/system/config/", auth=("oscar", "pw"), follow_redirects=False)
    assert (plain.status_code, slashed.status_code) == (200, 200)
    assert plain.json() == slashed.json()
    assert plain.json()["minio_provider"]["access_key"] == ""


class FlakyStore:
    """StoreUsers' two calls, refused as a store that does not answer for the first *failures* calls."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.policies: list[dict[str, Any]] = []
        self.users: list[tuple[str, str]] = []

    async def put_policy(self, name: str, document: dict[str, Any]) -> None:
        if self.failures > 0:
            self.failures -= 1
            raise TransientError("cannot reach the store's admin API", kind="storage-connection")
        self.policies.append(document)

    async def put_user(self, access_key: str, secret_key: str, *, policy: str) -> None:
        self.users.append((access_key, policy))


async def test_a_store_that_does_not_answer_at_startup_gets_the_user_later() -> None:
    user = StoreUser(
        settings(), api(store_access_key="apiuser", store_secret_key="a-long-secret"), start_budget=0.2
    )
    # Down until the start budget is spent: the retries' jitter may fit several calls in 0.2 s.
    store = FlakyStore(failures=sys.maxsize)
    user._users = store  # type: ignore[assignment]
    kept = [definition("x", [{"storage_provider": "minio", "path": "b/in"}], [])]

    async def definitions() -> list[dict[str, Any]]:
        return kept

    with structlog.testing.capture_logs() as logs:
        await user.start(definitions)  # returns once the budget is spent: the API serves meanwhile
        assert user.keys == ("", "")
        store.failures = 0  # the store answers from now on
        async with asyncio.timeout(20):
            while user.keys == ("", ""):  # noqa: ASYNC110 - the background task sets it
                await asyncio.sleep(0.05)
    await user.stop()

    assert user.keys == ("apiuser", "a-long-secret")
    assert store.users == [("apiuser", "bucketrun-api-users.api-defs")]
    assert store.policies == [policy_document([Grant("b", "in")])]
    assert any(line["event"].startswith("the store does not answer") for line in logs)
    kept.append(definition("y", [{"storage_provider": "minio", "path": "c/in"}], []))
    await user.grant(kept)  # now that it exists, changes rewrite its policy
    assert store.policies[-1] == policy_document([Grant("b", "in"), Grant("c", "in")])
