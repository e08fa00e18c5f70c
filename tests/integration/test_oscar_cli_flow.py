"""An OSCAR user's whole session with the real oscar-cli against `bucketrun api`, on the real stack.

Everything is real: a MinIO of the test's own whose AMQP target publishes to the test's exchange,
RabbitMQ, the cluster (its kubelet runs the pods), `bucketrun serve` (dispatcher and watcher, reading
the services directory the API writes) and `bucketrun api` as a separate process. The user applies an
FDL of two chained services (the first one's output is the second one's input) and a secret, uploads
with `put-file`, follows the Jobs with `service logs`, fetches the result with `get-file`, invokes the
first service with `service job`, removes logs, applies a change and deletes both services. Each step
is asserted on what oscar-cli prints and on the store and cluster state.
"""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import pytest
import yaml
from kubernetes_asyncio import client  # noqa: TID251 - the test inspects the cluster directly

from bucketrun.devtools.minio_server import MinioServer
from bucketrun.serve import run_serve
from dispatcher.adapters.kube.api import MANAGED_SELECTOR
from dispatcher.runtime.settings import ENV_PREFIX, settings_environment
from tests.backends.kubernetes import KubeTestEnv
from tests.backends.minio_server import endpoint_of
from tests.backends.rabbitmq import AmqpNames
from tests.backends.s3 import S3Scope
from tests.integration.api_process import api_process, remove_store_user
from tests.integration.oscar_cli import OscarCli, oscar_cli_binary
from tests.integration.stack import read_object, started, until
from tests.integration.watcher_support import bind_results_queue, make_settings

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CLUSTER = "bucketrun"
USER, PASSWORD = "oscar", "a-session-password-8d2e"
RUN_TIMEOUT = 120.0

# Two chained services and a secret, as an OSCAR user writes them for oscar-cli 1.12 (OSCAR 3.3's
# types: `Variables` capitalised, the scripts in files beside the FDL). Those types have no
# `environment.secrets` (oscar-cli drops them), so the secret is a storage provider's key: `count`
# writes its results through `minio.archive`, a second MinIO provider with keys of its own.
FDL = """\
functions:
  oscar:
  - {cluster}:
      name: upper
      image: alpine:3.20
      cpu: '0.5'
      memory: {memory}
      script: upper.sh
      environment:
        Variables:
          GREETING: hello
      input:
      - storage_provider: minio.default
        path: {inbox}/in
      output:
      - storage_provider: minio.default
        path: {middle}/up
  - {cluster}:
      name: count
      image: alpine:3.20
      cpu: '0.5'
      memory: 128Mi
      script: count.sh
      input:
      - storage_provider: minio.default
        path: {middle}/up
      output:
      - storage_provider: minio.archive
        path: {outbox}/counted
storage_providers:
  minio:
    archive:
      endpoint: {endpoint}
      verify: false
      region: {region}
      access_key: {access_key}
      secret_key: {secret_key}
"""
UPPER = """\
#!/bin/sh
name=$(basename "$INPUT_FILE_PATH")
tr a-z A-Z < "$INPUT_FILE_PATH" > "$TMP_OUTPUT_DIR/$name"
echo "$GREETING: upper-cased $name"
"""
COUNT = """\
#!/bin/sh
name=$(basename "$INPUT_FILE_PATH")
wc -w < "$INPUT_FILE_PATH" | tr -d ' ' > "$TMP_OUTPUT_DIR/$name.words"
echo "counted the words of $name"
"""


@dataclass
class Session:
    """The servers of one test, its buckets and an oscar-cli logged in to its `bucketrun api`."""

    s3: S3Scope
    kube: KubeTestEnv
    inbox: str
    middle: str
    outbox: str
    definitions: str
    cli: OscarCli
    url: str

    def fdl(self, *, memory: str = "256Mi") -> str:
        endpoint = self.s3.endpoint
        return FDL.format(
            cluster=CLUSTER,
            memory=memory,
            inbox=self.inbox,
            middle=self.middle,
            outbox=self.outbox,
            endpoint=f"http://{endpoint.endpoint}",
            region=endpoint.region,
            access_key=endpoint.access_key,
            secret_key=endpoint.secret_key,
        )

    def read(self, bucket: str, key: str) -> bytes | None:
        return read_object(self.s3.endpoint, bucket, key)

    async def cli_ok(self, *args: str) -> str:
        code, out = await self.cli(*args)
        assert code == 0, f"oscar-cli {' '.join(args)} exited {code}:\n{out}"
        return out

    async def jobs(self, api: client.ApiClient, service: str) -> list[str]:
        found = await client.BatchV1Api(api).list_namespaced_job(
            self.kube.namespace, label_selector=f"bucketrun.io/service={service}"
        )
        return sorted(job.metadata.name for job in found.items)


