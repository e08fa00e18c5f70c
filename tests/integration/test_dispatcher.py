"""The dispatcher end to end on real servers: RabbitMQ, an S3 server (for presigning), the Kubernetes
API (emulator or cluster). Events published to the MinIO exchange become exactly one Job each."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from functools import partial
from pathlib import Path
from typing import Any

import aio_pika  # noqa: TID251 - the test plays MinIO and reads the dead-letter queue
import pytest
import structlog
from kubernetes_asyncio import client  # noqa: TID251 - the test inspects the cluster

from dispatcher.adapters.amqp import AmqpClient
from dispatcher.domain.events import build_message, parse_message
from dispatcher.domain.identity import job_name, object_version
from dispatcher.domain.quantity import parse_quantity
from dispatcher.process.app import run_dispatcher
from dispatcher.runtime.metrics import new_registry
from dispatcher.runtime.settings import Settings
from tests.backends.kubernetes import KubeTestEnv
from tests.backends.rabbitmq import AmqpNames
from tests.backends.s3 import S3Endpoint
from tests.integration.dispatcher_process import with_settings
from tests.integration.job_peaks import active_peaks
from tests.integration.stack import amqp_settings, started, storage_settings, until
from tests.metric_labels import unbounded_labels

pytestmark = [pytest.mark.integration]

SOLO_SERVICE = """\
  - c:
      name: solo
      image: busybox:1.36
      memory: 32Mi
      script: |
        cat "$INPUT_FILE_PATH"
      input: [{storage_provider: minio, path: solo/in}]
"""
FDL = (
    """
functions:
  oscar:
  - c:
      name: upper
      image: busybox:1.36
      cpu: '0.25'
      memory: 64Mi
      script: |
        tr a-z A-Z < "$INPUT_FILE_PATH" > "$TMP_OUTPUT_DIR/out.txt"
      input: [{storage_provider: minio, path: photos/in}]
      output: [{storage_provider: minio, path: photos/out}]
  - c:
      name: lower
      image: busybox:1.36
      cpu: '0.5'
      memory: 128Mi
      script: |
        tr A-Z a-z < "$INPUT_FILE_PATH" > "$TMP_OUTPUT_DIR/out.txt"
      input: [{storage_provider: minio, path: photos/in}]
  - c:
      name: capped
      image: busybox:1.36
      memory: 32Mi
      script: |
        cat "$INPUT_FILE_PATH"
      input: [{storage_provider: minio, path: queue/in}]
      bucketrun:
        max_concurrent_jobs: 2
