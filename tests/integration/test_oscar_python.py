"""The real `oscar-python` client (PyPI, 2.2.0) against `bucketrun api`, as an OSCAR user's notebook uses it.

Everything is real: a MinIO of the test's own whose AMQP target publishes to the test's exchange,
RabbitMQ, the cluster (its kubelet runs the pods), `bucketrun serve` (dispatcher and watcher) and
`bucketrun api` as a separate process, which oscar-python reaches over HTTP with basic auth. The
notebook creates a service from an FDL file, uploads a file through the store client oscar-python
builds from `/system/config` (the API users' keys, not the admin's), waits until `list_jobs` shows
the Job succeeded, reads its log, downloads the output and removes the service. oscar-python is
synchronous (requests, boto3): every call runs in a worker thread, so the servers of this event loop
keep running meanwhile.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from bucketrun.devtools.minio_server import MinioServer
from bucketrun.serve import run_serve
from tests.backends.kubernetes import KubeTestEnv
from tests.backends.minio_server import endpoint_of
from tests.backends.rabbitmq import AmqpNames
from tests.backends.s3 import S3Scope
from tests.integration.admin_env import admin_env
from tests.integration.api_process import api_process, remove_store_user
from tests.integration.stack import started, until
from tests.integration.watcher_support import bind_results_queue, make_settings

client_module = pytest.importorskip("oscar_python.client", reason="oscar-python is in the dev extra")

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CLUSTER = "bucketrun"
USER, PASSWORD = "oscar", "a-notebook-password-51c2"
RUN_TIMEOUT = 120.0
SERVICES_DIR_ENV = "BUCKETRUN_API__SERVICES_DIR"
"""Where `bucketrun api` writes the FDL of each service it applied, for the dispatcher to load."""

# What a notebook's author writes for oscar-python: the FDL filed under the client's cluster_id, the
# script in a file beside it, `cpu` given (oscar-python reads it before posting).
FDL = """\
functions:
  oscar:
  - {cluster}:
      name: upper
      image: alpine:3.20
      cpu: '0.5'
      memory: 256Mi
      script: upper.sh
      input:
      - storage_provider: minio.default
        path: {inbox}/in
      output:
      - storage_provider: minio.default
        path: {outbox}/out
"""
SCRIPT = """\
#!/bin/sh
name=$(basename "$INPUT_FILE_PATH")
tr a-z A-Z < "$INPUT_FILE_PATH" > "$TMP_OUTPUT_DIR/$name"
echo "upper-cased $name for the notebook"
"""


@dataclass
class Notebook:
    """The servers of one test, and oscar-python's client of its `bucketrun api`."""

    s3: S3Scope
    kube: KubeTestEnv
    inbox: str
    outbox: str
    records: str
    definitions: str
    store_access_key: str
    client: Any

    async def call(self, method: str, *args: Any) -> Any:
        """``client.<method>(*args)`` in a worker thread (oscar-python blocks)."""
        return await asyncio.to_thread(getattr(self.client, method), *args)


@pytest.fixture
def s3(minio_events: MinioServer) -> S3Scope:
    """The test's own MinIO, publishing to the test's exchange (it goes with the test)."""
    return S3Scope(endpoint_of(minio_events))


