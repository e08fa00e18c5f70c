"""`POST /job/{service}` on the real stack: the API (in-process, over ASGI) publishes each invocation to
the service's queue, and a running dispatcher creates the Job, which really runs on the cluster's node
agent and copies its input file to the service's output, so what the script read is checked byte for
byte. RabbitMQ, MinIO and the Kubernetes control plane are the real servers.

Also: the token the API issues with the service (a Secret of its own, shown by GET, kept by an update,
dropped with the service, in no definition, ConfigMap or Job), the same X-Request-ID twice (one Job: the
second task meets 409 and is acked), the refusals (401 bare, 404, 400 naming the value).
"""

from __future__ import annotations

import base64
import io
import json
import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import httpx2
import pytest
import structlog
from kubernetes_asyncio import client  # noqa: TID251 - the test inspects the cluster directly
from minio.notificationconfig import (  # noqa: TID251 - the test gives the bucket a notification itself
    NotificationConfig,
    PrefixFilterRule,
    QueueConfig,
)
from pydantic import SecretStr

from bucketrun.admin.tokens import token_secret_name
from bucketrun.api.app import create_app
from bucketrun.api.settings import ApiSettings
from dispatcher.domain import constants as c
from dispatcher.domain.events import build_message
from dispatcher.process.app import run_dispatcher
from dispatcher.runtime.settings import Settings
from tests.backends.kubernetes import KubeTestEnv
from tests.backends.rabbitmq import AmqpNames
from tests.backends.s3 import S3Scope
from tests.integration.stack import read_object, started, until
from tests.integration.watcher_support import make_settings

pytestmark = pytest.mark.integration

USER, PASSWORD = "oscar", "job-test-password-5d1e"
RUN_WITHIN = 120.0
SCRIPT = 'cp "$INPUT_FILE_PATH" "$TMP_OUTPUT_DIR/$(basename "$INPUT_FILE_PATH")"\n'
BASIC = {"Authorization": "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()}
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")


@dataclass
class Stack:
    http: httpx2.AsyncClient
    settings: Settings
    s3: S3Scope
    kube: KubeTestEnv
    kube_api: client.ApiClient
    data: str
    definitions: str
    api: ApiSettings

    def output(self, name: str) -> bytes | None:
        return read_object(self.s3.endpoint, self.data, f"out/{name}")

    async def jobs(self) -> list[client.V1Job]:
        found = await client.BatchV1Api(self.kube_api).list_namespaced_job(
            self.kube.namespace, label_selector=f"{c.LABEL_SERVICE}=upper"
        )
        return list(found.items)

    async def token_secret(self) -> client.V1Secret | None:
        try:
            return await client.CoreV1Api(self.kube_api).read_namespaced_secret(
                token_secret_name("upper"), self.kube.namespace
            )
        except client.ApiException as error:
            if error.status == 404:
                return None
            raise

    async def invoke(
        self, body: bytes, headers: dict[str, str] | None = None, *, service: str = "upper"
    ) -> Any:
        """POST /job/SERVICE with ``headers``, the basic credential unless they hold another one."""
        return await self.http.post(f"/job/{service}", content=body, headers={**BASIC, **(headers or {})})


def service_json(data: str) -> dict[str, Any]:
    return {
        "name": "upper",
        "image": "busybox:1.36",
        "script": SCRIPT,
        "input": [{"storage_provider": "minio.default", "path": f"{data}/in", "suffix": [".txt"]}],
        "output": [{"storage_provider": "minio.default", "path": f"{data}/out"}],
    }


@pytest.fixture
async def stack(
    amqp_names: AmqpNames, s3: S3Scope, kube: KubeTestEnv, kube_api: client.ApiClient, tmp_path: Path
) -> AsyncIterator[Stack]:
    """The service applied through the API (which writes its FDL where the dispatcher reads services), the
    dispatcher running it, and the API over ASGI."""
    arn = s3.endpoint.notify_arn
    if arn is None:
        pytest.skip("needs MinIO's AMQP notifications for the API's apply (moto has none): run make servers")
    kube.require_control().set_kubelet("run")
    data, records, definitions = s3.bucket("data"), s3.bucket("records"), s3.bucket("api", create=False)
    # The API writes each service it applies here, and the dispatcher reads its services from here.
    services_dir = tmp_path / "api-services"
    services_dir.mkdir()
    settings = make_settings(
        amqp_names,
        s3,
        kube,
        services_dir,
        records_bucket=records,
        exchange=amqp_names.exchange("results"),
        services=["upper"],
    )
    settings = settings.model_copy(
        update={"storage": settings.storage.model_copy(update={"notify_arn": arn})}
    )
    api = ApiSettings(
        username=USER, password=SecretStr(PASSWORD), definitions_bucket=definitions, services_dir=services_dir
    )
    app = create_app(settings, api)
    transport = httpx2.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx2.AsyncClient(transport=transport, base_url="http://api") as http,
    ):
        created = await http.post("/system/services", json=service_json(data), headers=BASIC)
        assert created.status_code == 201, created.text
        async with started(partial(run_dispatcher, settings), "the dispatcher", within=60):
            yield Stack(http, settings, s3, kube, kube_api, data, definitions, api)