"""
    + SOLO_SERVICE
)
SOLO_FDL = "\nfunctions:\n  oscar:\n" + SOLO_SERVICE
WAIT = 60.0


@dataclass
class Running:
    settings: Settings
    names: AmqpNames
    kube: KubeTestEnv

    async def publish(self, bodies: list[bytes]) -> None:
        connection = await aio_pika.connect(self.names.url)
        async with connection:
            channel = await connection.channel(publisher_confirms=True)
            exchange = await channel.get_exchange(self.settings.amqp.exchange)
            for body in bodies:
                await exchange.publish(
                    aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT), ""
                )


def event(key: str, *, bucket: str = "photos", sequencer: str = "17A76FE05CF3469B") -> bytes:
    return build_message(
        event_name="s3:ObjectCreated:Put", bucket=bucket, key=key, etag="e" * 32, sequencer=sequencer
    )


def settings_for(names: AmqpNames, s3: S3Endpoint, kube: KubeTestEnv, fdl: Path) -> Settings:
    return Settings.load(
        amqp=amqp_settings(names, services=("upper", "lower", "capped", "solo"), retry_tiers=(1, 2)),
        storage=storage_settings(s3),
        cluster={
            "executor": "kubernetes",
            "namespace": kube.namespace,
            "kubeconfig": kube.kubeconfig,
            "api_write_rate": 500.0,
            "api_write_burst": 500,
        },
        services={"paths": (fdl,), "reload_interval": 0.5},
        dispatch={"retry_base_delay": 0.2, "max_retry_delay": 2.0, "drain_timeout": 5.0},
        metrics={"host": "127.0.0.1", "port": 0},
    )


def dispatcher(settings: Settings) -> contextlib.AbstractAsyncContextManager[asyncio.Task[None]]:
    """The dispatcher running in this process until the block ends."""
    return started(partial(run_dispatcher, settings), "dispatcher")


@pytest.fixture
async def running(amqp_names, s3_endpoint, kube, tmp_path) -> Running:
    fdl = tmp_path / "services.yaml"
    fdl.write_text(FDL)
    kube.require_control().set_kubelet("off")  # pods stay Pending: these tests count Jobs, not runs
    return Running(settings_for(amqp_names, s3_endpoint, kube, fdl), amqp_names, kube)


async def jobs(kube: KubeTestEnv) -> list[dict[str, Any]]:
    from tests.backends.kubernetes import api_client_for  # noqa: PLC0415

    async with await api_client_for(kube.kubeconfig) as api:
        batch = client.BatchV1Api(api)
        listed = await batch.list_namespaced_job(kube.namespace, _preload_content=False)
        return (await listed.json())["items"]


async def dead_letters(
    names: AmqpNames, queue: str, count: int
) -> list[aio_pika.abc.AbstractIncomingMessage]:
    connection = await aio_pika.connect(names.url)
    got: list[aio_pika.abc.AbstractIncomingMessage] = []
    async with connection:
        channel = await connection.channel()
        dlq = await channel.get_queue(queue)

        async def enough() -> bool:
            while (message := await dlq.get(fail=False)) is not None:
                await message.ack()
                got.append(message)
            return len(got) >= count

        await until(enough, f"{count} dead letters")
    return got


async def test_each_event_becomes_exactly_one_job_with_the_right_service_key_and_resources(
    running: Running,
) -> None:
    keys = [f"in/photo-{index}.txt" for index in range(40)]
    async with dispatcher(running.settings):
        await running.publish([event(key) for key in keys])

        async def all_jobs() -> list[dict[str, Any]] | None:
            found = await jobs(running.kube)
            return found if len(found) >= 80 else None

        found = await until(all_jobs, "80 Jobs (40 events x 2 services)")
        # The same events again (MinIO retrying from its queue_dir): every create meets 409, no new Job.
        await running.publish([event(key) for key in keys])
        control = running.kube.require_control()

        async def all_refused() -> int:
            return control.request_count(
                verb="create", resource="jobs", namespace=running.kube.namespace, code=409
            )

        await until(lambda: _at_least(all_refused, 80), "80 creates answered 409 AlreadyExists")
        await until(lambda: _queues_empty(running), "ingress and service queues to drain")
    assert len(await jobs(running.kube)) == 80
    by_name = {job["metadata"]["name"]: job for job in found}
    for key in keys:
        (parsed,) = parse_message(event(key))
        # The FDL says 0.25 and 0.5; a real API server stores quantities canonically (250m, 500m).
        for service, cpu in (("upper", Fraction(1, 4)), ("lower", Fraction(1, 2))):
            job = by_name[job_name(service, "photos", key, object_version(parsed))]
            assert job["metadata"]["labels"]["bucketrun.io/service"] == service
            assert job["metadata"]["annotations"]["bucketrun.io/key"] == key
            run = job["spec"]["template"]["spec"]["containers"][0]
            assert parse_quantity(run["resources"]["limits"]["cpu"]) == cpu


async def _at_least(count: Callable[[], Any], minimum: int) -> bool:
    return await count() >= minimum


async def _queues_empty(running: Running) -> bool:
    connection = await aio_pika.connect(running.names.url)
    async with connection:
        channel = await connection.channel()
        for role in ("ingress", "svc.upper", "svc.lower"):
            queue = await channel.declare_queue(f"{running.names.prefix}.{role}", passive=True)
            if queue.declaration_result.message_count:
                return False
    return True


async def test_bad_messages_are_dead_lettered_with_reasons_and_good_ones_still_become_jobs(
    running: Running,
) -> None:
    bad = {
        "not-json": b"this is not json",
        "bad-record": b'{"Records": [{"eventName": 5}]}',
        "unknown-bucket": event("in/x.txt", bucket="elsewhere"),
        "folder-mismatch": event("other/x.txt"),
        "not-utf8": bytes(range(256)) * 4,
        "too-large": b'{"Records": [' + b" " * (2 << 20) + b"]}",
    }
    good = [event(f"in/good-{index}.txt") for index in range(6)]
    interleaved: list[bytes] = []
    for index, body in enumerate(bad.values()):
        interleaved += [body, good[index]]
    registry = new_registry("dispatcher")
    async with started(partial(run_dispatcher, running.settings, registry=registry), "dispatcher"):
        await running.publish(interleaved)
        letters = await dead_letters(running.names, running.settings.amqp.dead_letter_queue, len(bad))

        async def twelve() -> bool:
            return len(await jobs(running.kube)) >= 12

        await until(twelve, "12 Jobs for the 6 good events")
    reasons = sorted(str(letter.headers["x-bucketrun-reason"]) for letter in letters)
    assert reasons == sorted(bad)
    for letter in letters:
        assert letter.headers.get("x-bucketrun-error")
    per_event = [*(job["metadata"]["name"] for job in await jobs(running.kube)), "in/x.txt", "other/x.txt"]
    per_event += [f"in/good-{index}.txt" for index in range(6)]
    assert unbounded_labels(registry, per_event) == []
    # A key outside every input folder is a wiring mistake: counted as a dead letter, never as ignored.
    for reason in bad:
        assert registry.get_sample_value("bucketrun_dead_lettered_total", {"reason": reason}) == 1, reason
        assert not registry.get_sample_value("bucketrun_events_ignored_total", {"reason": reason}), reason


async def test_api_errors_and_throttling_are_retried_until_every_job_exists(running: Running) -> None:
    control = running.kube.require_control()
    control.set_faults(
        error_rates={500: 0.2, 503: 0.1, 429: 0.1}, retry_after_seconds=1, verbs=["create"], seed=7
    )
    keys = [f"in/flaky-{index}.txt" for index in range(15)]
    async with dispatcher(running.settings):
        await running.publish([event(key) for key in keys])

        async def thirty() -> bool:
            return len(await jobs(running.kube)) >= 30

        await until(thirty, "30 Jobs despite 40% injected API errors", within=90)
    control.clear_faults()
    assert len(await jobs(running.kube)) == 30
    assert await _dlq_count(running) == 0


async def test_a_409_conflict_on_create_is_retried_not_acked_as_an_existing_job(running: Running) -> None:
    control = running.kube.require_control()
    control.set_faults(error_rates={409: 1.0}, verbs=["create"], resources=["jobs"])
    keys = [f"in/conflict-{index}.txt" for index in range(5)]
    async with dispatcher(running.settings):
        await running.publish([event(key, bucket="solo") for key in keys])

        async def conflicted() -> bool:
            return (
                control.request_count(
                    verb="create", resource="jobs", namespace=running.kube.namespace, code=409
                )
                >= 10
            )

        await until(conflicted, "every create answered 409 Conflict at least twice")
        assert await jobs(running.kube) == []
        control.clear_faults()

        async def five() -> bool:
            return len(await jobs(running.kube)) >= 5

        await until(five, "the 5 Jobs once the conflicts stop")
    assert len(await jobs(running.kube)) == 5
    assert await _dlq_count(running) == 0


async def _dlq_count(running: Running) -> int:
    connection = await aio_pika.connect(running.names.url)
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(running.settings.amqp.dead_letter_queue, passive=True)
        return queue.declaration_result.message_count or 0


async def test_a_capped_service_holds_its_backlog_without_blocking_others(running: Running) -> None:
    control = running.kube.require_control()
    # The case: cap 2, 20 events for the capped service and 5 for another.
    capped = [event(f"in/q-{index}.txt", bucket="queue") for index in range(20)]
    others = [event(f"in/o-{index}.txt") for index in range(5)]
    async with active_peaks(running.kube) as peaks, dispatcher(running.settings):
        await running.publish(capped + others)

        async def settled() -> list[dict[str, Any]] | None:
            found = await jobs(running.kube)
            by_service = _by_service(found)
            return found if by_service.get("upper", 0) == 5 and by_service.get("capped", 0) >= 2 else None

        found = await until(settled, "the uncapped services' Jobs and 2 capped Jobs")
        assert _by_service(found)["capped"] == 2  # pods stay Pending: the cap holds the rest back
        control.set_kubelet("instant")  # Jobs now finish at once: the backlog drains, 2 at a time

        async def all_capped() -> bool:
            return _by_service(await jobs(running.kube)).get("capped", 0) == 20

        await until(all_capped, "all 20 capped Jobs", within=90)
    # Every change of every Job went through the watch: the cap held at each one, not only when polled.
    assert peaks.peak["capped"] == 2


async def test_the_cap_holds_across_a_dispatcher_restart(running: Running) -> None:
    """A restarted dispatcher counts the Jobs its predecessor left running before it admits any."""
    control = running.kube.require_control()
    capped = [event(f"in/r-{index}.txt", bucket="queue") for index in range(8)]
    async with active_peaks(running.kube) as peaks:
        async with dispatcher(running.settings):
            await running.publish(capped)

            async def two() -> bool:
                return _by_service(await jobs(running.kube)).get("capped", 0) == 2

            await until(two, "2 capped Jobs, pending")
        registry = new_registry("dispatcher")
        restarted = partial(run_dispatcher, running.settings, registry=registry)
        async with started(restarted, "the restarted dispatcher"):

            async def refused_at_capacity() -> bool:
                sample = registry.get_sample_value("bucketrun_retries_total", {"kind": "at-capacity"})
                return bool(sample)

            await until(refused_at_capacity, "the restarted dispatcher to hold a task at the cap")
            assert _by_service(await jobs(running.kube))["capped"] == 2
            control.set_kubelet("instant")

            async def all_capped() -> bool:
                return _by_service(await jobs(running.kube)).get("capped", 0) == 8

            await until(all_capped, "all 8 capped Jobs after the restart", within=90)
    assert peaks.peak["capped"] == 2


async def test_jobs_are_watched_only_while_a_service_has_a_cap_and_uncapping_frees_its_backlog(
    running: Running,
) -> None:
    """Counting the Jobs costs the API server a watch (every created Job sent once more): the dispatcher
    lists and watches them only while some definition has ``max_concurrent_jobs``, from the first
    reload that brings one to the one that takes the last away; then its held events are created."""
    control = running.kube.require_control()
    namespace = running.kube.namespace
    fdl = running.settings.services.paths[0]
    cap = "      bucketrun:\n        max_concurrent_jobs: 2\n"
    assert cap in FDL
    fdl.write_text(FDL.replace(cap, ""))

    def job_reads() -> int:
        return control.request_count(verb=("list", "watch"), resource="jobs", namespace=namespace)

    async def created(count: int) -> bool:
        done = control.request_count(verb="create", resource="jobs", namespace=namespace, code=201)
        return done >= count

    async def watches(count: int) -> bool:
        return await asyncio.to_thread(control.open_watches) == count

    registry = new_registry("dispatcher")
    async with started(partial(run_dispatcher, running.settings, registry=registry), "dispatcher"):
        await running.publish([event(f"in/u-{index}.txt", bucket="solo") for index in range(3)])
        await until(partial(created, 3), "3 Jobs of an uncapped service")
        assert (job_reads(), control.open_watches()) == (0, 0)
        assert registry.get_sample_value("bucketrun_running_jobs", {"service": "solo"}) is None

        fdl.write_text(FDL)  # a cap: the Jobs are counted before it applies
        await until(partial(watches, 1), "the dispatcher's Job watch")
        assert control.request_count(verb="list", resource="jobs", namespace=namespace) == 1  # its list
        await running.publish([event(f"in/c-{index}.txt", bucket="queue") for index in range(5)])

        async def at_cap() -> bool:
            held = registry.get_sample_value("bucketrun_retries_total", {"kind": "at-capacity"})
            return bool(held) and _by_service(await jobs(running.kube)).get("capped", 0) == 2

        await until(at_cap, "2 capped Jobs and the rest held at the cap (pods stay Pending)")
        assert registry.get_sample_value("bucketrun_running_jobs", {"service": "solo"}) == 3

        fdl.write_text(FDL.replace(cap, ""))  # no cap left: the watch ends, the held events go

        async def all_five() -> bool:
            return _by_service(await jobs(running.kube)).get("capped", 0) == 5

        await until(partial(watches, 0), "the Job watch to end")
        await until(all_five, "the 3 held events created once the cap is gone")


def _service(job: dict[str, Any]) -> str:
    return job["metadata"]["labels"]["bucketrun.io/service"]


def _finished(job: dict[str, Any]) -> bool:
    return any(
        c["type"] in {"Complete", "Failed"} and c["status"] == "True"
        for c in job.get("status", {}).get("conditions", [])
    )


def _by_service(found: list[dict[str, Any]]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for job in found:
        counts[_service(job)] = counts.get(_service(job), 0) + 1
    return counts


# -- the ingress consumer's direct creates (an event for one uncapped service skips its queue) ----------


def _created_lines(lines: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """The "job created" lines, by path: "direct" (ingress consumer) or "queue" (service queue)."""
    by_path: dict[str, list[dict[str, Any]]] = {"direct": [], "queue": []}
    for line in lines:
        if line["event"] == "job created":
            by_path[line.get("path", "queue")].append(line)
    return by_path


async def test_an_event_for_one_uncapped_service_is_created_without_its_service_queue(
    running: Running,
) -> None:
    solo = [f"in/s-{index}.txt" for index in range(20)]
    # A bound above the burst: how many creates are in flight at once depends on the API server's speed
    # (past the bound, events overflow into their queues: the test below shows that).
    settings = with_settings(running.settings, dispatch={"direct_creates": 64})
    with structlog.testing.capture_logs(processors=[structlog.contextvars.merge_contextvars]) as lines:
        async with dispatcher(settings):
            await running.publish([event(key, bucket="solo") for key in solo])
            await running.publish([event(f"in/p-{index}.txt") for index in range(5)])  # two services each
            await running.publish([event(f"in/q-{index}.txt", bucket="queue") for index in range(2)])

            async def all_jobs() -> bool:
                return len(await jobs(running.kube)) >= 32

            await until(all_jobs, "32 Jobs (20 solo, 5 x 2 photos, 2 capped)")
            # The same solo events again: the direct path meets 409 and acks, as the queue path does.
            await running.publish([event(key, bucket="solo") for key in solo])

            async def exists_answered() -> bool:
                return len([line for line in lines if line["event"] == "job exists"]) >= 20

            await until(exists_answered, "20 redelivered solo events answered 409")
    assert len(await jobs(running.kube)) == 32
    by_path = _created_lines(lines)
    assert sorted(line["key"] for line in by_path["direct"]) == sorted(solo)
    assert {line["service"] for line in by_path["direct"]} == {"solo"}
    for line in by_path["direct"]:  # the unit-of-work keys the queue path's lines carry
        assert line["job"]
        assert line["event_id"]
        assert line["bucket"] == "solo"
    # Several services per event, and capped services, always go through their queues.
    assert (
        sorted(line["service"] for line in by_path["queue"]) == ["capped"] * 2 + ["lower"] * 5 + ["upper"] * 5
    )


async def test_direct_creates_retry_api_errors_through_the_ingress_without_duplicates(
    running: Running,
) -> None:
    control = running.kube.require_control()
    control.set_faults(
        error_rates={500: 0.2, 503: 0.1, 429: 0.1}, retry_after_seconds=1, verbs=["create"], seed=11
    )
    keys = [f"in/flaky-{index}.txt" for index in range(15)]
    with structlog.testing.capture_logs(processors=[structlog.contextvars.merge_contextvars]) as lines:
        async with dispatcher(running.settings):
            await running.publish([event(key, bucket="solo") for key in keys])

            async def fifteen() -> bool:
                return len(await jobs(running.kube)) >= 15

            await until(fifteen, "15 Jobs despite 40% injected API errors", within=90)
    control.clear_faults()
    found = await jobs(running.kube)
    assert sorted(job["metadata"]["annotations"]["bucketrun.io/key"] for job in found) == sorted(keys)
    assert await _dlq_count(running) == 0
    retried = [line for line in lines if line["event"] == "job creation failed for now; retrying"]
    assert retried
    assert all(line["path"] == "direct" for line in retried)


async def test_a_direct_create_the_api_refuses_is_dead_lettered_with_its_service(running: Running) -> None:
    control = running.kube.require_control()
    control.set_faults(error_rates={422: 1.0}, verbs=["create"], resources=["jobs"])
    async with dispatcher(running.settings):
        await running.publish([event("in/refused.txt", bucket="solo")])
        (letter,) = await dead_letters(running.names, running.settings.amqp.dead_letter_queue, 1)
    control.clear_faults()
    assert letter.headers["x-bucketrun-reason"] == "invalid-manifest"
    assert letter.headers["x-bucketrun-service"] == "solo"
    assert parse_message(letter.body)[0].key == "in/refused.txt"  # the MinIO message itself, kept whole
    assert await jobs(running.kube) == []


@pytest.mark.parametrize("limit", [0, 1])
async def test_past_the_direct_bound_events_go_through_their_service_queue(
    running: Running, limit: int
) -> None:
    control = running.kube.require_control()
    control.set_faults(latency=0.3)  # every API answer 0.3 s late, so the creates overlap
    keys = [f"in/slow-{index}.txt" for index in range(10)]
    with structlog.testing.capture_logs(processors=[structlog.contextvars.merge_contextvars]) as lines:
        async with dispatcher(with_settings(running.settings, dispatch={"direct_creates": limit})):
            await running.publish([event(key, bucket="solo") for key in keys])

            async def ten() -> bool:
                return len(await jobs(running.kube)) >= 10

            await until(ten, "10 solo Jobs", within=90)
    control.clear_faults()
    assert len(await jobs(running.kube)) == 10
    by_path = _created_lines(lines)
    assert len(by_path["direct"]) + len(by_path["queue"]) == 10
    if limit == 0:
        assert by_path["direct"] == []
    else:
        assert 1 <= len(by_path["direct"]) < 10


@pytest.mark.parametrize("catalog", ["four services", "one service"])
async def test_unset_the_direct_bound_is_16_with_several_services_and_the_prefetch_with_one(
    running: Running, tmp_path: Path, catalog: str
) -> None:
    settings = running.settings
    if catalog == "one service":
        solo = tmp_path / "solo.yaml"
        solo.write_text(SOLO_FDL)
        settings = with_settings(settings, services={"paths": (solo,)})
    assert settings.dispatch.direct_creates is None
    control = running.kube.require_control()
    control.set_faults(latency=0.3)  # the 30 events are all taken from the ingress before a create ends
    keys = [f"in/many-{index}.txt" for index in range(30)]
    with structlog.testing.capture_logs(processors=[structlog.contextvars.merge_contextvars]) as lines:
        async with dispatcher(settings):
            await running.publish([event(key, bucket="solo") for key in keys])

            async def thirty() -> bool:
                return len(await jobs(running.kube)) >= 30

            await until(thirty, "30 solo Jobs", within=90)
    control.clear_faults()
    by_path = _created_lines(lines)
    assert sorted(line["key"] for line in by_path["direct"] + by_path["queue"]) == sorted(keys)
    if catalog == "one service":  # no other service's event to keep from waiting: no bound but the prefetch
        assert by_path["queue"] == []
    else:  # the first 16 direct, the rest overflow into the service's queue
        assert len(by_path["direct"]) >= 16
        assert by_path["queue"]


# -- the batched hand-off (events handed to a service queue while its publish awaits a confirm) ---------


async def _waiting_for_the_queue_path(running: Running, keys: list[str]) -> Settings:
    """Events for `solo` published before the dispatcher starts (the topology declared first), so that
    its ingress consumer takes them in a burst and all but the first are handed over while a publish to
    the service queue awaits its confirm; the settings that send every event through that queue."""
    async with await AmqpClient.connect(running.settings.amqp) as amqp:
        await amqp.declare_topology()
        await amqp.declare_service_queue("solo")
    await running.publish([event(key, bucket="solo") for key in keys])
    return with_settings(running.settings, dispatch={"direct_creates": 0})


def _batched(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Lines of records handled from a service-queue message that held several."""
    return [line for line in lines if line.get("events", 1) > 1]


