"""`bucketrun dispatcher` as a real process: SIGKILL and restart, broker restart, SIGTERM drain, readiness,
definition reload, and refusing bad settings or definitions at start.

Servers are real (RabbitMQ, an S3 server for presigning, the Kubernetes API emulator); the dispatcher is
the command a pod runs, configured by environment variables only. Counts come from the cluster (Jobs
listed) and from the emulator's request statistics (201 Created, 409 AlreadyExists per namespace), so
"exactly once" is checked where it matters: at the API.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aio_pika  # noqa: TID251 - the test plays MinIO and inspects queue depths
import pytest
from pydantic import SecretStr

from dispatcher.domain.constants import ANNOTATION_KEY, LABEL_SERVICE
from dispatcher.domain.events import parse_message
from dispatcher.domain.identity import job_name, object_version
from dispatcher.runtime.settings import Settings
from job_templates.stager.contract import CONTAINER_RUN
from tests.backends.kubernetes import KubeTestEnv
from tests.backends.rabbit_node import PrivateRabbitNode
from tests.backends.rabbitmq import AmqpNames
from tests.backends.s3 import S3Endpoint
from tests.integration.dispatcher_process import (
    COMMAND,
    REPO_ROOT,
    DispatcherLauncher,
    DispatcherProcess,
    child_environment,
    settings_environment,
    with_settings,
)
from tests.integration.stack import until
from tests.integration.test_dispatcher import Running, event, jobs, settings_for

pytestmark = [pytest.mark.integration]

RESOURCES = {"alpha": ("250m", "64Mi"), "beta": ("500m", "128Mi"), "gamma": ("1", "256Mi")}
"""Each service's cpu and memory (requests = limits); every service watches the bucket of its name."""


def service_fdl(*services: str, broken: str | None = None, suspended: bool = False) -> str:
    """OSCAR FDL of *services* (from RESOURCES), *broken* with an invalid memory quantity; *suspended*
    Jobs (a Kueue queue name: created suspended, so a Job controller makes no pod for them)."""
    entries = []
    for name in services:
        cpu, memory = RESOURCES[name]
        entries.append(
            f"  - c:\n"
            f"      name: {name}\n"
            f"      image: busybox:1.36\n"
            f"      cpu: '{cpu}'\n"
            f"      memory: {'a lot' if name == broken else memory}\n"
            f'      script: cat "$INPUT_FILE_PATH"\n'
            f"      input: [{{storage_provider: minio, path: {name}/in}}]\n"
            + ("      bucketrun: {kueue_queue: held}\n" if suspended else "")
        )
    return "functions:\n  oscar:\n" + "".join(entries)


def write_atomically(path: Path, text: str) -> None:
    """Replace *path* in one step, as a ConfigMap volume update does (a reader never sees half a file)."""
    staging = path.with_name(f".{path.name}.new")
    staging.write_text(text)
    staging.replace(path)


@dataclass
class Stage:
    """One test's servers, names and dispatcher launcher."""

    names: AmqpNames
    kube: KubeTestEnv
    s3: S3Endpoint
    fdl: Path
    launcher: DispatcherLauncher

    def __post_init__(self) -> None:
        for service in RESOURCES:
            self.names.queue(f"svc.{service}")  # declared by the dispatcher: one queue per service

    def settings(self, **groups: dict[str, Any]) -> Settings:
        """The in-process tests' settings (`settings_for`) with *groups* changes, e.g. ``amqp={...}``."""
        return with_settings(settings_for(self.names, self.s3, self.kube, self.fdl), **groups)

    async def publish(self, settings: Settings, bodies: Sequence[bytes]) -> None:
        """Publish *bodies* to the MinIO exchange, as MinIO does (persistent, confirmed)."""
        await Running(settings, self.names, self.kube).publish(list(bodies))

    def api_creates(self, code: int) -> int:
        """Job creates in this test's namespace the API answered with *code* (201 or 409)."""
        control = self.kube.require_control()
        return control.request_count(verb="create", resource="jobs", namespace=self.kube.namespace, code=code)

    async def depths(self, settings: Settings) -> dict[str, int]:
        """Ready messages in every queue the dispatcher declares (work, retry tiers, dead letters)."""
        amqp = settings.amqp
        queues = [amqp.ingress_queue, amqp.dead_letter_queue]
        queues += [f"{amqp.service_queue_prefix}.{service}" for service in RESOURCES]
        queues += [f"{amqp.retry_queue_prefix}.{seconds}s" for seconds in amqp.retry_tiers]
        found: dict[str, int] = {}
        # A fresh connection each time: a robust one caches declarations and reports stale counts.
        connection = await aio_pika.connect(amqp.url.get_secret_value())
        async with connection:
            for queue in queues:
                channel = await connection.channel()  # a refused passive declare closes its channel
                try:
                    declared = await channel.declare_queue(queue, passive=True)
                except aio_pika.exceptions.ChannelNotFoundEntity:
                    found[queue] = 0  # not declared (yet): it holds nothing
                    continue
                found[queue] = declared.declaration_result.message_count or 0
                await channel.close()
        return found

    async def dead_letters(self, settings: Settings) -> int:
        """Messages waiting in the dead-letter queue."""
        return (await self.depths(settings))[settings.amqp.dead_letter_queue]

    async def drained(self, settings: Settings) -> bool:
        """True when no queue of the dispatcher holds a ready message."""
        return not any((await self.depths(settings)).values())