async def test_an_invocation_runs_once_per_request_id_with_the_body_as_input(stack: Stack) -> None:
    token = (await stack.http.get("/system/services/upper", headers=BASIC)).json()["token"]
    assert re.fullmatch(r"[0-9a-f]{64}", token), token
    bearer = {"Authorization": f"Bearer {token}"}
    request_id = f"req-{uuid.uuid4().hex}"

    answer = await stack.invoke(
        base64.b64encode(b"hello job\n") + b"\n", {**bearer, "X-Request-ID": request_id}
    )
    assert (answer.status_code, answer.content) == (201, b""), answer.text
    assert answer.headers["X-Request-ID"] == request_id

    async def output() -> bytes | None:
        return stack.output(request_id)

    assert await until(output, "the Job's copy of its input file", within=RUN_WITHIN) == b"hello job\n"
    assert len(await stack.jobs()) == 1

    # The same request id again, even with another body: its task meets the Job (409) and is acked.
    with structlog.testing.capture_logs(processors=[structlog.contextvars.merge_contextvars]) as lines:
        again = await stack.invoke(b'{"other": "body"}', {**bearer, "X-Request-ID": request_id})
        assert (again.status_code, again.headers["X-Request-ID"]) == (201, request_id)

        async def settled() -> list[Any]:
            return [
                line
                for line in lines
                if line.get("message_id") == request_id and line["event"] == "job exists"
            ]

        await until(settled, "the repeated task to meet its Job")
    assert len(await stack.jobs()) == 1
    stored = read_object(stack.s3.endpoint, stack.definitions, f"invocations/upper/{request_id}")
    assert stored == b"hello job\n"  # the first body wins

    # A JSON body is the input as it is; without X-Request-ID the API picks a UUID; basic auth works too.
    body = b'{"text": "caf\\u00e9", "n": [1, 2]}'
    answer = await stack.invoke(body, {"Content-Type": "application/json"})
    assert answer.status_code == 201, answer.text
    picked = answer.headers["X-Request-ID"]
    assert _UUID.fullmatch(picked), picked

    async def json_output() -> bytes | None:
        return stack.output(picked)

    assert await until(json_output, "the JSON body's Job", within=RUN_WITHIN) == body
    jobs = await stack.jobs()
    assert len(jobs) == 2
    for job in jobs:  # the token is in no Job
        assert token not in json.dumps(stack.kube_api.sanitize_for_serialization(job))


async def test_a_minio_event_is_replayed_to_the_named_service(stack: Stack) -> None:
    minio = stack.s3.endpoint.client()
    content = b"an uploaded object\n"
    minio.put_object(stack.data, "in/a.txt", io.BytesIO(content), len(content))
    stat = minio.stat_object(stack.data, "in/a.txt")

    def event(bucket: str, key: str) -> bytes:
        document = json.loads(
            build_message(
                event_name="s3:ObjectCreated:Put",
                bucket=bucket,
                key=key,
                etag=stat.etag,
                sequencer="17A0B0C0D0E0F000",
            )
        )
        document["Records"][0]["eventSource"] = "minio:s3"
        return json.dumps(document).encode()

    answer = await stack.invoke(event(stack.data, "in/a.txt"))
    assert answer.status_code == 201, answer.text

    async def output() -> bytes | None:
        return stack.output("a.txt")

    assert await until(output, "the replayed event's Job", within=RUN_WITHIN) == content
    (job,) = await stack.jobs()
    assert job.metadata.annotations[c.ANNOTATION_KEY] == "in/a.txt"

    # An object that is not the service's input is not presigned for anyone: 400 naming why.
    for bucket, key, why in [
        (stack.definitions, "services/upper.json", "no service watches bucket"),
        (stack.data, "out/a.txt", "is not an input of service 'upper'"),
    ]:
        refused = await stack.invoke(event(bucket, key))
        assert refused.status_code == 400
        assert why in refused.text
    assert len(await stack.jobs()) == 1