async def test_events_handed_over_together_each_become_one_job(running: Running) -> None:
    keys = [f"in/batch-{index}.txt" for index in range(40)]
    settings = await _waiting_for_the_queue_path(running, keys)
    with structlog.testing.capture_logs(processors=[structlog.contextvars.merge_contextvars]) as lines:
        async with dispatcher(settings):

            async def forty() -> bool:
                return len(await jobs(running.kube)) >= 40

            await until(forty, "40 solo Jobs")
            await until(lambda: _queues_empty(running), "ingress and service queues to drain")
    found = await jobs(running.kube)
    assert sorted(job["metadata"]["annotations"]["bucketrun.io/key"] for job in found) == sorted(keys)
    created = _created_lines(lines)["queue"]
    assert sorted(line["key"] for line in created) == sorted(keys)
    assert _batched(created), "no service-queue message held more than one event"
    for line in created:  # each record's own unit-of-work keys, batch or not
        assert line["job"]
        assert line["bucket"] == "solo"
    assert await _dlq_count(running) == 0


async def test_records_of_a_batch_the_api_refuses_are_dead_lettered_one_by_one(running: Running) -> None:
    control = running.kube.require_control()
    control.set_faults(error_rates={422: 1.0}, verbs=["create"], resources=["jobs"])
    keys = [f"in/refused-{index}.txt" for index in range(12)]
    settings = await _waiting_for_the_queue_path(running, keys)
    with structlog.testing.capture_logs(processors=[structlog.contextvars.merge_contextvars]) as lines:
        async with dispatcher(settings):
            letters = await dead_letters(running.names, running.settings.amqp.dead_letter_queue, 12)
    control.clear_faults()
    assert _batched([line for line in lines if line["event"] == "task refused"])
    records = [parse_message(letter.body) for letter in letters]
    assert all(len(held) == 1 for held in records)  # each refused record alone, never the whole batch
    assert sorted(held[0].key for held in records) == sorted(keys)
    for letter in letters:
        assert letter.headers["x-bucketrun-reason"] == "invalid-manifest"
        assert letter.headers["x-bucketrun-service"] == "solo"
    assert await jobs(running.kube) == []