@pytest.fixture
def s3(minio_events: MinioServer) -> S3Scope:
    """The test's own MinIO, publishing to the test's exchange (it goes with the test)."""
    return S3Scope(endpoint_of(minio_events))


@pytest.fixture
async def session(
    s3: S3Scope, amqp_names: AmqpNames, kube: KubeTestEnv, tmp_path: Path
) -> AsyncIterator[Session]:
    cli = OscarCli(oscar_cli_binary(), tmp_path / "home")
    cli.home.mkdir()
    kube.require_control().set_kubelet("run")
    inbox, middle = s3.bucket("in", create=False), s3.bucket("mid", create=False)
    # The archive is a store the user owns already: its bucket exists (services apply manages minio.default).
    outbox, records = s3.bucket("out"), s3.bucket("records")
    definitions = s3.bucket("api", create=False)
    services = tmp_path / "api-services"
    services.mkdir()
    exchange, queue = amqp_names.exchange("results"), amqp_names.queue("results")
    await bind_results_queue(amqp_names, exchange, queue)
    for service in ("upper", "count"):
        amqp_names.queue(f"svc.{service}")
    settings = make_settings(amqp_names, s3, kube, services, records_bucket=records, exchange=exchange)
    store_user = f"cli{uuid.uuid4().hex[:12]}"
    env = {
        **{key: value for key, value in os.environ.items() if not key.startswith(ENV_PREFIX)},
        # The dispatcher's settings (the same broker, exchange and queues for `service job`), then the API's.
        **settings_environment(settings),
        "BUCKETRUN_STORAGE__NOTIFY_ARN": s3.endpoint.notify_arn or "",
        "BUCKETRUN_API__USERNAME": USER,
        "BUCKETRUN_API__PASSWORD": PASSWORD,
        "BUCKETRUN_API__DEFINITIONS_BUCKET": definitions,
        "BUCKETRUN_API__SERVICES_DIR": str(services),
        "BUCKETRUN_API__STORE_ACCESS_KEY": store_user,
        "BUCKETRUN_API__STORE_SECRET_KEY": f"cli-secret-{uuid.uuid4().hex[:24]}",
    }
    try:
        async with (
            started(partial(run_serve, settings), "dispatcher and watcher", within=60),
            api_process(env) as url,
        ):
            yield Session(s3, kube, inbox, middle, outbox, definitions, cli, url)
    finally:
        remove_store_user(s3.endpoint, store_user, definitions)


def _rows(text: str) -> list[list[str]]:
    return [line.split() for line in text.splitlines() if line.strip()]


