"""``bucketrun demo --once`` as a user runs it, on each of its S3 servers and executors, against the
session's RabbitMQ.

The environment gives the demo unique AMQP names, so it shares the broker without meeting other tests;
its files go to a temporary working directory. The paths:

- the default where ``make servers`` has built everything: the built MinIO (the service applied to it,
  fed by its own bucket notifications, no poller) and the built Kubernetes control plane with a node
  agent, the Jobs and pods read back from that cluster's etcd after the demo stopped it;
- ``--kube local``: the same MinIO, the Jobs on the local executor;
- ``--s3 moto``: a moto server and the bucket poller, the local executor (what a machine without the
  build gets);
- ``BUCKETRUN_STORAGE__ENDPOINT`` set: the session's S3 server, reused, with the poller;
- ``--kube cluster`` where nothing is built: an error naming ``make servers``, before anything starts.

Every demo run must leave no process behind: the demo's servers run in sessions of their own, so the
suite's own leak check (descendants of pytest) cannot see them; ``_assert_nothing_left`` looks for any
process whose command line names the demo's directory.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from bucketrun.cli.common import EXIT_INVALID
from bucketrun.devtools.control_plane import ServersNotBuiltError, find_binaries, start_control_plane
from bucketrun.devtools.demo import DEMO_ROOT, SAMPLES
from bucketrun.devtools.minio_server import NOTIFY_ARN, AmqpTarget, servers_dir, start_minio
from bucketrun.devtools.stack import NAMESPACE
from dispatcher.domain.constants import ANNOTATION_KEY
from dispatcher.domain.jobs import finished_condition, is_recorded
from tests.backends.leaks import descendants
from tests.backends.minio_server import endpoint_of, require_built
from tests.backends.rabbitmq import AmqpNames
from tests.backends.s3 import S3Endpoint, S3Scope

pytestmark = pytest.mark.integration

RUN_TIMEOUT = 110.0


def demo_environment(names: AmqpNames, service: str, s3: S3Endpoint | None = None) -> dict[str, str]:
    """The demo's environment: this test's unique AMQP names (deleted after it), a system-chosen metrics
    port, and *s3* as ``BUCKETRUN_STORAGE__*`` when given (else the demo starts its own S3 server)."""
    for role in ("ingress", "dlq", "retry.1s", "retry.5s", "retry.30s", "retry.120s", f"svc.{service}"):
        names.queue(role)
    environment = {k: v for k, v in os.environ.items() if not k.startswith("BUCKETRUN_")}
    environment.update(
        {
            "BUCKETRUN_AMQP__URL": names.url,
            "BUCKETRUN_AMQP__EXCHANGE": names.exchange("events"),
            "BUCKETRUN_AMQP__INGRESS_QUEUE": f"{names.prefix}.ingress",
            "BUCKETRUN_AMQP__DEAD_LETTER_EXCHANGE": names.exchange("dlx"),
            "BUCKETRUN_AMQP__DEAD_LETTER_QUEUE": f"{names.prefix}.dlq",
            "BUCKETRUN_AMQP__RETRY_EXCHANGE": names.exchange("retry"),
            "BUCKETRUN_AMQP__RETRY_QUEUE_PREFIX": f"{names.prefix}.retry",
            "BUCKETRUN_AMQP__SERVICE_QUEUE_PREFIX": f"{names.prefix}.svc",
            "BUCKETRUN_WATCHER__RESULTS_EXCHANGE": names.exchange("results"),
            "BUCKETRUN_METRICS__PORT": "0",
        }
    )
    if s3 is not None:
        environment.update(
            {
                "BUCKETRUN_STORAGE__ENDPOINT": s3.endpoint,
                "BUCKETRUN_STORAGE__ACCESS_KEY": s3.access_key,
                "BUCKETRUN_STORAGE__SECRET_KEY": s3.secret_key,
                "BUCKETRUN_STORAGE__REGION": s3.region,
            }
        )
    return environment


async def _demo_once(cwd: Path, environment: dict[str, str], *args: str, code: int = 0) -> str:
    """Run ``bucketrun demo --once`` in *cwd*; its output, once it exited with *code* and left no
    process behind."""
    demo = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bucketrun.cli.main",
        "demo",
        "--once",
        "--timeout",
        "90",
        *args,
        cwd=cwd,
        env=environment,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        out, _ = await asyncio.wait_for(demo.communicate(), RUN_TIMEOUT)
    finally:
        if demo.returncode is None:
            demo.kill()
            await demo.wait()
    text = out.decode()
    assert demo.returncode == code, text
    _assert_nothing_left(cwd)
    return text


def _assert_nothing_left(directory: Path) -> None:
    """No process (but this one's children, which pytest's own check covers) names *directory*."""
    ours = set(descendants()) | {os.getpid()}
    left = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) in ours:
            continue
        try:
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if str(directory) in command:
            left.append(f"{entry.name}: {command[:200]}")
    assert not left, left


def _require_control_plane() -> None:
    """Skip without the built control plane, or fail under CI (which builds it)."""
    try:
        find_binaries()
    except ServersNotBuiltError as error:
        if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
            pytest.fail(f"{error}; CI builds it before the tests, so this is a broken CI set-up")
        pytest.skip(str(error))


def _phases(text: str) -> dict[str, list[str]]:
    """Each sample key's phase lines, in order: ``job NAME KEY PHASE``."""
    found: dict[str, list[str]] = {}
    for key, phase in re.findall(r"^  job \S+ +(\S+) +(queued|running|done|failed)$", text, re.MULTILINE):
        found.setdefault(key, []).append(phase)
    return found


