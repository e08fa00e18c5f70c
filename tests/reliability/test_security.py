"""Security checks on what bucketrun really produces: Job manifests, log lines, pod logs and HTTP endpoints.

- A rendered pod holds no credential but presigned grants: a GET for the one input object and POST
  policies limited to each output folder, all expiring within S3's 7 days (inspected with the real
  presigner; the S3 secret key and the AMQP password appear nowhere).
- Presigned URLs and signatures are never logged: a whole dispatch and stage (real RabbitMQ with a user
  of its own, the built MinIO with a user of its own, the emulator's kubelet running the pod's
  containers as processes) with structlog captured, the stdlib loggers captured, this process's
  stdout/stderr captured and the pod's logs read.
- Containers run without privilege: the stagers non-root with no capabilities, no container may
  escalate, the pod has no service-account token.
- /healthz, /readyz and /metrics of the dispatcher and the watcher expose no secret of their settings.
"""

from __future__ import annotations

import base64
import io
import json
import logging
import subprocess
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import aio_pika  # noqa: TID251 - the test plays MinIO
import aiohttp
import pytest
import structlog
from kubernetes_asyncio import client  # noqa: TID251 - the test reads the pod's logs
from pydantic import SecretStr

from dispatcher.adapters.s3.storage import Storage
from dispatcher.domain import constants as c
from dispatcher.domain.events import build_message
from dispatcher.domain.ingress import plan_ingress
from dispatcher.fdl import load_services_text
from dispatcher.fdl.catalog import Catalog
from dispatcher.process.app import run_dispatcher
from dispatcher.process.job_creation import JobCreator
from dispatcher.rendering.context import RenderSettings
from dispatcher.rendering.render import JobRenderer
from dispatcher.runtime.settings import MAX_PRESIGN_SECONDS, Settings, StorageSettings
from job_templates.stager import contract
from tests.backends import free_port
from tests.backends.kubernetes import api_client_for
from tests.backends.minio_server import with_credentials
from tests.backends.rabbit_node import CTL
from tests.backends.rabbitmq import AmqpNames
from tests.integration.stack import amqp_settings, started, until
from tests.integration.test_dispatcher import jobs
from watcher.app import run_watcher

pytestmark = pytest.mark.reliability

ACCESS_KEY = "AKIARELIABILITYTEST1"
S3_SECRET = "s3-secret-Zq8vVb3nL0pReliability"
AMQP_USER = "bucketrun-sec"
AMQP_PASSWORD = "amqp-pass-Kx7wQm2Reliability"
SIGNATURE_MARKERS = ("X-Amz-Signature", "X-Amz-Credential", "x-amz-signature", "x-amz-credential")

FDL = """
functions:
  oscar:
  - c:
      name: secure
      image: busybox:1.36
      script: |
        tr a-z A-Z < "$INPUT_FILE_PATH" > "$TMP_OUTPUT_DIR/out.txt"
        env | sort
      input: [{storage_provider: minio, path: INPUTS/in}]
      output:
      - {storage_provider: minio, path: OUTPUTS/results}
      - {storage_provider: minio, path: OUTPUTS/thumbs, suffix: [.png]}
      bucketrun: {timeout: 600}
"""


def strings(value: Any, path: str = "") -> list[tuple[str, str]]:
    """Every string leaf (and dict key) of a document, with where it is."""
    if isinstance(value, dict):
        found = [(f"{path}.{k}", k) for k in value]
        for name, item in value.items():
            found += strings(item, f"{path}.{name}")
        return found
    if isinstance(value, list):
        return [leaf for index, item in enumerate(value) for leaf in strings(item, f"{path}[{index}]")]
    return [(path, value)] if isinstance(value, str) else []


def containers(job: dict[str, Any]) -> list[dict[str, Any]]:
    spec = job["spec"]["template"]["spec"]
    return [*spec.get("initContainers", []), *spec["containers"]]


def env_of(job: dict[str, Any], name: str) -> dict[str, str]:
    (container,) = [x for x in containers(job) if x["name"] == name]
    return {e["name"]: e.get("value", "") for e in container.get("env", [])}


