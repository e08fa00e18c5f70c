"""`bucketrun services apply|list|delete` run as a command against the real S3 server and cluster.

The S3 server is the MinIO built from source (`make servers`), with its AMQP target
`arn:minio:sqs::_:amqp` and a second one standing for someone else's subscriber; what MinIO stored is
read back with the real `mc event ls`. moto is the fallback where MinIO is not built (it accepts an AWS
SQS ARN and round-trips the configuration), and the one store here that refuses MinIO's ARNs
(InvalidArgument "The ARN is not well formed"): the exit-3 path runs on it.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest
from kubernetes_asyncio import client  # noqa: TID251 - the test inspects the cluster directly
from minio.notificationconfig import NotificationConfig, QueueConfig, TopicConfig  # noqa: TID251

from bucketrun.cli.main import main
from bucketrun.devtools.moto_server import free_port
from dispatcher.adapters.kube.api import MANAGED_SELECTOR, KubeApi
from dispatcher.adapters.kube.creating import ConfigMapCreator
from dispatcher.domain.events import build_message, parse_message
from dispatcher.fdl import load_services
from dispatcher.rendering.context import RenderSettings, placeholder_grants
from dispatcher.rendering.render import JobRenderer
from tests.backends.kubernetes import KubeTestEnv
from tests.backends.minio_server import FOREIGN_ARN as MINIO_FOREIGN_ARN
from tests.backends.minio_server import mc
from tests.backends.s3 import S3Scope
from tests.integration.admin_env import admin_env

pytestmark = pytest.mark.integration

AWS_ARN = "arn:aws:sqs:us-east-1:123456789012:bucketrun-events"
FOREIGN_ARN = "arn:aws:sqs:us-east-1:123456789012:someone-else"
FOREIGN_TOPIC = "arn:aws:sns:us-east-1:123456789012:audit"
RUN_TIMEOUT = 90.0

FDL = """\
functions:
  oscar:
  - test:
      name: upper
      image: alpine:3.20
      script: |
        #!/bin/sh
        tr a-z A-Z < "$INPUT_FILE_PATH" > "$TMP_OUTPUT_DIR/out.txt"
      input:
      - storage_provider: minio
        path: {inbox}/in
        suffix: [{suffix}]
      output:
      - storage_provider: minio
        path: {outbox}/results