def _assert_outputs(client, name: str, text: str) -> None:
    """Every sample's two outputs hold what the sample service writes, and the demo listed them."""
    for key, body in SAMPLES.items():
        file = key.rsplit("/", 1)[-1]
        for suffix, expected in (("", body.upper()), (".words", b"%d\n" % len(body.split()))):
            response = client.get_object(f"{name}-out", f"results/{file}{suffix}")
            try:
                assert response.read() == expected, (file, suffix)
            finally:
                response.close()
                response.release_conn()
            assert f"{name}-out/results/{file}{suffix}" in text


def _recorded(client, name: str) -> int:
    records = [o.object_name for o in client.list_objects(f"{name}-records", recursive=True)]
    return sum(1 for key in records if (key or "").endswith("/status.json"))


async def test_demo_once_runs_its_jobs_on_the_built_control_plane_by_default(
    amqp_names: AmqpNames, tmp_path: Path
) -> None:
    require_built("minio")
    _require_control_plane()
    name = "bucketrun-demo"
    text = await _demo_once(tmp_path, demo_environment(amqp_names, f"{name}-upper"))
    demo_dir = tmp_path / ".bucketrun-demo"
    kubeconfig = demo_dir / "kube" / "kubeconfigs" / "admin.kubeconfig"
    kubectl = servers_dir() / "bin" / "kubectl"
    assert f"  its Jobs: KUBECONFIG={kubeconfig} {kubectl} get jobs -n {NAMESPACE}\n" in text
    assert f"  its pods: KUBECONFIG={kubeconfig} {kubectl} get pods -n {NAMESPACE}\n" in text
    assert text.index("MinIO console: http://127.0.0.1:") < text.index("its Jobs: KUBECONFIG=")
    assert (
        f"(Jobs in Kubernetes namespace {NAMESPACE}) running, fed by bucket notifications from MinIO" in text
    )
    assert "local executor" not in text
    assert not (demo_dir / "state").exists()
    phases = _phases(text)
    assert sorted(phases) == sorted(SAMPLES), text
    for key, seen in phases.items():
        assert seen[-1] == "done", (key, text)  # read from the API: a Job's last line is its end
    assert "stopped Kubernetes" in text
    assert "stopped MinIO" in text
    # Its OSCAR API served oscar-cli's login while the demo ran, and logged no error.
    api = re.search(r"^OSCAR API: (http://127\.0\.0\.1:\d+)  user demo  password (\S+)", text, re.MULTILINE)
    assert api is not None, text
    assert f"oscar-cli cluster add demo {api.group(1)} demo {api.group(2)} --disable-ssl" in text
    assert "stopped the OSCAR API" in text
    api_log = (demo_dir / "api.log").read_text()
    assert "listening on" in api_log
    assert "Traceback" not in api_log, api_log[-3000:]

    # The demo stopped its cluster; its etcd, served again, holds the Jobs: each finished, recorded by
    # the watcher, for one sample, and its pod ran on the node agent.
    plane = await asyncio.to_thread(start_control_plane, demo_dir / "kube", fsync=False)
    try:
        jobs = (await asyncio.to_thread(plane.request, "GET", f"/apis/batch/v1/namespaces/{NAMESPACE}/jobs"))[
            1
        ]
        pods = (await asyncio.to_thread(plane.request, "GET", f"/api/v1/namespaces/{NAMESPACE}/pods"))[1]
    finally:
        await asyncio.to_thread(plane.stop)
    items = jobs["items"]
    assert sorted(job["metadata"]["annotations"][ANNOTATION_KEY] for job in items) == sorted(SAMPLES)
    assert all(finished_condition(job) == "Complete" and is_recorded(job) for job in items), items
    assert {pod["spec"]["nodeName"] for pod in pods["items"]} == {"bucketrun-node"}
    assert {pod["status"]["phase"] for pod in pods["items"]} == {"Succeeded"}