def assert_holds_only_scoped_grants(job: dict[str, Any], *, inputs: str, key: str, outputs: str) -> None:
    """The job's only credentials are expiring presigned grants scoped to the object and output folders."""
    text = json.dumps(job)
    for secret in (S3_SECRET, AMQP_PASSWORD, quote(AMQP_PASSWORD)):
        assert secret not in text
    # Grants live in the stager containers only: the user's script never sees one.
    for where, value in strings(job):
        if any(marker in value for marker in SIGNATURE_MARKERS):
            assert ".initContainers[0].env" in where or ".containers[1].env" in where, where
    run = json.dumps([x for x in containers(job) if x["name"] == contract.CONTAINER_RUN])
    assert not any(marker in run for marker in SIGNATURE_MARKERS)
    assert ACCESS_KEY not in run

    url = urlsplit(env_of(job, "stage-in")["BUCKETRUN_INPUT_URL"])
    query = parse_qs(url.query)
    assert url.path == f"/{inputs}/{quote(key, safe='/')}"  # exactly the object that triggered the Job
    assert 0 < int(query["X-Amz-Expires"][0]) <= MAX_PRESIGN_SECONDS
    assert query["X-Amz-Credential"][0].startswith(f"{ACCESS_KEY}/")  # the key *id*, in the signed scope
    assert set(query) == {
        "X-Amz-Algorithm",
        "X-Amz-Credential",
        "X-Amz-Date",
        "X-Amz-Expires",
        "X-Amz-SignedHeaders",
        "X-Amz-Signature",
    }
    expires = datetime.fromisoformat(env_of(job, "stage-out")["BUCKETRUN_GRANTS_EXPIRE"])
    assert expires <= datetime.now(UTC) + timedelta(seconds=MAX_PRESIGN_SECONDS)

    # One PUT, of exactly this Job's outputs manifest in its record folder (never under an input path).
    manifest = urlsplit(env_of(job, "stage-out")["BUCKETRUN_OUTPUTS_MANIFEST_URL"])
    service, name = job["metadata"]["labels"][c.LABEL_SERVICE], job["metadata"]["name"]
    records_bucket, _, folder = manifest.path.lstrip("/").partition("/")
    assert folder == f"records/{service}/{name}/outputs.json"
    assert records_bucket not in (inputs, outputs)
    assert set(parse_qs(manifest.query)) == set(query)
    assert int(parse_qs(manifest.query)["X-Amz-Expires"][0]) == int(query["X-Amz-Expires"][0])

    grants = json.loads(env_of(job, "stage-out")["BUCKETRUN_OUTPUTS"])
    assert [(g["bucket"], g["folder"]) for g in grants] == [(outputs, "results"), (outputs, "thumbs")]
    for grant in grants:
        assert set(grant["fields"]) == {
            "policy",
            "x-amz-algorithm",
            "x-amz-credential",
            "x-amz-date",
            "x-amz-signature",
        }
        policy = json.loads(base64.b64decode(grant["fields"]["policy"]))
        assert datetime.fromisoformat(policy["expiration"].replace("Z", "+00:00")) <= expires + timedelta(
            seconds=1
        )
        conditions = policy["conditions"]
        assert ["eq", "$bucket", grant["bucket"]] in conditions
        assert ["starts-with", "$key", f"{grant['folder']}/"] in conditions
        assert any(cond[0] == "content-length-range" for cond in conditions if isinstance(cond, list))


def render_with_the_real_presigner(endpoint: str, inputs: str, outputs: str, key: str) -> dict[str, Any]:
    text = FDL.replace("INPUTS", inputs).replace("OUTPUTS", outputs)
    (service,) = load_services_text(text, source="secure.yaml", base_dir=None).services
    catalog = Catalog.of((service,))
    storage_settings = StorageSettings(endpoint=endpoint, access_key=ACCESS_KEY, secret_key=S3_SECRET)
    creator = JobCreator(
        lambda: catalog.services,
        JobRenderer(RenderSettings(namespace="jobs")),
        Storage(storage_settings),
        None,  # type: ignore[arg-type] - prepare() never touches the executor
        storage_settings.grant_lifetime,
    )
    body = build_message(event_name="s3:ObjectCreated:Put", bucket=inputs, key=key, size=3, sequencer="1")
    (task,) = plan_ingress(body, catalog.router).tasks
    return creator.prepare(task.service, task.body)[3]


