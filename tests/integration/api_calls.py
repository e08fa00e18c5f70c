"""Every route of `bucketrun api` that reaches the cluster, called once as a user would: what the RBAC tests
(test_rbac_verbs.py on any cluster, test_real_cluster.py with the API's own ServiceAccount token) run to
find the verbs the API's Role must grant.

A service with a secret is created, read, updated (its script and its secret value change: the ConfigMap
is replaced, the Secret updated, the token kept), its Job listed, its log read, invoked through POST /job,
its Job deleted alone and then with all of the service's, and the service removed. Each answer is
checked, so a refused call fails here with the route that made it.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any, Final

import httpx2
from pydantic import SecretStr

from bucketrun.api.app import create_app
from bucketrun.api.settings import ApiSettings
from dispatcher.runtime.settings import Settings
from tests.backends.s3 import S3Scope

USER: Final = "oscar"
PASSWORD: Final = "rbac-test-password-81c2"
SERVICE: Final = "upper"
JOB: Final = "api-job"
"""A Job of SERVICE the test creates before the calls (`watcher_support.job_doc(JOB)`), already finished."""
SERVICES_SECRET: Final = "bucketrun-api-services"


def api_settings(s3: S3Scope) -> ApiSettings:
    """The API's settings: its credential, its definitions bucket, and the Secret it writes services to."""
    return ApiSettings(
        username=USER,
        password=SecretStr(PASSWORD),
        definitions_bucket=s3.bucket("api", create=False),
        services_secret=SERVICES_SECRET,
    )


@contextlib.asynccontextmanager
async def api_client(settings: Settings, api: ApiSettings) -> AsyncIterator[httpx2.AsyncClient]:
    """The API in-process, over ASGI, with the basic credential; its lifespan (broker connection) runs."""
    app = create_app(settings, api)
    async with (
        app.router.lifespan_context(app),
        httpx2.AsyncClient(
            transport=httpx2.ASGITransport(app=app), base_url="http://api", auth=(USER, PASSWORD), timeout=60
        ) as http,
    ):
        yield http


def service_body(bucket: str, *, secret: str, script: str = 'cat "$INPUT_FILE_PATH"\n') -> dict[str, Any]:
    """What oscar-cli posts for SERVICE, with one secret."""
    return {
        "name": SERVICE,
        "image": "busybox:1.36",
        "script": script,
        "input": [{"storage_provider": "minio.default", "path": f"{bucket}/in"}],
        "output": [{"storage_provider": "minio.default", "path": f"{bucket}/out"}],
        "environment": {"secrets": {"TOKEN": secret}},
    }


def expect(answer: httpx2.Response, status: int, what: str) -> httpx2.Response:
    """*answer*, or a failure naming *what* and the answer's body (a refused cluster call is a 500)."""
    assert answer.status_code == status, f"{what}: {answer.status_code} {answer.text[:2000]}"
    return answer


async def call_every_cluster_route(http: httpx2.AsyncClient, bucket: str) -> None:
    """The calls above, in order, each answer checked."""
    expect(await http.post("/system/services", json=service_body(bucket, secret="first")), 201, "create")
    shown = expect(await http.get(f"/system/services/{SERVICE}"), 200, "get").json()
    assert shown.get("token"), f"the service has no token: {shown}"
    changed = service_body(bucket, secret="second", script='tr a-z A-Z < "$INPUT_FILE_PATH"\n')
    expect(await http.put("/system/services", json=changed), 204, "update")

    listed = expect(await http.get(f"/system/logs/{SERVICE}"), 200, "list Jobs").json()["jobs"]
    assert JOB in listed, listed
    log = expect(await http.get(f"/system/logs/{SERVICE}/{JOB}"), 200, "a Job's log")
    assert f"running {JOB}" in log.text, log.text

    expect(await http.post(f"/job/{SERVICE}", json={"greeting": "hello"}), 201, "invoke")

    expect(await http.delete(f"/system/logs/{SERVICE}/{JOB}"), 204, "delete a Job")
    expect(await http.delete(f"/system/logs/{SERVICE}", params={"all": "true"}), 204, "delete all Jobs")
    expect(await http.delete(f"/system/services/{SERVICE}"), 204, "remove the service")