async def test_demo_once_with_kube_local_on_the_built_minio_is_fed_by_its_bucket_notifications(
    amqp_names: AmqpNames, tmp_path: Path
) -> None:
    binary = require_built("minio")
    name = "bucketrun-demo"  # the demo's MinIO is its own: the default names collide with nothing
    text = await _demo_once(tmp_path, demo_environment(amqp_names, f"{name}-upper"), "--kube", "local")
    assert "Jobs: the local executor (state files, no Kubernetes): as --kube local asks" in text
    assert "Kubernetes:" not in text
    assert "kubectl" not in text
    assert "(local executor) running" in text
    assert [phases[-1] for phases in _phases(text).values()] == ["done"] * len(SAMPLES), text
    assert "S3: started MinIO" in text
    assert f"user {DEMO_ROOT.user}  password {DEMO_ROOT.password}" in text
    assert "MinIO console: http://127.0.0.1:" in text
    assert f"drop files into {name}-in/in/" in text
    assert f"add bucketrun-{name}-upper-0 (events s3:ObjectCreated:*, prefix 'in/')" in text  # services apply
    assert "fed by bucket notifications from MinIO" in text
    assert "poller" not in text
    assert "stopped MinIO" in text
    demo_dir = tmp_path / ".bucketrun-demo"
    assert not (demo_dir / "poller.sqlite3").exists()

    # The demo stopped its MinIO; the same data directory, served again, holds the results and the rule.
    server = await asyncio.to_thread(
        start_minio,
        binary.path,
        demo_dir / "minio",
        DEMO_ROOT,
        amqp=AmqpTarget(amqp_names.url, amqp_names.exchange("reread")),
    )
    try:
        client = endpoint_of(server).client()
        _assert_outputs(client, name, text)
        assert _recorded(client, name) == len(SAMPLES)
        rules = client.get_bucket_notification(f"{name}-in").queue_config_list
        assert [(rule.queue, rule.config_id) for rule in rules] == [(NOTIFY_ARN, f"bucketrun-{name}-upper-0")]
    finally:
        await asyncio.to_thread(server.stop)


async def test_demo_once_with_s3_moto_uses_moto_and_the_poller(amqp_names: AmqpNames, tmp_path: Path) -> None:
    name = "bucketrun-demo"
    text = await _demo_once(tmp_path, demo_environment(amqp_names, f"{name}-upper"), "--s3", "moto")
    assert "S3: started a moto server" in text
    assert "fed by the bucket poller" in text
    assert "started MinIO" not in text
    assert "MinIO console" not in text
    assert "stopped the moto server" in text
    try:
        find_binaries()
    except ServersNotBuiltError:
        assert "no Kubernetes control plane is built here; `make servers` builds one" in text
    else:
        assert "--kube auto uses the built control plane with the built MinIO only" in text
    assert "kubectl" not in text
    for bucket, key in (
        (f"{name}-out", f"results/{k.rsplit('/', 1)[-1]}{ext}") for k in SAMPLES for ext in ("", ".words")
    ):
        assert f"{bucket}/{key}" in text
    jobs = tmp_path / ".bucketrun-demo" / "state" / "jobs"
    assert len([job for job in jobs.iterdir() if (job / "status.json").is_file()]) == len(SAMPLES)


async def test_demo_once_reuses_the_configured_s3_server(
    amqp_names: AmqpNames, s3: S3Scope, tmp_path: Path
) -> None:
    name = s3.prefix
    for role in ("in", "out", "records"):
        s3.bucket(role, create=False)  # created by the demo, removed by the fixture
    environment = demo_environment(amqp_names, f"{name}-upper", s3.endpoint)
    text = await _demo_once(tmp_path, environment, "--name", name)
    assert "S3: reusing" in text
    assert "moto" not in text  # it started no S3 server of its own
    assert "started MinIO" not in text

    client = s3.endpoint.client()
    _assert_outputs(client, name, text)
    assert (tmp_path / ".bucketrun-demo" / "services.yaml").is_file()
    assert _recorded(client, name) == len(SAMPLES)


async def test_demo_kube_cluster_without_the_build_says_make_servers_and_starts_nothing(
    tmp_path: Path,
) -> None:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("BUCKETRUN_")}
    environment["BUCKETRUN_SERVERS_DIR"] = str(tmp_path / "no-servers")
    demo = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "bucketrun.cli.main", "demo", "--once", "--kube", "cluster", "--s3", "moto"],
        cwd=tmp_path,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert demo.returncode == EXIT_INVALID, demo.stdout + demo.stderr
    error = demo.stdout + demo.stderr
    assert "--kube cluster:" in error
    assert str(tmp_path / "no-servers" / "bin") in error
    assert "make servers" in error
    assert not (tmp_path / ".bucketrun-demo").exists()  # nothing started, nothing written