@pytest.mark.integration
def test_a_rendered_pod_holds_only_expiring_grants_scoped_to_its_object_and_outputs(s3_endpoint):
    key = "in/sub dir/photo+1 ü.txt"
    job = render_with_the_real_presigner(s3_endpoint.endpoint, "src-bucket", "dst-bucket", key)
    assert_holds_only_scoped_grants(job, inputs="src-bucket", key=key, outputs="dst-bucket")


def test_containers_run_without_privilege_and_the_pod_has_no_token():
    job = render_with_the_real_presigner("s3.example:9000", "src-bucket", "dst-bucket", "in/x.txt")
    pod = job["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    assert pod["enableServiceLinks"] is False
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    for field in ("hostNetwork", "hostPID", "hostIPC", "serviceAccountName"):
        assert field not in pod
    assert [sorted(v) for v in pod["volumes"]] == [["emptyDir", "name"], ["configMap", "name"]]
    for container in containers(job):
        context = container["securityContext"]
        assert context["allowPrivilegeEscalation"] is False, container["name"]
        assert not context.get("privileged"), container["name"]
        assert not context.get("capabilities", {}).get("add"), container["name"]
        if container["name"] == contract.CONTAINER_RUN:
            # Documented exception (job_templates/README.md): the user's image may need root, as most
            # OSCAR images do; it still cannot escalate and holds no grant (checked above).
            continue
        assert context["runAsNonRoot"] is True, container["name"]
        assert context["runAsUser"] != 0
        assert context["capabilities"]["drop"] == ["ALL"]
        assert context["readOnlyRootFilesystem"] is True


# -- a whole dispatch and stage, with every log captured -----------------------------------------------------


def add_broker_user(node) -> None:
    """A user of the private node whose password is recognisable (the shared broker has only guest)."""
    for command in (
        ["add_user", AMQP_USER, AMQP_PASSWORD],
        ["set_permissions", "-p", "/", AMQP_USER, ".*", ".*", ".*"],
    ):
        subprocess.run([str(CTL), *command], env=node._env(), check=True, capture_output=True, timeout=60)


async def http_get(port: int, path: str) -> tuple[int, str]:
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session,
        session.get(f"http://127.0.0.1:{port}{path}") as response,
    ):
        return response.status, await response.text()


async def pod_logs(kube) -> str:
    text = []
    async with await api_client_for(kube.kubeconfig) as api:
        core = client.CoreV1Api(api)
        pods = await core.list_namespaced_pod(kube.namespace)
        for pod in pods.items:
            names = [x.name for x in (pod.spec.init_containers or [])] + [x.name for x in pod.spec.containers]
            for name in names:
                text.append(
                    await core.read_namespaced_pod_log(pod.metadata.name, kube.namespace, container=name)
                )
    return "\n".join(text)