@pytest.fixture
def launcher(tmp_path: Path) -> Iterator[DispatcherLauncher]:
    """Starts dispatcher processes; every one is killed (process group) and its log printed at the end."""
    started = DispatcherLauncher(tmp_path)
    try:
        yield started
    finally:
        started.close()


@pytest.fixture
async def stage(
    amqp_names: AmqpNames,
    s3_endpoint: S3Endpoint,
    kube: KubeTestEnv,
    tmp_path: Path,
    launcher: DispatcherLauncher,
) -> Stage:
    """The three services on the shared broker; pods stay Pending (these tests count Jobs, not runs)."""
    fdl = tmp_path / "services.yaml"
    fdl.write_text(service_fdl(*RESOURCES))
    kube.require_control().set_kubelet("off")
    return Stage(amqp_names, kube, s3_endpoint, fdl, launcher)


@pytest.fixture
async def private_stage(private_rabbitmq: PrivateRabbitNode, stage: Stage) -> tuple[Stage, PrivateRabbitNode]:
    """`stage` on a broker node of the test's own (its queues vanish with the node), and the node."""
    names = AmqpNames(private_rabbitmq.url)
    return Stage(names, stage.kube, stage.s3, stage.fdl, stage.launcher), private_rabbitmq


def events_for(count: int, *, prefix: str = "in/object") -> list[bytes]:
    """*count* MinIO upload events spread round-robin over the services (each routes to one)."""
    services = list(RESOURCES)
    return [event(f"{prefix}-{index}.txt", bucket=services[index % len(services)]) for index in range(count)]


def expected_jobs(bodies: Sequence[bytes]) -> dict[str, tuple[str, str]]:
    """Job name -> (service, key) for the events in *bodies* (the bucket names the service)."""
    expected = {}
    for body in bodies:
        (parsed,) = parse_message(body)
        name = job_name(parsed.bucket, parsed.bucket, parsed.key, object_version(parsed))
        expected[name] = (parsed.bucket, parsed.key)
    return expected


def assert_jobs_match(found: list[dict[str, Any]], expected: dict[str, tuple[str, str]]) -> None:
    """Exactly the expected Jobs, each with its service label, key annotation and resources."""
    by_name = {job["metadata"]["name"]: job for job in found}
    assert len(found) == len(by_name) == len(expected), (len(found), len(by_name), len(expected))
    assert set(by_name) == set(expected), sorted(set(by_name) ^ set(expected))[:10]
    for name, (service, key) in expected.items():
        metadata = by_name[name]["metadata"]
        assert metadata["labels"][LABEL_SERVICE] == service, name
        assert metadata["annotations"][ANNOTATION_KEY] == key, name
        containers = by_name[name]["spec"]["template"]["spec"]["containers"]
        (run,) = [container for container in containers if container["name"] == CONTAINER_RUN]
        cpu, memory = RESOURCES[service]
        assert run["resources"]["limits"] == {"cpu": cpu, "memory": memory}, name
        assert run["resources"]["requests"] == {"cpu": cpu, "memory": memory}, name