@pytest.fixture
async def notebook(
    s3: S3Scope, amqp_names: AmqpNames, kube: KubeTestEnv, tmp_path: Path
) -> AsyncIterator[Notebook]:
    kube.require_control().set_kubelet("run")
    inbox, outbox = s3.bucket("in", create=False), s3.bucket("out", create=False)
    records, definitions = s3.bucket("records"), s3.bucket("api", create=False)
    services = tmp_path / "services"
    services.mkdir()
    exchange, queue = amqp_names.exchange("results"), amqp_names.queue("results")
    await bind_results_queue(amqp_names, exchange, queue)
    amqp_names.queue("svc.upper")
    settings = make_settings(amqp_names, s3, kube, services, records_bucket=records, exchange=exchange)
    store_access_key = f"nb{uuid.uuid4().hex[:12]}"
    env = admin_env(
        s3.endpoint,
        records,
        kube,
        BUCKETRUN_STORAGE__NOTIFY_ARN=s3.endpoint.notify_arn or "",
        BUCKETRUN_API__USERNAME=USER,
        BUCKETRUN_API__PASSWORD=PASSWORD,
        BUCKETRUN_API__DEFINITIONS_BUCKET=definitions,
        BUCKETRUN_API__STORE_ACCESS_KEY=store_access_key,
        BUCKETRUN_API__STORE_SECRET_KEY=f"nb-secret-{uuid.uuid4().hex[:24]}",
        **{SERVICES_DIR_ENV: str(services)},
    )
    try:
        async with (
            started(partial(run_serve, settings), "dispatcher and watcher", within=60),
            api_process(env) as url,
        ):
            options = {
                "cluster_id": CLUSTER,
                "endpoint": url,
                "user": USER,
                "password": PASSWORD,
                "ssl": False,
            }
            yield Notebook(
                s3,
                kube,
                inbox,
                outbox,
                records,
                definitions,
                store_access_key,
                client_module.Client(options),
            )
    finally:
        remove_store_user(s3.endpoint, store_access_key, definitions)


async def test_a_notebook_creates_uploads_waits_reads_downloads_and_removes(
    notebook: Notebook, tmp_path: Path
) -> None:
    fdl = tmp_path / "notebook" / "upper.yaml"
    fdl.parent.mkdir()
    fdl.write_text(FDL.format(cluster=CLUSTER, inbox=notebook.inbox, outbox=notebook.outbox))
    (fdl.parent / "upper.sh").write_text(SCRIPT)

    created = await notebook.call("create_service", str(fdl))
    assert created.status_code == 201
    shown = json.loads((await notebook.call("get_service", "upper")).text)
    assert (shown["name"], shown["script"]) == ("upper", SCRIPT)
    assert [row["name"] for row in json.loads((await notebook.call("list_services")).text)] == ["upper"]

    # The store client oscar-python builds from /system/config/ (note the slash) and the service.
    storage = await notebook.call("create_storage_client", "upper")
    provider = storage.storage_providers["minio"]["default"]
    assert provider["access_key"] == notebook.store_access_key
    assert notebook.s3.endpoint.secret_key not in json.dumps(provider)
    photo = tmp_path / "note.txt"
    photo.write_text("hello from a notebook\n")
    await asyncio.to_thread(storage.upload_file, "minio.default", str(photo), f"{notebook.inbox}/in")

    async def succeeded() -> str | None:
        jobs = json.loads((await notebook.call("list_jobs", "upper")).text)["jobs"]
        done = [name for name, job in jobs.items() if job["status"] == "Succeeded"]
        failed = [name for name, job in jobs.items() if job["status"] == "Failed"]
        assert not failed, jobs
        return done[0] if done else None

    job = await until(succeeded, "list_jobs to show the Job succeeded", within=RUN_TIMEOUT)
    log = (await notebook.call("get_job_logs", "upper", job)).text
    assert "upper-cased note.txt for the notebook" in log

    downloads = tmp_path / "downloads"
    downloads.mkdir()
    await asyncio.to_thread(
        storage.download_file, "minio.default", str(downloads), f"{notebook.outbox}/out/note.txt"
    )
    assert (downloads / "note.txt").read_text() == "HELLO FROM A NOTEBOOK\n"

    removed = await notebook.call("remove_service", "upper")
    assert removed.status_code == 204
    assert json.loads((await notebook.call("list_services")).text) == []
    # The users' keys follow the services: with none left they reach nothing.
    again = tmp_path / "late.txt"
    again.write_text("too late\n")
    with pytest.raises(ClientError, match="AccessDenied"):  # oscar-python catches aiohttp's ClientError only
        await asyncio.to_thread(storage.upload_file, "minio.default", str(again), f"{notebook.inbox}/in")