"""


class Stack:
    """One test's buckets, namespace and FDL, and a way to run `bucketrun` against them."""

    def __init__(
        self, s3: S3Scope, kube: KubeTestEnv, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        self.capsys = capsys
        self.s3 = s3
        self.kube = kube
        self.inbox = s3.bucket("in", create=False)
        self.outbox = s3.bucket("out", create=False)
        self.records = s3.bucket("records", create=False)
        self.fdl = tmp_path / "services.yaml"
        self.tmp_path = tmp_path
        self.write_fdl('".txt", ".md"')

    @property
    def on_minio(self) -> bool:
        return self.s3.endpoint.notify_arn is not None

    @property
    def arn(self) -> str:
        """The store's AMQP target: MinIO's own, or an AWS SQS ARN that moto accepts."""
        return self.s3.endpoint.notify_arn or AWS_ARN

    @property
    def foreign_arn(self) -> str:
        """Another subscriber's target on the same store."""
        return MINIO_FOREIGN_ARN if self.on_minio else FOREIGN_ARN

    def mc_rules(self, bucket: str) -> list[tuple[str, str, tuple[str, ...], str, str]]:
        """(arn, id, events, prefix, suffix) of every rule `mc event ls` shows on *bucket* (MinIO only)."""
        listed = mc(self.s3.endpoint, "event", "ls", f"t/{bucket}", config_dir=self.tmp_path / "mc")
        return sorted(
            (rule["arn"], rule["id"], tuple(rule["event"]), rule.get("prefix", ""), rule.get("suffix", ""))
            for rule in listed
        )

    def write_fdl(self, suffix: str) -> None:
        self.fdl.write_text(FDL.format(inbox=self.inbox, outbox=self.outbox, suffix=suffix))

    def env(self, **extra: str) -> dict[str, str]:
        return admin_env(self.s3.endpoint, self.records, self.kube, **extra)

    async def run(self, *args: str, **env: str) -> tuple[int, str, str]:
        """`bucketrun ARGS` through `main(argv)` in a worker thread (it runs its own event loop) with this
        stack's settings in the environment: (exit code, stdout, stderr)."""
        with pytest.MonkeyPatch.context() as patch:
            for key in [key for key in os.environ if key.startswith("BUCKETRUN_")]:
                patch.delenv(key)
            for key, value in self.env(**env).items():
                if key.startswith("BUCKETRUN_"):
                    patch.setenv(key, value)
            self.capsys.readouterr()
            async with asyncio.timeout(RUN_TIMEOUT):
                code = await asyncio.to_thread(main, list(args))
            out, err = self.capsys.readouterr()
        return code, out, err

    async def run_installed(self, *args: str, **env: str) -> tuple[int, str, str]:
        """`python -m bucketrun.cli.main ARGS` as a separate process, as a user runs it."""
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bucketrun.cli.main",
            *args,
            env=self.env(**env),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            async with asyncio.timeout(RUN_TIMEOUT):
                out, err = await process.communicate()
        except TimeoutError:
            process.kill()
            await process.wait()
            pytest.fail(f"bucketrun {' '.join(args)} did not finish within {RUN_TIMEOUT} s")
        assert process.returncode is not None
        return process.returncode, out.decode(), err.decode()

    async def snapshot(self, api: client.ApiClient) -> dict[str, Any]:
        """Every bucket of this test with its objects and notification entries, and the ConfigMaps."""

        def store() -> dict[str, Any]:
            minio = self.s3.endpoint.client()
            found: dict[str, Any] = {}
            for bucket in (self.inbox, self.outbox, self.records):
                if not minio.bucket_exists(bucket):
                    continue
                objects = sorted(
                    item.object_name or "" for item in minio.list_objects(bucket, recursive=True)
                )
                found[bucket] = (objects, repr(minio.get_bucket_notification(bucket)))
            return found

        maps = await client.CoreV1Api(api).list_namespaced_config_map(
            self.kube.namespace, label_selector=MANAGED_SELECTOR
        )
        return {
            "store": await asyncio.to_thread(store),
            "configmaps": sorted(m.metadata.name for m in maps.items),
        }

    def notification(self, bucket: str) -> NotificationConfig:
        return self.s3.endpoint.client().get_bucket_notification(bucket)

    def expected_config_map(self) -> dict[str, Any]:
        service = load_services([self.fdl]).services[0]
        return JobRenderer(RenderSettings(namespace=self.kube.namespace)).render_config_map(service)


@pytest.fixture
def stack(s3: S3Scope, kube: KubeTestEnv, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Stack:
    return Stack(s3, kube, tmp_path, capsys)


@pytest.fixture
def moto_stack(
    moto_s3: S3Scope, kube: KubeTestEnv, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> Stack:
    return Stack(moto_s3, kube, tmp_path, capsys)


async def test_apply_creates_everything_and_a_second_run_changes_nothing(
    stack: Stack, kube_api: client.ApiClient
) -> None:
    code, out, err = await stack.run_installed(
        "services", "apply", str(stack.fdl), BUCKETRUN_STORAGE__NOTIFY_ARN=stack.arn
    )
    assert code == 0, err
    for line in (
        f"create bucket {stack.inbox}",
        f"create bucket {stack.outbox}",
        f"create bucket {stack.records}",
        f"create marker {stack.inbox}/in/",
        f"create marker {stack.outbox}/results/",
    ):
        assert line in out.splitlines()
    assert f"create configmap {stack.expected_config_map()['metadata']['name']}" in out
    assert f"update notification {stack.inbox}: add bucketrun-upper-0" in out

    wiring = stack.notification(stack.inbox).queue_config_list
    assert sorted(
        (q.config_id, q.queue, tuple(q.events), q.prefix_filter_rule.value, q.suffix_filter_rule.value)  # type: ignore[union-attr]
        for q in wiring
    ) == [
        ("bucketrun-upper-0", stack.arn, ("s3:ObjectCreated:*",), "in/", ".txt"),
        ("bucketrun-upper-1", stack.arn, ("s3:ObjectCreated:*",), "in/", ".md"),
    ]
    if stack.on_minio:  # what the server itself says it will notify, through MinIO's own client
        assert stack.mc_rules(stack.inbox) == [
            (stack.arn, "bucketrun-upper-0", ("s3:ObjectCreated:*",), "in/", ".txt"),
            (stack.arn, "bucketrun-upper-1", ("s3:ObjectCreated:*",), "in/", ".md"),
        ]
        assert stack.mc_rules(stack.outbox) == stack.mc_rules(stack.records) == []
    # The dispatcher renders the same ConfigMap and finds it there (409: nothing to create).
    async with await KubeApi.connect(stack.kube.namespace, kubeconfig=stack.kube.kubeconfig) as api:
        assert await ConfigMapCreator(api).ensure(stack.expected_config_map()) is False

    before = await stack.snapshot(kube_api)
    code, out, err = await stack.run(
        "services", "apply", str(stack.fdl), BUCKETRUN_STORAGE__NOTIFY_ARN=stack.arn
    )
    assert code == 0, err
    assert out.splitlines()[-1].startswith("no changes")
    assert f"notification {stack.inbox} unchanged" in out
    assert await stack.snapshot(kube_api) == before


async def test_dry_run_changes_nothing(stack: Stack, kube_api: client.ApiClient) -> None:
    empty = await stack.snapshot(kube_api)
    code, out, err = await stack.run("services", "apply", "--dry-run", str(stack.fdl))
    assert code == 0, err
    assert f"would create bucket {stack.inbox}" in out
    assert "nothing was changed" in out.splitlines()[-1]
    assert await stack.snapshot(kube_api) == empty == {"store": {}, "configmaps": []}

    # Half applied (no notifications), then a dry run that would change the script: still nothing.
    code, _, err = await stack.run("services", "apply", "--skip-notifications", str(stack.fdl))
    assert code == 0, err
    before = await stack.snapshot(kube_api)
    stack.write_fdl('".png"')
    code, out, err = await stack.run("services", "apply", "--dry-run", str(stack.fdl))
    assert "would update notification" in out, err
    assert await stack.snapshot(kube_api) == before


async def test_a_store_refusing_minio_arns_gets_the_rest_and_a_poller_hint(
    moto_stack: Stack, kube_api: client.ApiClient
) -> None:
    stack = moto_stack
    code, out, err = await stack.run("services", "apply", str(stack.fdl))  # default arn:minio:sqs::_:amqp
    assert code == 3, (out, err)
    assert f"refused: update notification {stack.inbox}" in out
    assert "arn:minio:sqs::_:amqp" in err
    assert stack.inbox in err
    assert "bucketrun poll" in err
    assert "Everything else was applied" in err
    state = await stack.snapshot(kube_api)
    assert state["store"][stack.inbox][0] == ["in/"]
    assert state["store"][stack.outbox][0] == ["results/"]
    assert stack.records in state["store"]
    assert state["configmaps"] == [stack.expected_config_map()["metadata"]["name"]]

    code, out, err = await stack.run("services", "apply", "--skip-notifications", str(stack.fdl))
    assert code == 0, err
    assert out.splitlines()[-1].startswith("no changes")


async def test_delete_removes_only_bucketruns_entries_and_configmaps(
    stack: Stack, kube_api: client.ApiClient
) -> None:
    await asyncio.to_thread(stack.s3.bucket, "in")  # exists already, with someone else's wiring
    theirs = [QueueConfig(queue=stack.foreign_arn, events=["s3:ObjectRemoved:*"], config_id="audit")]
    # MinIO has no SNS-style topics; moto keeps one, which must survive too.
    topics = [] if stack.on_minio else ["t1"]
    foreign = NotificationConfig(
        queue_config_list=theirs,
        topic_config_list=[
            TopicConfig(topic=FOREIGN_TOPIC, events=["s3:ObjectCreated:Put"], config_id=t) for t in topics
        ],
    )
    stack.s3.endpoint.client().set_bucket_notification(stack.inbox, foreign)

    code, _, err = await stack.run(
        "services", "apply", str(stack.fdl), BUCKETRUN_STORAGE__NOTIFY_ARN=stack.arn
    )
    assert code == 0, err
    merged = stack.notification(stack.inbox)
    assert {q.config_id for q in merged.queue_config_list} == {
        "audit",
        "bucketrun-upper-0",
        "bucketrun-upper-1",
    }
    assert [t.config_id for t in merged.topic_config_list] == topics

    before = await stack.snapshot(kube_api)
    code, out, err = await stack.run("services", "delete", "upper", "--dry-run")
    assert code == 0, err
    assert f"would update notification {stack.inbox}: remove bucketrun-upper-0, bucketrun-upper-1" in out
    assert await stack.snapshot(kube_api) == before

    code, out, err = await stack.run("services", "delete", "--fdl", str(stack.fdl))
    assert code == 0, err
    assert f"delete configmap {stack.expected_config_map()['metadata']['name']}" in out
    left = stack.notification(stack.inbox)
    assert [q.config_id for q in left.queue_config_list] == ["audit"]
    assert [t.config_id for t in left.topic_config_list] == topics
    if stack.on_minio:
        assert stack.mc_rules(stack.inbox) == [(stack.foreign_arn, "audit", ("s3:ObjectRemoved:*",), "", "")]
    after = await stack.snapshot(kube_api)
    assert after["configmaps"] == []
    # Buckets and objects stay.
    assert {bucket: objects for bucket, (objects, _) in after["store"].items()} == {
        stack.inbox: ["in/"],
        stack.outbox: ["results/"],
        stack.records: [],
    }


async def test_list_shows_wiring_and_drift_against_the_fdl(stack: Stack) -> None:
    code, _, err = await stack.run(
        "services", "apply", str(stack.fdl), BUCKETRUN_STORAGE__NOTIFY_ARN=stack.arn
    )
    assert code == 0, err

    def upper(out: str) -> dict[str, Any]:
        return next(s for s in json.loads(out)["services"] if s["name"] == "upper")

    code, out, err = await stack.run(
        "services", "list", str(stack.fdl), "--json", BUCKETRUN_STORAGE__NOTIFY_ARN=stack.arn
    )
    assert code == 0, err
    status = upper(out)
    assert (status["notifications"], status["config_map"], status["in_fdl"]) == ("wired", "present", True)
    assert stack.inbox in status["buckets"]

    stack.write_fdl('".png"')
    code, out, err = await stack.run(
        "services", "list", str(stack.fdl), "--json", BUCKETRUN_STORAGE__NOTIFY_ARN=stack.arn
    )
    assert code == 0, err
    status = upper(out)
    assert status["notifications"] == "drifted"
    assert status["config_map"] == "outdated"  # the content hash covers the inputs: a new version is due
    assert any("suffix '.txt' -> '.png'" in line for line in status["drift"])


async def test_bad_fdl_exits_1_before_contacting_anything(stack: Stack, kube_api: client.ApiClient) -> None:
    stack.fdl.write_text(stack.fdl.read_text().replace("name: upper", "name: Upper_Case"))
    code, out, err = await stack.run("services", "apply", str(stack.fdl))
    assert code == 1
    assert "Upper_Case" in err
    assert out == ""
    assert await stack.snapshot(kube_api) == {"store": {}, "configmaps": []}


async def test_an_unreachable_store_exits_4_naming_what_failed(stack: Stack) -> None:
    dead = f"127.0.0.1:{free_port()}"  # nothing listens there
    code, out, err = await stack.run("services", "apply", str(stack.fdl), BUCKETRUN_STORAGE__ENDPOINT=dead)
    assert code == 4, (out, err)
    assert "error: cannot reach storage" in err
    assert stack.inbox in err or stack.records in err  # the bucket it was looking up


# -- the services' Secrets (environment.secrets) ------------------------------------------------------

API_KEY = "api-key-Vq3zL8wApplyTest"
DB_PASSWORD = "db-pass-Rt5nK2mApplyTest"
ROTATED_KEY = "api-key-Rotated7Hc4ApplyTest"
SECRET_NAME = "bucketrun-upper-secrets"


def with_secrets(stack: Stack, **secrets: str) -> None:
    """The test's FDL with these `environment.secrets` (the service's last key)."""
    stack.write_fdl('".txt"')
    lines = "".join(f"          {name}: {json.dumps(value)}\n" for name, value in secrets.items())
    stack.fdl.write_text(stack.fdl.read_text() + "      environment:\n        secrets:\n" + lines)


async def read_secret(api: client.ApiClient, namespace: str, name: str) -> Any:
    try:
        return await client.CoreV1Api(api).read_namespaced_secret(name, namespace)
    except client.ApiException as error:
        if error.status == 404:
            return None
        raise


def decoded(secret: Any) -> dict[str, str]:
    return {key: base64.b64decode(value).decode() for key, value in (secret.data or {}).items()}


async def test_apply_creates_the_secret_updates_it_only_when_it_changed_and_delete_removes_it(
    stack: Stack, kube_api: client.ApiClient
) -> None:
    namespace = stack.kube.namespace
    values = (API_KEY, DB_PASSWORD, ROTATED_KEY)
    printed: list[str] = []

    async def apply() -> str:
        code, out, err = await stack.run("services", "apply", "--skip-notifications", str(stack.fdl))
        assert code == 0, err
        printed.extend((out, err))
        return out

    # Someone else's Secrets in the namespace: one of their own, one with a bucketrun-like name.
    core = client.CoreV1Api(kube_api)
    for name in ("their-own", "bucketrun-other-secrets"):
        body = {"metadata": {"name": name}, "stringData": {"K": "theirs"}}
        await core.create_namespaced_secret(namespace, body)

    with_secrets(stack, API_KEY=API_KEY, DB_PASSWORD=DB_PASSWORD)
    out = await apply()
    assert f"create secret {SECRET_NAME} (keys API_KEY, DB_PASSWORD)" in out.splitlines()
    secret = await read_secret(kube_api, namespace, SECRET_NAME)
    assert decoded(secret) == {"API_KEY": API_KEY, "DB_PASSWORD": DB_PASSWORD}
    assert secret.metadata.labels == {
        "app.kubernetes.io/managed-by": "bucketrun",
        "bucketrun.io/service": "upper",
    }
    version = secret.metadata.resource_version
    # The Job the dispatcher renders references exactly that Secret and its keys, and holds no value.
    job = JobRenderer(RenderSettings(namespace=namespace)).render_job(
        load_services([stack.fdl]).services[0], *render_inputs(stack)
    )
    refs = [
        e["valueFrom"]["secretKeyRef"]
        for c in job_containers(job)
        for e in c["env"]
        if "valueFrom" in e and "secretKeyRef" in e["valueFrom"]
    ]
    assert refs == [{"name": SECRET_NAME, "key": "API_KEY"}, {"name": SECRET_NAME, "key": "DB_PASSWORD"}]

    # Applied again: nothing to change, nothing written.
    out = await apply()
    assert f"secret {SECRET_NAME} unchanged" in out
    assert out.splitlines()[-1].startswith("no changes")
    assert (await read_secret(kube_api, namespace, SECRET_NAME)).metadata.resource_version == version

    # A new value: updated in place, the line names the key only.
    with_secrets(stack, API_KEY=ROTATED_KEY, DB_PASSWORD=DB_PASSWORD)
    out = await apply()
    assert f"update secret {SECRET_NAME}: change API_KEY" in out.splitlines()
    assert decoded(await read_secret(kube_api, namespace, SECRET_NAME)) == {
        "API_KEY": ROTATED_KEY,
        "DB_PASSWORD": DB_PASSWORD,
    }

    # `services list` says it is there and matches the FDL, never what it holds.
    code, out, err = await stack.run("services", "list", str(stack.fdl), "--json")
    assert code == 0, err
    printed.extend((out, err))
    (status,) = [s for s in json.loads(out)["services"] if s["name"] == "upper"]
    assert status["secret"] == "present"
    code, out, err = await stack.run("services", "list")
    assert code == 0, err
    printed.extend((out, err))
    assert "secret present" in out

    # `services delete` removes it, and leaves Secrets that are not bucketrun's alone.
    code, out, err = await stack.run("services", "delete", "upper", "other")
    assert code == 0, err
    printed.extend((out, err))
    assert f"delete secret {SECRET_NAME}" in out.splitlines()
    assert "bucketrun-other-secrets" not in out
    assert await read_secret(kube_api, namespace, SECRET_NAME) is None
    for name in ("their-own", "bucketrun-other-secrets"):
        assert decoded(await read_secret(kube_api, namespace, name)) == {"K": "theirs"}

    everything = "\n".join(printed)
    for value in values:
        assert value not in everything


async def test_apply_removes_the_secret_once_the_service_has_no_secrets(
    stack: Stack, kube_api: client.ApiClient
) -> None:
    with_secrets(stack, API_KEY=API_KEY)
    code, _, err = await stack.run("services", "apply", "--skip-notifications", str(stack.fdl))
    assert code == 0, err
    assert await read_secret(kube_api, stack.kube.namespace, SECRET_NAME) is not None

    stack.write_fdl('".txt"')  # no environment.secrets any more
    code, out, err = await stack.run("services", "apply", "--skip-notifications", "--dry-run", str(stack.fdl))
    assert code == 0, err
    assert f"would delete secret {SECRET_NAME} (the service has no secrets any more)" in out
    assert await read_secret(kube_api, stack.kube.namespace, SECRET_NAME) is not None
    code, out, err = await stack.run("services", "apply", "--skip-notifications", str(stack.fdl))
    assert code == 0, err
    assert f"delete secret {SECRET_NAME} (the service has no secrets any more)" in out
    assert await read_secret(kube_api, stack.kube.namespace, SECRET_NAME) is None


def render_inputs(stack: Stack) -> tuple[Any, Any]:
    """An event for the service's input and the dry-run grants, as `bucketrun render` uses them."""
    service = load_services([stack.fdl]).services[0]
    (event,) = parse_message(
        build_message(
            event_name="s3:ObjectCreated:Put", bucket=stack.inbox, key="in/a.txt", size=1, sequencer="1"
        )
    )
    return event, placeholder_grants(service, event)


def job_containers(job: dict[str, Any]) -> list[dict[str, Any]]:
    spec = job["spec"]["template"]["spec"]
    return [*spec.get("initContainers", []), *spec["containers"]]


async def test_a_service_for_two_clusters_is_applied_listed_and_deleted_for_the_chosen_one(
    stack: Stack, kube_api: client.ApiClient
) -> None:
    # The FDL of the other tests filed twice: under 'edge' reading in/edge, under 'cloud' reading in/.
    text = stack.fdl.read_text()
    entry = text.split("  oscar:\n", 1)[1]
    edge = entry.replace("- test:", "- edge:").replace("/in\n", "/in/edge\n").replace("tr a-z A-Z", "cat")
    stack.fdl.write_text(text.replace("- test:", "- cloud:") + edge)

    code, out, err = await stack.run("services", "apply", "--dry-run", str(stack.fdl))
    assert code == 1
    assert "'cloud' in" in err
    assert "'edge' in" in err
    assert "--cluster ID" in err
    assert "BUCKETRUN_SERVICES__CLUSTER" in err
    assert out == ""
    assert await stack.snapshot(kube_api) == {"store": {}, "configmaps": []}

    code, out, err = await stack.run(
        "services", "apply", "--skip-notifications", "--cluster", "cloud", str(stack.fdl)
    )
    assert code == 0, err
    assert "note: " in out
    assert "service 'upper' for cluster 'edge' set aside" in out
    chosen = load_services([stack.fdl], cluster="cloud").by_name("upper")
    config_map = JobRenderer(RenderSettings(namespace=stack.kube.namespace)).render_config_map(chosen)
    applied = await stack.snapshot(kube_api)
    assert applied["configmaps"] == [config_map["metadata"]["name"]]
    assert applied["store"][stack.inbox][0] == ["in/"]  # the cloud definition's folder, not in/edge/

    # The setting chooses where the option is absent: list and delete see the same service.
    code, out, err = await stack.run(
        "services", "list", str(stack.fdl), "--json", BUCKETRUN_SERVICES__CLUSTER="cloud"
    )
    assert code == 0, err
    upper = next(s for s in json.loads(out)["services"] if s["name"] == "upper")
    assert (upper["config_map"], upper["in_fdl"]) == ("present", True)
    code, out, err = await stack.run(
        "services", "delete", "--fdl", str(stack.fdl), BUCKETRUN_SERVICES__CLUSTER="cloud"
    )
    assert code == 0, err
    assert f"delete configmap {config_map['metadata']['name']}" in out