async def test_the_child_environment_loads_back_to_the_same_settings(
    stage: Stage, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = stage.settings(amqp={"prefetch": 8}, cluster={"api_write_rate": 40.0})
    for name in [name for name in os.environ if name.startswith("BUCKETRUN_")]:
        monkeypatch.delenv(name)
    for name, value in child_environment(settings).items():
        if name.startswith("BUCKETRUN_"):
            monkeypatch.setenv(name, value)
    assert Settings.load() == settings
    assert "BUCKETRUN_CLUSTER__KUBECONFIG" in settings_environment(settings)


@pytest.mark.slow
async def test_1000_events_twice_and_a_sigkill_mid_stream_give_exactly_1000_jobs(stage: Stage) -> None:
    # Rate-limited so the SIGKILL lands mid-stream on a fast machine too (1,000 creates take >= 2.5 s).
    settings = stage.settings(cluster={"api_write_rate": 400.0, "api_write_burst": 20})
    # Suspended Jobs: this test counts creates, and a real Job controller would otherwise make (and a
    # scheduler bind) 1,000 pods on the same two cores meanwhile.
    write_atomically(stage.fdl, service_fdl(*RESOURCES, suspended=True))
    bodies = events_for(1000)
    expected = expected_jobs(bodies)
    assert len(expected) == 1000
    first = await stage.launcher.start(settings)
    await stage.publish(settings, bodies)
    await until(lambda: _at_least(stage.api_creates, 201, 300), "300 Jobs before the SIGKILL")
    first.kill()
    assert stage.api_creates(201) < 1000, "the dispatcher finished before the SIGKILL: nothing was mid-stream"

    await stage.publish(settings, bodies)  # MinIO replaying its queue_dir: every event a second time
    await stage.launcher.start(settings)

    async def finished() -> bool:
        # Every one of the 2,000 deliveries reaches the API once at least: 1,000 of them create a Job, so
        # the others (plus redeliveries of what the SIGKILL left unacked) get 409s. The Jobs are counted
        # in the cluster: a create the SIGKILL cut off may still have created its Job, unseen by the
        # client (a fault proxy counts it 499, the client having left before the answer).
        return (
            len(await jobs(stage.kube)) >= 1000
            and stage.api_creates(409) >= 1000
            and await stage.drained(settings)
        )

    await until(finished, "1,000 Jobs, 1,000 duplicate creates refused and every queue drained", within=90)
    assert stage.api_creates(201) <= 1000
    assert_jobs_match(await jobs(stage.kube), expected)
    assert await stage.dead_letters(settings) == 0


@pytest.mark.slow
async def test_the_dispatcher_reconnects_by_itself_after_a_broker_restart_mid_stream(
    private_stage: tuple[Stage, PrivateRabbitNode],
) -> None:
    stage, node = private_stage
    # Small prefetch and write rate: most events still wait in RabbitMQ when the broker goes down.
    settings = stage.settings(amqp={"prefetch": 8}, cluster={"api_write_rate": 60.0, "api_write_burst": 1})
    before, after = events_for(200, prefix="in/before"), events_for(100, prefix="in/after")
    process = await stage.launcher.start(settings)
    await stage.publish(settings, before)
    await until(lambda: _at_least(stage.api_creates, 201, 50), "50 Jobs before the broker restart")
    assert stage.api_creates(201) < len(before), "all Jobs existed before the restart: nothing mid-stream"
    await asyncio.to_thread(node.restart)
    await stage.publish(settings, after)

    async def all_created() -> bool:
        return stage.api_creates(201) >= 300 and await stage.drained(settings)

    await until(all_created, "all 300 Jobs after the broker restart", within=90)
    assert process.returncode is None, "the dispatcher exited instead of reconnecting"
    assert await process.status("/readyz") == 200
    assert stage.api_creates(201) == 300
    assert_jobs_match(await jobs(stage.kube), expected_jobs(before + after))
    assert await stage.dead_letters(settings) == 0


async def test_sigterm_finishes_in_flight_creates_and_exits_0_within_the_drain_bound(stage: Stage) -> None:
    # 10 API writes a second with 0.3 s latency each: when the first Job exists, most are still in flight.
    settings = stage.settings(cluster={"api_write_rate": 10.0, "api_write_burst": 1})
    drain_timeout = settings.dispatch.drain_timeout
    bodies = events_for(20)
    first = await stage.launcher.start(settings)
    stage.kube.require_control().set_faults(latency=0.3)
    await stage.publish(settings, bodies)
    await until(lambda: _at_least(stage.api_creates, 201, 1), "the first Job")
    first.terminate()
    assert stage.api_creates(201) < len(bodies), "every Job existed before SIGTERM: nothing was in flight"

    code, waited = await first.wait_exit(within=drain_timeout + 15)
    assert code == 0, f"exit code {code}"
    assert waited <= drain_timeout + 5, f"took {waited:.1f}s to exit; drain_timeout is {drain_timeout}s"
    assert [record.get("clean") for record in first.logged("dispatcher drained")] == [True]

    stage.kube.require_control().clear_faults()
    await stage.launcher.start(settings)
    await until(lambda: stage.drained(settings), "every queue drained by the second dispatcher")
    assert_jobs_match(await jobs(stage.kube), expected_jobs(bodies))
    assert stage.api_creates(201) == len(bodies)
    # A clean drain settled every message whose Job it created: nothing came back to meet a 409.
    assert stage.api_creates(409) == 0
    assert await stage.dead_letters(settings) == 0


@pytest.mark.slow
async def test_readyz_is_503_until_the_broker_is_reachable(
    private_stage: tuple[Stage, PrivateRabbitNode],
) -> None:
    stage, node = private_stage
    settings = stage.settings()
    await asyncio.to_thread(node.stop)
    process = await stage.launcher.start(settings, wait_ready=False)
    await process.wait_status("/healthz", 200)
    await until(lambda: _logged(process, "broker not reachable; retrying"), "a failed broker connection")
    assert await process.status("/readyz") == 503
    assert await process.status("/healthz") == 200

    await asyncio.to_thread(node.start)
    await process.wait_status("/readyz", 200, within=60)
    # Ready means consuming: an event published now becomes its Job.
    bodies = events_for(1)
    await stage.publish(settings, bodies)
    await until(lambda: _at_least(stage.api_creates, 201, 1), "the Job of an event published once ready")
    assert_jobs_match(await jobs(stage.kube), expected_jobs(bodies))


async def test_changed_definitions_are_reloaded_and_an_invalid_version_is_refused(stage: Stage) -> None:
    write_atomically(stage.fdl, service_fdl("alpha"))
    settings = stage.settings(services={"reload_interval": 0.5})
    process = await stage.launcher.start(settings)
    alpha, beta = events_for(2, prefix="in/first")  # one event for alpha, one for beta

    write_atomically(stage.fdl, service_fdl("alpha", "beta"))
    await until(
        lambda: _logged(process, "service definitions reloaded", services=["alpha", "beta"]),
        "the dispatcher to load the new service",
    )
    await stage.publish(settings, [alpha, beta])
    await until(lambda: _at_least(stage.api_creates, 201, 2), "Jobs for the old and the new service")

    write_atomically(stage.fdl, service_fdl("alpha", "beta", broken="beta"))
    refused = await until(
        lambda: _logged(process, "new service definitions refused; keeping the previous ones"),
        "the invalid definitions to be refused",
    )
    assert str(stage.fdl) in refused[0]["error"]
    assert "service 'beta'" in refused[0]["error"]
    assert "field 'memory'" in refused[0]["error"]
    later = events_for(2, prefix="in/later")
    await stage.publish(settings, later)
    await until(lambda: _at_least(stage.api_creates, 201, 4), "Jobs for both services after the refusal")
    await until(lambda: stage.drained(settings), "every queue drained")
    assert_jobs_match(await jobs(stage.kube), expected_jobs([alpha, beta, *later]))
    assert process.returncode is None
    assert await stage.dead_letters(settings) == 0


def two_clusters_fdl(*also: str) -> str:
    """alpha filed under 'cloud' (as in RESOURCES) and 'edge' (2 CPUs), then *also* under 'cloud'."""
    cloud = service_fdl("alpha", *also).replace("  - c:", "  - cloud:")
    edge = service_fdl("alpha").replace("  - c:", "  - edge:").replace("cpu: '250m'", "cpu: '2'")
    return cloud + edge.split("  oscar:\n", 1)[1]


async def test_the_chosen_clusters_definition_runs_and_the_choice_holds_on_reload(stage: Stage) -> None:
    write_atomically(stage.fdl, two_clusters_fdl())
    settings = stage.settings(services={"reload_interval": 0.5, "cluster": "cloud"})
    process = await stage.launcher.start(settings)  # through BUCKETRUN_SERVICES__CLUSTER
    assert process.logged("service definition for another cluster set aside")

    write_atomically(stage.fdl, two_clusters_fdl("beta"))
    await until(
        lambda: _logged(process, "service definitions reloaded", services=["alpha", "beta"]),
        "the dispatcher to load the new service for the same cluster",
    )
    bodies = events_for(2, prefix="in/chosen")
    await stage.publish(settings, bodies)
    await until(lambda: _at_least(stage.api_creates, 201, 2), "a Job per event")
    await until(lambda: stage.drained(settings), "every queue drained")
    assert_jobs_match(await jobs(stage.kube), expected_jobs(bodies))  # alpha's cloud resources, not 2 CPUs


async def test_a_missing_setting_exits_2_naming_the_variable(stage: Stage) -> None:
    with _broker_stand_in() as (broker, url):
        settings = with_settings(stage.settings(), amqp={"url": SecretStr(url)})
        environment = child_environment(settings)
        del environment["BUCKETRUN_STORAGE__SECRET_KEY"]
        finished = await asyncio.to_thread(_run_dispatcher, environment)
        assert _accepted(broker) == 0, "the dispatcher connected to the broker"
    assert finished.returncode == 2, finished.stderr
    assert "BUCKETRUN_STORAGE__SECRET_KEY" in finished.stderr
    assert "required but not set" in finished.stderr


async def test_an_invalid_definition_exits_1_naming_file_service_and_field(stage: Stage) -> None:
    write_atomically(stage.fdl, service_fdl("alpha", "gamma", broken="gamma"))
    with _broker_stand_in() as (broker, url):
        settings = with_settings(stage.settings(), amqp={"url": SecretStr(url)})
        finished = await asyncio.to_thread(_run_dispatcher, child_environment(settings))
        assert _accepted(broker) == 0, "the dispatcher connected to the broker"
    assert finished.returncode == 1, finished.stderr
    assert str(stage.fdl) in finished.stderr
    assert "service 'gamma'" in finished.stderr
    assert "field 'memory'" in finished.stderr
    assert "'a lot'" in finished.stderr


async def _at_least(count: Callable[[int], int], code: int, minimum: int) -> bool:
    return count(code) >= minimum


async def _logged(process: DispatcherProcess, message: str, **fields: Any) -> list[dict[str, Any]]:
    return [
        record
        for record in process.logged(message)
        if all(record.get(name) == value for name, value in fields.items())
    ]


def _run_dispatcher(environment: dict[str, str]) -> subprocess.CompletedProcess[str]:
    # Refusing to start takes an interpreter start-up (about a second): a hang past this bound fails.
    started = time.monotonic()
    finished = subprocess.run(
        COMMAND, env=environment, cwd=REPO_ROOT, capture_output=True, text=True, timeout=20, check=False
    )
    print(f"exit {finished.returncode} after {time.monotonic() - started:.1f}s\n{finished.stderr}")
    return finished


@contextlib.contextmanager
def _broker_stand_in() -> Iterator[tuple[socket.socket, str]]:
    """A listening socket posing as the broker, and its URL: it never answers, but counts who calls."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        sock.setblocking(False)
        yield sock, f"amqp://guest:guest@127.0.0.1:{sock.getsockname()[1]}/"


def _accepted(sock: socket.socket) -> int:
    """Connections waiting on *sock* (accepted and closed now)."""
    count = 0
    while True:
        try:
            connection, _ = sock.accept()
        except BlockingIOError:
            return count
        connection.close()
        count += 1