async def test_a_broker_away_is_503_and_the_same_request_id_then_runs_once(stack: Stack) -> None:
    """The API cannot publish: 503 naming what to do (send the id again), the body already kept; sent
    again to an API that can publish, the same id makes its one Job from the first body."""
    closed = stack.settings.amqp.model_copy(
        update={"url": SecretStr("amqp://guest:guest@127.0.0.1:1/"), "connect_timeout": 1.0}
    )
    away = create_app(stack.settings.model_copy(update={"amqp": closed}), stack.api)
    request_id = f"away-{uuid.uuid4().hex}"
    async with (
        away.router.lifespan_context(away),
        httpx2.AsyncClient(transport=httpx2.ASGITransport(app=away), base_url="http://api") as http,
    ):
        answer = await http.post(
            "/job/upper", content=base64.b64encode(b"kept\n"), headers={**BASIC, "X-Request-ID": request_id}
        )
    assert (answer.status_code, answer.headers["X-Request-ID"]) == (503, request_id)
    assert "cannot connect to the AMQP broker" in answer.text
    assert "try again with the same X-Request-ID" in answer.text
    assert "guest:guest" not in answer.text
    assert await stack.jobs() == []

    again = await stack.invoke(base64.b64encode(b"second\n"), {"X-Request-ID": request_id})
    assert again.status_code == 201, again.text

    async def output() -> bytes | None:
        return stack.output(request_id)

    assert await until(output, "the Job of the retried request", within=RUN_WITHIN) == b"kept\n"
    assert len(await stack.jobs()) == 1


async def test_a_definitions_bucket_that_notifies_is_never_written(stack: Stack) -> None:
    minio = stack.s3.endpoint.client()
    arn = stack.s3.endpoint.notify_arn
    assert arn is not None
    rule = QueueConfig(
        ["s3:ObjectCreated:*"], config_id="someone", prefix_filter_rule=PrefixFilterRule("x/"), queue=arn
    )
    minio.set_bucket_notification(stack.definitions, NotificationConfig(queue_config_list=[rule]))
    try:
        request_id = f"loud-{uuid.uuid4().hex}"
        answer = await stack.invoke(base64.b64encode(b"x"), {"X-Request-ID": request_id})
        assert answer.status_code == 500
        assert f"the definitions bucket {stack.definitions} has notification entries (someone)" in answer.text
        assert read_object(stack.s3.endpoint, stack.definitions, f"invocations/upper/{request_id}") is None
    finally:
        minio.set_bucket_notification(stack.definitions, NotificationConfig())
    assert await stack.jobs() == []


async def test_refusals_are_oscars(stack: Stack) -> None:
    body = base64.b64encode(b"x")
    wrong = "0" * 64
    for headers in ({"Authorization": f"Bearer {wrong}"}, {"Authorization": "Basic b3NjYXI6bm8="}):
        answer = await stack.invoke(body, headers)
        assert (answer.status_code, answer.content) == (401, b"")
    anonymous = await stack.http.post("/job/upper", content=body)
    assert (anonymous.status_code, anonymous.content) == (401, b"")
    # The service is looked up before the credential, as OSCAR's handler does.
    assert (await stack.http.post("/job/nothing", content=body)).status_code == 404
    assert (await stack.invoke(body, service="nothing")).status_code == 404

    bad_id = await stack.invoke(body, {"X-Request-ID": "../records"})
    assert bad_id.status_code == 400
    assert "'../records'" in bad_id.text
    not_base64 = await stack.invoke(b"hello world!")
    assert (not_base64.status_code, "neither JSON nor base64" in not_base64.text) == (400, True)
    assert await stack.jobs() == []


async def test_the_token_lives_in_its_own_secret_kept_by_updates_and_dropped_with_the_service(
    stack: Stack,
) -> None:
    shown = (await stack.http.get("/system/services/upper", headers=BASIC)).json()["token"]
    secret = await stack.token_secret()
    assert secret is not None
    assert base64.b64decode(secret.data["token"]).decode() == shown
    assert secret.metadata.labels[c.LABEL_SERVICE] == "upper"
    listed = {
        item["name"]: item["token"]
        for item in (await stack.http.get("/system/services", headers=BASIC)).json()
    }
    assert listed == {"upper": shown}
    kept = read_object(stack.s3.endpoint, stack.definitions, "services/upper.json") or b""
    assert b"token" not in kept
    maps = await client.CoreV1Api(stack.kube_api).list_namespaced_config_map(stack.kube.namespace)
    assert shown not in json.dumps(stack.kube_api.sanitize_for_serialization(maps))

    # oscar-cli sends the token it read back with an update: it is neither kept nor changed.
    updated = await stack.http.put(
        "/system/services", headers=BASIC, json={**service_json(stack.data), "token": "f" * 64}
    )
    assert updated.status_code == 204, updated.text
    assert (await stack.http.get("/system/services/upper", headers=BASIC)).json()["token"] == shown

    assert (await stack.http.delete("/system/services/upper", headers=BASIC)).status_code == 204
    assert await stack.token_secret() is None
    refused = await stack.invoke(b"", {"Authorization": f"Bearer {shown}"})
    assert refused.status_code == 404
