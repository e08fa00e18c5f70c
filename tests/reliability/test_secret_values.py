"""A service's secret value is in its Secret and in its script's environment, and nowhere else.

The whole cluster path, against the API emulator (its kubelet runs the pod's containers as processes
and resolves `secretKeyRef` from the Secrets it stores), real RabbitMQ and the session's S3 server:
`bucketrun services apply` creates the Secret, the dispatcher creates the Job, the pod's script writes a
digest of its secret (the output proves the value arrived), the watcher records the Job. Then every
place bucketrun writes to is searched for the value, in clear and base64-encoded: the namespace's
ConfigMaps, Jobs and Pods, the job record and its logs, every log line (structlog, the stdlib loggers,
this process's stdout and stderr), and what `services apply|list` and `bucketrun render` print.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import logging
from functools import partial
from pathlib import Path

import pytest
import structlog
from kubernetes_asyncio import client  # noqa: TID251 - the test reads the cluster's objects

from bucketrun.admin.commands import EXIT_OK, apply_services, list_services
from bucketrun.cli.main import main
from dispatcher.process.app import run_dispatcher
from tests.backends.kubernetes import KubeTestEnv, api_client_for
from tests.backends.rabbitmq import AmqpNames
from tests.backends.s3 import S3Scope
from tests.integration.stack import notify_upload, read_object, started, until
from tests.integration.watcher_support import bind_results_queue, make_settings
from watcher.app import run_watcher

pytestmark = [pytest.mark.reliability, pytest.mark.integration, pytest.mark.slow]

SECRET_VALUE = "svc-secret-Hq9dW3kLeakCheck"
SECRET_NAME = "bucketrun-guarded-secrets"

FDL = """
functions:
  oscar:
  - c:
      name: guarded
      image: busybox:1.36
      script: |
        printf '%s' "$API_TOKEN" | sha256sum | cut -d' ' -f1 > "$TMP_OUTPUT_DIR/digest.txt"
        echo "digest written"
      environment:
        variables: {MODE: strict}
        secrets: {API_TOKEN: VALUE}
      input: [{storage_provider: minio, path: BUCKET/in}]
      output: [{storage_provider: minio, path: BUCKET/out}]
"""


def disguises(value: str) -> list[str]:
    """The value as it could appear: in clear, and base64-encoded as a Secret's `data` holds it."""
    return [value, base64.b64encode(value.encode()).decode()]


async def cluster_documents(kube: KubeTestEnv) -> dict[str, str]:
    """Every ConfigMap, Job and Pod of the namespace, as JSON text."""
    async with await api_client_for(kube.kubeconfig) as api:
        core, batch = client.CoreV1Api(api), client.BatchV1Api(api)
        found = {}
        for kind, call in (
            ("ConfigMaps", core.list_namespaced_config_map),
            ("Jobs", batch.list_namespaced_job),
            ("Pods", core.list_namespaced_pod),
        ):
            response = await call(kube.namespace, _preload_content=False)
            found[kind] = json.dumps(await response.json())
        return found


async def secret_data(kube: KubeTestEnv) -> dict[str, str]:
    async with await api_client_for(kube.kubeconfig) as api:
        secret = await client.CoreV1Api(api).read_namespaced_secret(SECRET_NAME, kube.namespace)
    return {key: base64.b64decode(value).decode() for key, value in (secret.data or {}).items()}


def stored_objects(s3: S3Scope, bucket: str) -> str:
    """Every object of *bucket* (the job record, its logs), names and bodies."""
    minio = s3.endpoint.client()
    texts = []
    for item in minio.list_objects(bucket, recursive=True):
        response = minio.get_object(bucket, item.object_name or "")
        try:
            texts.append(f"{item.object_name}\n{response.read().decode('utf-8', 'replace')}")
        finally:
            response.close()
            response.release_conn()
    return "\n".join(texts)


async def test_a_secret_value_reaches_the_script_and_nothing_else(  # noqa: PLR0917
    amqp_names: AmqpNames,
    s3: S3Scope,
    kube: KubeTestEnv,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    kube.require_control().set_kubelet("run")
    bucket, records = s3.bucket("data"), s3.bucket("records")
    fdl = tmp_path / "services.yaml"
    fdl.write_text(FDL.replace("BUCKET", bucket).replace("VALUE", SECRET_VALUE))
    exchange, queue = amqp_names.exchange("results"), amqp_names.queue("results")
    await bind_results_queue(amqp_names, exchange, queue)
    settings = make_settings(
        amqp_names, s3, kube, fdl, records_bucket=records, exchange=exchange, services=("guarded",)
    )
    caplog.set_level(logging.DEBUG)
    printed: list[str] = []
    with structlog.testing.capture_logs() as logged:
        # The operator's step: the Secret (and the ConfigMap) ahead of the first upload.
        assert await apply_services(settings, [fdl], skip_notifications=True, emit=printed.append) == (
            "",
            EXIT_OK,
        )
        assert f"create secret {SECRET_NAME} (keys API_TOKEN)" in printed
        assert await list_services(settings, [fdl], emit=printed.append) == ("", EXIT_OK)
        assert await secret_data(kube) == {"API_TOKEN": SECRET_VALUE}

        async with (
            started(partial(run_dispatcher, settings), "dispatcher"),
            started(partial(run_watcher, settings), "watcher"),
        ):
            s3.endpoint.client().put_object(bucket, "in/x.txt", io.BytesIO(b"payload"), 7)
            await notify_upload(
                amqp_names.url, settings.amqp.exchange, s3.endpoint, bucket, "in/x.txt", sequencer="1"
            )

            async def digest() -> bytes | None:
                return read_object(s3.endpoint, bucket, "out/digest.txt")

            arrived = await until(digest, "the script's digest of its secret", within=90)
            assert arrived.strip() == hashlib.sha256(SECRET_VALUE.encode()).hexdigest().encode()

            async def recorded() -> bool:
                found = s3.endpoint.client().list_objects(records, "records/", recursive=True)
                return any((o.object_name or "").endswith("/status.json") for o in found)

            await until(recorded, "the watcher's job record", within=60)
        documents = await cluster_documents(kube)

    # `bucketrun render`, as a user runs it to see the Job (no server contacted).
    capfd.readouterr()
    assert (
        main(["render", "--fdl", str(fdl), "--service", "guarded", "--bucket", bucket, "--key", "in/x.txt"])
        == 0
    )
    rendered = capfd.readouterr().out
    assert SECRET_NAME in rendered  # it shows the reference, so the search below is meaningful
    out, err = capfd.readouterr()

    everything: dict[str, str] = {
        **documents,
        "job record and logs": stored_objects(s3, records),
        "structlog events": "\n".join(repr(event) for event in logged),
        # INFO and up: bucketrun keeps kubernetes_asyncio at INFO at least (dispatcher.runtime.logs),
        # because its rest client logs whole response bodies at DEBUG (this test's own read of the
        # Secret, too).
        "stdlib log records": "\n".join(
            f"{r.name} {r.getMessage()}" for r in caplog.records if r.levelno >= logging.INFO
        ),
        "stdout and stderr": out + err,
        "services apply and list": "\n".join(printed),
        "bucketrun render": rendered,
    }
    assert logged, "structlog captured nothing: the capture is not wired"
    assert "guarded" in everything["Jobs"]
    assert "API_TOKEN" in everything["Pods"]
    for where, text in everything.items():
        for disguise in disguises(SECRET_VALUE):
            assert disguise not in text, f"the secret value appears in the {where}"