async def test_an_oscar_user_session_with_oscar_cli(
    session: Session, kube_api: client.ApiClient, tmp_path: Path
) -> None:
    cli = session.cli
    out = await session.cli_ok("cluster", "add", CLUSTER, session.url, USER, PASSWORD, "--disable-ssl")
    assert f'Cluster "{CLUSTER}" successfully stored' in out

    # apply: two chained services and a secret.
    work = tmp_path / "work"
    work.mkdir()
    fdl = work / "services.yaml"
    fdl.write_text(session.fdl())
    (work / "upper.sh").write_text(UPPER)
    (work / "count.sh").write_text(COUNT)
    out = await session.cli_ok("apply", str(fdl))
    assert f'Creating service "upper" in cluster "{CLUSTER}"' in out
    assert f'Creating service "count" in cluster "{CLUSTER}"' in out
    core = client.CoreV1Api(kube_api)
    maps = await core.list_namespaced_config_map(session.kube.namespace, label_selector=MANAGED_SELECTOR)
    assert sorted(m.metadata.labels["bucketrun.io/service"] for m in maps.items) == ["count", "upper"]
    secret_key = session.s3.endpoint.secret_key
    assert all(secret_key not in json.dumps(m.data) for m in maps.items)  # the provider's key: nowhere

    # service list, service get
    rows = _rows(await session.cli_ok("service", "list"))
    assert rows[0] == ["NAME", "IMAGE", "CPU", "MEMORY"]
    assert sorted(rows[1:]) == [
        ["count", "alpine:3.20", "0.5", "128Mi"],
        ["upper", "alpine:3.20", "0.5", "256Mi"],
    ]
    shown = yaml.safe_load(await session.cli_ok("service", "get", "upper"))
    assert (shown["name"], shown["script"]) == ("upper", UPPER)
    assert secret_key not in await session.cli_ok("service", "get", "count")

    # put-file → the Job runs → its output feeds `count` → get-file fetches the end of the chain.
    note = work / "note.txt"
    note.write_text("files in buckets become jobs\n")
    out = await session.cli_ok(
        "service",
        "put-file",
        "upper",
        "minio.default",
        str(note),
        f"{session.inbox}/in/note.txt",
        "--no-progress",
    )

    async def counted() -> bytes | None:
        return session.read(session.outbox, "counted/note.txt.words")

    assert await until(counted, "the chain's output", within=RUN_TIMEOUT) == b"5\n"
    assert session.read(session.middle, "up/note.txt") == b"FILES IN BUCKETS BECOME JOBS\n"

    async def listed(service: str, count: int) -> list[list[str]] | None:
        code, text = await cli("service", "logs", "list", service)
        rows = _rows(text)[1:] if code == 0 else []
        done = [row for row in rows if row[1] == "Succeeded"]
        return rows if len(done) >= count else None

    rows = await until(
        lambda: listed("upper", 1), "logs list to show upper's Job succeeded", within=RUN_TIMEOUT
    )
    (upper_job,) = [row[0] for row in rows]
    assert await session.jobs(kube_api, "upper") == [upper_job]
    log = await session.cli_ok("service", "logs", "get", "upper", upper_job)
    assert "hello: upper-cased note.txt" in log
    await until(lambda: listed("count", 1), "logs list to show count's Job succeeded", within=RUN_TIMEOUT)

    # get-file reads with the API users' keys (minio.default): upper's output, the chain's middle. The
    # archive's results are the user's own store, which those keys do not reach.
    fetched = work / "fetched.txt"
    await session.cli_ok(
        "service",
        "get-file",
        "upper",
        "minio.default",
        f"{session.middle}/up/note.txt",
        str(fetched),
        "--no-progress",
    )
    assert fetched.read_text() == "FILES IN BUCKETS BECOME JOBS\n"
    code, out = await cli(
        "service",
        "get-file",
        "count",
        "minio.default",
        f"{session.outbox}/counted/note.txt.words",
        str(fetched),
    )
    assert (code, "AccessDenied" in out) == (1, True), out

    # service job: an invocation without upload → one more Job of `upper`, whose input is the text.
    out = await session.cli_ok("service", "job", "upper", "--text-input", "an invocation")
    rows = await until(lambda: listed("upper", 2), "the invoked Job to succeed", within=RUN_TIMEOUT)
    invoked = next(row[0] for row in rows if row[0] != upper_job)
    assert sorted(await session.jobs(kube_api, "upper")) == sorted([upper_job, invoked])
    log = await session.cli_ok("service", "logs", "get", "upper", invoked)
    assert "hello: upper-cased" in log

    # logs remove: the first Job and its log are gone, from the list and from the cluster.
    out = await session.cli_ok("service", "logs", "remove", "upper", upper_job)
    assert upper_job not in await session.cli_ok("service", "logs", "list", "upper")
    assert await session.jobs(kube_api, "upper") == [invoked]

    # apply a changed FDL (update), then remove both services.
    fdl.write_text(session.fdl(memory="512Mi"))
    out = await session.cli_ok("apply", str(fdl))
    assert f'Editing service "upper" in cluster "{CLUSTER}"' in out
    assert ["upper", "alpine:3.20", "0.5", "512Mi"] in _rows(await session.cli_ok("service", "list"))
    for service in ("upper", "count"):
        out = await session.cli_ok("service", "delete", service)  # oscar-cli 1.12 has no `remove`
        assert f'Removing service "{service}"' in out
    assert (await session.cli_ok("service", "list")).strip() == "There are no services in the cluster"
    maps = await core.list_namespaced_config_map(session.kube.namespace, label_selector=MANAGED_SELECTOR)
    assert maps.items == []
    minio = session.s3.endpoint.client()
    assert minio.get_bucket_notification(session.inbox).queue_config_list == []
    assert await asyncio.to_thread(lambda: list((tmp_path / "api-services").iterdir())) == []