@pytest.mark.integration
@pytest.mark.slow
async def test_dispatch_and_stage_log_no_grant_and_endpoints_expose_no_secret(  # noqa: PLR0917
    private_rabbitmq, s3, kube, tmp_path, caplog, capfd
):
    add_broker_user(private_rabbitmq)
    url = f"amqp://{AMQP_USER}:{AMQP_PASSWORD}@127.0.0.1:{private_rabbitmq.amqp_port}/"
    names = AmqpNames(url)
    with_credentials(s3.endpoint, ACCESS_KEY, S3_SECRET)  # a MinIO user with these recognisable keys
    inputs, outputs, records = s3.bucket("in"), s3.bucket("out"), s3.bucket("records")
    key = "in/report.txt"
    s3.endpoint.client().put_object(inputs, key, io.BytesIO(b"hello"), 5)
    fdl = tmp_path / "services.yaml"
    fdl.write_text(FDL.replace("INPUTS", inputs).replace("OUTPUTS", outputs))
    kube.require_control().set_kubelet("run")
    port = free_port()
    settings = Settings.load(
        amqp=amqp_settings(names, services=("secure",), retry_tiers=(1,)),
        storage={
            "endpoint": s3.endpoint.endpoint,
            "access_key": ACCESS_KEY,
            "secret_key": S3_SECRET,
            "region": s3.endpoint.region,
            "records_bucket": records,
        },
        cluster={"executor": "kubernetes", "namespace": kube.namespace, "kubeconfig": kube.kubeconfig},
        services={"paths": (fdl,)},
        metrics={"host": "127.0.0.1", "port": port},
    )
    assert isinstance(settings.storage.secret_key, SecretStr)
    watcher_port = free_port()
    watcher_settings = settings.model_copy(
        update={"metrics": settings.metrics.model_copy(update={"port": watcher_port})}
    )
    caplog.set_level(logging.DEBUG)
    with structlog.testing.capture_logs() as logged:
        async with (
            started(partial(run_dispatcher, settings), "dispatcher"),
            started(partial(run_watcher, watcher_settings), "watcher"),
        ):
            answers = {path: await http_get(port, path) for path in ("/healthz", "/readyz", "/metrics")}
            connection = await aio_pika.connect(url)
            async with connection:
                channel = await connection.channel(publisher_confirms=True)
                exchange = await channel.get_exchange(settings.amqp.exchange)
                body = build_message(
                    event_name="s3:ObjectCreated:Put",
                    bucket=inputs,
                    key=key,
                    size=5,
                    etag="e" * 32,
                    sequencer="1",
                )
                await exchange.publish(
                    aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT), ""
                )

            async def uploaded() -> bool:
                found = s3.endpoint.client().list_objects(outputs, "results/", recursive=True)
                return any(o.object_name == "results/out.txt" for o in found)

            await until(uploaded, "stage-out's upload of the script's output", within=90)
            (job,) = await jobs(kube)
            logs = await pod_logs(kube)
            answers |= {f"{path} (running)": await http_get(port, path) for path in ("/readyz", "/metrics")}

            async def recorded() -> bool:
                found = s3.endpoint.client().list_objects(records, "records/", recursive=True)
                return any((o.object_name or "").endswith("/status.json") for o in found)

            await until(recorded, "the watcher's job record", within=60)

            async def counted() -> bool:  # status.json lands before the watcher's counters move
                return "bucketrun_records_written_total 1.0" in str(await http_get(watcher_port, "/metrics"))

            await until(counted, "the watcher's metrics counting the record", within=30)
            answers |= {
                f"watcher {path}": await http_get(watcher_port, path)
                for path in ("/healthz", "/readyz", "/metrics")
            }

    assert_holds_only_scoped_grants(job, inputs=inputs, key=key, outputs=outputs)
    assert answers["/healthz"][0] == 200
    assert answers["watcher /readyz"][0] == 200
    assert "bucketrun_records_written_total 1.0" in str(answers["watcher /metrics"])
    assert "uploaded 'out.txt'" in logs, logs
    out, err = capfd.readouterr()
    everything = {
        "structlog events": "\n".join(repr(event) for event in logged),
        # INFO and up: bucketrun configures no stdlib handler, so Python prints WARNING and up at most.
        # (kubernetes_asyncio's rest client logs whole response bodies, grants included, at DEBUG:
        # never route stdlib DEBUG records to a log sink.)
        "stdlib log records": "\n".join(
            f"{r.name} {r.getMessage()}" for r in caplog.records if r.levelno >= logging.INFO
        ),
        "stdout and stderr": out + err,
        "pod logs": logs,
        "HTTP endpoints": repr(answers),
    }
    grants = [
        env_of(job, "stage-in")["BUCKETRUN_INPUT_URL"],
        *(g["fields"]["x-amz-signature"] for g in json.loads(env_of(job, "stage-out")["BUCKETRUN_OUTPUTS"])),
        *(g["fields"]["policy"] for g in json.loads(env_of(job, "stage-out")["BUCKETRUN_OUTPUTS"])),
    ]
    assert logged, "structlog captured nothing: the capture is not wired"
    for where, text in everything.items():
        for secret in (S3_SECRET, AMQP_PASSWORD, *SIGNATURE_MARKERS, *grants):
            assert secret not in text, f"{secret[:24]!r}... appears in the {where}"
