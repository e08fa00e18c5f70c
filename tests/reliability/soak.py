"""Soak with faults: N events across the services through the whole real stack while it is broken on
purpose, then an account of every event.

    .venv/bin/python -m tests.reliability.soak --events 10000 --services 5 --report soak.json

What runs (`soak_stack`): a private RabbitMQ node, an S3 server of its own (the built MinIO; moto where
it is not built), a Kubernetes of its own (the real control plane built by `make servers` behind the
fault proxy; the API emulator where it is not built), two `bucketrun dispatcher` processes and two
`bucketrun watcher` processes on one Lease. The soak plays MinIO:
it uploads each object and publishes the notification MinIO would send (persistent, confirmed; while the
broker is down it keeps retrying, as MinIO's queue_dir does). About 2% of the events are deletes no
service asked for (acked and ignored on purpose) and 1% name a bucket no service watches (dead-lettered
with `unknown-bucket`), so "every event accounted for" covers all three endings.

Two phases, because real pods cost real processes (three per Job: stage-in, the script, stage-out,
~0.5 s of CPU each on these 2 cores, so 10,000 of them would take hours):

1. a *run slice* (default 6% of the events, at least 60) with the kubelet in `run` mode: pods really
   stage in, run and stage out; S3 is frozen for 10 s while they do (`soak_faults.s3_outage`);
2. the *bulk* with the kubelet in `instant` mode (pods finish at once, no processes), during which
   RabbitMQ is stopped and restarted twice, a dispatcher replica is SIGKILLed three times, the watcher
   leader once, 429 bursts come twice, watch streams are dropped twice, and etcd is compacted and
   kube-apiserver restarted once, so re-watches get its own 410 Expired (on the emulator: one 410 Gone).

5% of all API requests answer 500 throughout. Faults fire by progress (Jobs created), see `soak_faults`.
The verdict is `soak_report`'s: 0 lost, 0 duplicate Jobs, 0 duplicate records, every event accounted for.
Exit status: 0 targets met, 1 a target missed (each printed), 2 the soak could not run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import io
import json
import logging
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aio_pika  # noqa: TID251 - the soak plays MinIO (publishes) and reads the dead-letter queue

from dispatcher.domain.constants import (
    ANNOTATION_BUCKET,
    ANNOTATION_KEY,
    ANNOTATION_RECORDED,
    ANNOTATION_VERSION,
    LABEL_SERVICE,
)
from dispatcher.domain.events import EventError, build_message, parse_message
from dispatcher.domain.identity import job_name, object_version
from tests.backends import port_open
from tests.backends.rabbit_node import PrivateRabbitNode
from tests.reliability import soak_faults as faults
from tests.reliability import soak_report
from tests.reliability.soak_stack import SERVICES, SoakError, SoakStack

BATCH = 20
"""Events uploaded and published together (one burst of confirmed publishes)."""
SETTLE_WITHIN = 600.0
"""Least seconds the soak waits, after the last event is published, for every Job and record and an
empty set of queues; a run that needs longer is reported as it stands (with its losses)."""
SETTLE_PER_EVENT = 0.2
"""...and at least this many seconds per event, a wide margin: each record is a pod list, a record read,
three log reads, four S3 writes, a publish and an annotation, each through the 5% of injected 500s. On 2
shared cores the watcher drained its backlog at ~65 Jobs/s with 4,850 Jobs in the namespace (5,000-event
run); it was 5-10 Jobs/s at 10,000 Jobs while the emulator scanned every pod for each Job's pod list."""
PUBLISH_WITHIN = 300.0
"""Seconds one batch may take to be confirmed, broker outages included."""
LIST_ALL = 10_000_000
"""Keys asked for in one page of the records listing: all of them (see `record_versions`)."""
LIST_READ_TIMEOUT = 600.0
"""Seconds that one listing may take to answer (moto needs ~10 s per 40,000 versions, more when loaded)."""


@dataclass(frozen=True)
class Profile:
    """How big and how fast one soak is."""

    events: int = 1000
    services: int = 5
    rate: float = 40.0
    """Events published per second (paced, so that faults land while events keep arriving)."""
    run_slice: int | None = None
    """Events of phase 1 (kubelet `run`); default 6% of the events, at least 60."""

    @property
    def slice_events(self) -> int:
        """Events of the run slice."""
        return (
            self.run_slice
            if self.run_slice is not None
            else min(self.events, max(60, self.events * 6 // 100))
        )


# -- the events ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Planned:
    """One event to send: what it must end as, and how to make it (upload, then publish)."""

    sent: soak_report.SentEvent
    content: bytes | None
    """The object's bytes (None: nothing to upload)."""


def plan_events(stack: SoakStack, count: int) -> list[Planned]:
    """*count* events round-robin over the services: 1% to an unwatched bucket, 2% deletes, the rest
    uploads that each must become one Job."""
    planned = []
    for index in range(count):
        service = stack.services[index % len(stack.services)]
        if index % 100 == 37:
            sent = soak_report.SentEvent(index, "dead-letter", stack.dead_bucket, f"in/stray-{index:05d}.txt")
            planned.append(Planned(sent, None))
        elif index % 50 == 11:
            sent = soak_report.SentEvent(
                index, "ignore", stack.input_bucket(service), f"in/gone-{index:05d}.txt"
            )
            planned.append(Planned(sent, None))
        else:
            key = f"in/object-{index:05d}.txt"
            content = f"soak object {index}\n".encode() * (1 + index % 7)
            sent = soak_report.SentEvent(index, "job", stack.input_bucket(service), key, service)
            planned.append(Planned(sent, content))
    return planned


def _sequencer() -> str:
    """MinIO's sequencer: the hex of the modification time in nanoseconds."""
    return f"{time.time_ns():016X}"


def make_message(stack: SoakStack, item: Planned) -> tuple[soak_report.SentEvent, bytes]:
    """Upload the object (if any) and build the notification MinIO would send for it; the event with
    its expected Job name filled in."""
    sent = item.sent
    if sent.kind == "ignore":
        body = build_message(
            event_name="s3:ObjectRemoved:Delete", bucket=sent.bucket, key=sent.key, sequencer=_sequencer()
        )
        return sent, body
    if item.content is None:
        body = build_message(
            event_name="s3:ObjectCreated:Put",
            bucket=sent.bucket,
            key=sent.key,
            size=3,
            etag="d" * 32,
            sequencer=_sequencer(),
        )
        return sent, body
    result = stack.minio().put_object(sent.bucket, sent.key, io.BytesIO(item.content), len(item.content))
    body = build_message(
        event_name="s3:ObjectCreated:Put",
        bucket=sent.bucket,
        key=sent.key,
        size=len(item.content),
        etag=result.etag,
        version_id=result.version_id,
        sequencer=_sequencer(),
    )
    (parsed,) = parse_message(body)
    assert sent.service is not None
    name = job_name(sent.service, sent.bucket, sent.key, object_version(parsed))
    return soak_report.SentEvent(sent.index, sent.kind, sent.bucket, sent.key, sent.service, name), body


class Publisher:
    """Publishes to the MinIO exchange like MinIO does: persistent, confirmed, retried until confirmed
    (a batch whose confirms were lost with the connection is sent again: at-least-once)."""

    def __init__(self, url: str, exchange: str) -> None:
        self.url = url
        self.exchange = exchange
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 5672
        self.retries = 0
        self._connection: aio_pika.abc.AbstractConnection | None = None
        self._target: aio_pika.abc.AbstractExchange | None = None

    async def publish(self, bodies: Sequence[bytes]) -> None:
        """Publish *bodies* until the broker confirmed every one; `SoakError` after `PUBLISH_WITHIN` s."""
        deadline = time.monotonic() + PUBLISH_WITHIN
        while True:
            try:
                target = await self._exchange()
                await asyncio.gather(
                    *(
                        target.publish(
                            aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                            "",
                            timeout=10,
                        )
                        for body in bodies
                    )
                )
            except Exception as error:  # noqa: BLE001 - whatever the broker did, MinIO would retry
                await self.close()
                self.retries += 1
                if time.monotonic() > deadline:
                    raise SoakError(
                        f"could not publish a batch within {PUBLISH_WITHIN}s: {error!r}"
                    ) from None
                await asyncio.sleep(0.5)
            else:
                return

    async def _exchange(self) -> aio_pika.abc.AbstractExchange:
        if self._connection is None or self._connection.is_closed or self._target is None:
            # A refused connect leaves aio-pika a half-built connection whose clean-up is never awaited
            # (a RuntimeWarning at garbage collection): look before connecting.
            if not port_open(self.host, self.port):
                raise ConnectionRefusedError(f"nothing listens on {self.host}:{self.port}")
            self._connection = await aio_pika.connect(self.url, timeout=5)
            channel = await self._connection.channel(publisher_confirms=True)
            self._target = await channel.get_exchange(self.exchange, ensure=False)
        return self._target

    async def close(self) -> None:
        """Close the connection (ignoring a broker that is already gone)."""
        connection, self._connection, self._target = self._connection, None, None
        if connection is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(connection.close(), 5)


async def feed(
    stack: SoakStack,
    publisher: Publisher,
    items: Sequence[Planned],
    rate: float,
    *,
    gate: faults.Gate | None = None,
    jobs_before: int = 0,
) -> list[soak_report.SentEvent]:
    """Upload and publish *items* in batches, paced at *rate* events a second and never past the
    *gate* (counted in Job events, *jobs_before* of them sent earlier); the events as sent."""
    sent: list[soak_report.SentEvent] = []
    started = time.monotonic()
    jobs, position = jobs_before, 0
    while position < len(items):
        batch: list[Planned] = []
        while position < len(items) and len(batch) < BATCH:
            item = items[position]
            if item.sent.kind == "job" and gate is not None and jobs + 1 > gate.limit:
                if batch:
                    break  # publish what the gate allows now
                await gate.wait_for(jobs + 1)
                started = time.monotonic() - position / rate  # resume the pace, no catch-up burst
            jobs += item.sent.kind == "job"
            batch.append(item)
            position += 1
        made = await asyncio.gather(*(asyncio.to_thread(make_message, stack, item) for item in batch))
        await publisher.publish([body for _, body in made])
        sent.extend(event for event, _ in made)
        # Pacing shapes the load (events keep arriving through the faults); it waits for nothing.
        ahead = started + position / rate - time.monotonic()
        if ahead > 0:
            await asyncio.sleep(ahead)
    return sent


# -- reading the servers ---------------------------------------------------------------------------------


async def queue_depths(stack: SoakStack) -> dict[str, int]:
    """Ready messages in each queue the dispatchers consume or park messages in (not the DLQ)."""
    amqp = stack.settings.amqp
    queues = [amqp.ingress_queue]
    queues += [f"{amqp.service_queue_prefix}.{service}" for service in stack.services]
    queues += [f"{amqp.retry_queue_prefix}.{seconds}s" for seconds in amqp.retry_tiers]
    found: dict[str, int] = {}
    connection = await aio_pika.connect(stack.node.url, timeout=10)
    async with connection:
        for queue in queues:
            channel = await connection.channel()
            try:
                declared = await channel.declare_queue(queue, passive=True)
            except aio_pika.exceptions.ChannelNotFoundEntity:
                continue
            if count := declared.declaration_result.message_count or 0:
                found[queue] = count
            await channel.close()
    return found


async def list_jobs(stack: SoakStack) -> list[dict[str, Any]]:
    """Every Job in the soak's namespace (through the API, retrying injected faults)."""
    listed = await stack.api("GET", f"/apis/batch/v1/namespaces/{stack.namespace}/jobs", tries=50)
    if listed is None:
        raise SoakError("the Job list kept failing")
    items: list[dict[str, Any]] = listed["items"]
    return items


async def settle(stack: SoakStack, jobs: int, within: float = SETTLE_WITHIN) -> str:
    """Wait until *jobs* Jobs exist, each marked recorded, and no queue holds a message ("settled");
    give up when nothing has moved for `faults.STALLED_AFTER` s with every queue empty ("stalled": the rest
    is lost, there is nothing left that could bring it) or after *within* s ("timed out")."""
    deadline = time.monotonic() + within
    last, since = None, time.monotonic()
    while time.monotonic() < deadline:
        now = await faults.progress(stack)
        try:
            depths = await queue_depths(stack)
        except Exception:  # noqa: BLE001 - a broker still coming back is "not yet"
            depths = {"(broker unreachable)": 1}
        quiet = (now, depths) == last and time.monotonic() - since > faults.STALLED_AFTER
        # The counters are the proxy's: a create or mark answered while the API server went down is
        # missing from them, so a quiet run is judged by the Jobs themselves before it counts as stalled.
        if not depths and ((now.creates >= jobs and now.records >= jobs) or quiet):
            if await recorded_jobs(stack) >= jobs:
                return "settled"
            if quiet:
                return "stalled"
        if (now, depths) != last:
            last, since = (now, depths), time.monotonic()
        await asyncio.sleep(1.0)
    return "timed out"


async def recorded_jobs(stack: SoakStack) -> int:
    """Jobs in the soak's namespace that carry the recorded mark."""
    listed = await list_jobs(stack)
    return sum(1 for job in listed if (job["metadata"].get("annotations") or {}).get(ANNOTATION_RECORDED))


def record_versions(stack: SoakStack) -> dict[str, int]:
    """Job name -> distinct records among the versions of its status.json (versioned records bucket).

    A watcher whose write timed out (S3 frozen) retries it; when the first PUT lands late, the bucket
    keeps two versions of the same bytes. That is one record written twice, not a second record: only
    versions with different contents count as duplicates (their number is printed by the soak).

    Every version of the records is listed in one answer: moto (5.2) deep-copies and sorts every version
    in the bucket for each page of ListObjectVersions, whatever the prefix, so the ~40,000 versions of a
    10,000-event soak (status.json and three logs per Job) took it over four minutes in pages of 1,000
    and take ~10 s in one. The SDK's public `list_objects` has no max-keys; its paging loop
    `_list_objects` has, and still follows the pages of a server that caps them (S3 and MinIO: 1,000).
    """
    storage = stack.settings.storage
    client = stack.minio(read_timeout=LIST_READ_TIMEOUT, resend_reads=False)
    versions: dict[str, list[str | None]] = {}
    for obj in client._list_objects(
        storage.records_bucket,
        prefix=storage.records_prefix,
        include_version=True,
        max_keys=LIST_ALL,
        encoding_type="url",
    ):
        name = obj.object_name or ""
        if name.endswith("/status.json") and not obj.is_delete_marker:
            versions.setdefault(name, []).append(obj.version_id)
    found: dict[str, int] = {}
    rewrites = 0
    for name, ids in versions.items():
        bucket = storage.records_bucket
        contents = {_version_bytes(client, bucket, name, v) for v in ids} if len(ids) > 1 else {b""}
        rewrites += len(ids) - len(contents)
        found[name.split("/")[-2]] = len(contents)
    if rewrites:
        print(f"[soak] status.json rewritten with identical contents: {rewrites}", flush=True)
    return found


def _version_bytes(client: Any, bucket: str, key: str, version_id: str | None) -> bytes:
    response = client.get_object(bucket, key, version_id=version_id)
    try:
        return bytes(response.read())
    finally:
        response.close()
        response.release_conn()


async def read_dead_letters(stack: SoakStack) -> list[tuple[str, str, str]]:
    """(reason, bucket, key) of every message in the dead-letter queue (consumed)."""
    found = []
    connection = await aio_pika.connect(stack.node.url, timeout=10)
    async with connection:
        channel = await connection.channel()
        queue = await channel.get_queue(stack.settings.amqp.dead_letter_queue, ensure=False)
        while (message := await queue.get(no_ack=False, fail=False, timeout=10)) is not None:
            reason = str((message.headers or {}).get("x-bucketrun-reason", "?"))
            try:
                (parsed,) = parse_message(message.body)
                bucket, key = parsed.bucket, parsed.key
            except (EventError, ValueError):
                bucket, key = "?", "?"
            found.append((reason, bucket, key))
            await message.ack()
    return found


async def observe(stack: SoakStack) -> soak_report.Observed:
    """Everything the verdict needs, read from the API, the records bucket and the broker."""
    jobs = [
        soak_report.JobSeen(
            job["metadata"]["name"],
            (job["metadata"].get("labels") or {}).get(LABEL_SERVICE, "?"),
            (job["metadata"].get("annotations") or {}).get(ANNOTATION_BUCKET, "?"),
            (job["metadata"].get("annotations") or {}).get(ANNOTATION_KEY, "?"),
            (job["metadata"].get("annotations") or {}).get(ANNOTATION_VERSION, "?"),
        )
        for job in await list_jobs(stack)
    ]
    now = await faults.progress(stack)
    return soak_report.Observed(
        jobs,
        await asyncio.to_thread(record_versions, stack),
        await read_dead_letters(stack),
        now.creates,
        now.existing,
        await queue_depths(stack),
    )


# -- the run ---------------------------------------------------------------------------------------------


async def run_soak(
    profile: Profile,
    workdir: Path,
    *,
    node: PrivateRabbitNode | None = None,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Run one soak in *workdir* (on *node*, or a node started here) and return its report."""
    log = log or functools.partial(print, flush=True)
    stack = await SoakStack.start(workdir, node=node, services=SERVICES[: profile.services])
    publisher = Publisher(stack.node.url, stack.settings.amqp.exchange)
    try:
        return await _run(stack, publisher, profile, log)
    finally:
        await publisher.close()
        stack.close()


async def _run(
    stack: SoakStack, publisher: Publisher, profile: Profile, log: Callable[[str], None]
) -> dict[str, Any]:
    origin = time.monotonic()
    runner = faults.FaultRunner(stack, origin, log)
    planned = plan_events(stack, profile.events)
    first, bulk = planned[: profile.slice_events], planned[profile.slice_events :]
    first_jobs = sum(1 for item in first if item.sent.kind == "job")
    bulk_jobs = sum(1 for item in bulk if item.sent.kind == "job")
    control = stack.control
    await asyncio.to_thread(
        lambda: control.set_faults(error_rates=faults.BASE_ERROR_RATES, seed=faults.FAULT_SEED)
    )

    log(f"[soak] phase 1: {len(first)} events, real pods (kubelet run), S3 outage during stage-out")
    sent = await feed(stack, publisher, first, profile.rate)
    await runner.run_one(faults.s3_outage(stack))

    if (ending := await settle(stack, first_jobs)) != "settled":
        log(f"[soak] phase 1 {ending} before its Jobs were all recorded; going on (the report will show it)")
    await asyncio.to_thread(control.set_kubelet, "instant")

    log(f"[soak] phase 2: {len(bulk)} events (kubelet instant) with faults by progress")
    bulk_from, bulk_started = await faults.progress(stack), time.monotonic()
    gate = faults.Gate(0)
    timed, limits = faults.schedule(faults.bulk_faults(stack), first_jobs, bulk_jobs)
    feeding = asyncio.create_task(
        feed(stack, publisher, bulk, profile.rate, gate=gate, jobs_before=first_jobs)
    )
    injecting = asyncio.create_task(runner.run(timed, gate, limits))
    try:
        fed, _ = await asyncio.gather(feeding, injecting)
        sent += fed
    finally:
        for task in (feeding, injecting):
            task.cancel()
        await asyncio.gather(feeding, injecting, return_exceptions=True)
    log(f"[soak] all {len(sent)} events published ({publisher.retries} batch retries); settling")
    settling = time.monotonic()
    ending = await settle(
        stack, first_jobs + bulk_jobs, max(SETTLE_WITHIN, profile.events * SETTLE_PER_EVENT)
    )
    settle_s = round(time.monotonic() - settling, 1)
    if ending != "settled":
        log(f"[soak] {ending} before every Job was created and recorded; reporting as it stands")
    recorded = (await faults.progress(stack)).records - bulk_from.records
    record_rate = round(recorded / max(time.monotonic() - bulk_started, 0.001), 1)
    log(
        f"[soak] phase 2 recorded {recorded} Jobs at {record_rate} Jobs/s (first event to settled); "
        f"{ending} {settle_s} s after the last event was published"
    )
    await asyncio.to_thread(control.clear_faults)
    verifying = time.monotonic()
    observed = await observe(stack)
    verify_s = round(time.monotonic() - verifying, 1)
    log(f"[soak] verification (every Job, record version and dead letter read back) took {verify_s} s")
    shape = {
        "events": profile.events,
        "services": profile.services,
        "rate_per_s": profile.rate,
        "run_slice_events": len(first),
        "bulk_events_kubelet_instant": len(bulk),
        "dispatchers": 2,
        "watchers": 2,
        "publish_batch_retries": publisher.retries,
        "duration_s": round(time.monotonic() - origin, 1),
        "bulk_records_per_s": record_rate,
        "settle_s": settle_s,
        "verify_s": verify_s,
        "ending": ending,
    }
    return soak_report.build_report(sent, observed, runner.records, profile=shape)


def summarise(report: dict[str, Any]) -> tuple[str, list[str]]:
    """The printed table and the list of missed targets."""
    return soak_report.render_table(report), soak_report.broken_targets(report)


# -- command line ----------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m tests.reliability.soak`: run, print the table, write the JSON report."""
    parser = argparse.ArgumentParser(
        prog="python -m tests.reliability.soak", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--events", type=int, default=1000)
    parser.add_argument("--services", type=int, default=5, choices=range(1, len(SERVICES) + 1))
    parser.add_argument(
        "--rate", type=float, default=None, help="events/s (default: 40, or 60 from 5,000 events)"
    )
    parser.add_argument("--run-slice", type=int, default=None, help="events run with real pods")
    parser.add_argument("--report", type=Path, default=None, help="write the JSON report here")
    parser.add_argument("--workdir", type=Path, default=None, help="keep logs here (default: a temp dir)")
    args = parser.parse_args(argv)
    for noisy in ("aiormq", "aio_pika"):  # the soak breaks the broker on purpose: its reconnects are expected
        logging.getLogger(noisy).setLevel(logging.CRITICAL)
    rate = args.rate or (60.0 if args.events >= 5000 else 40.0)
    profile = Profile(args.events, args.services, rate, args.run_slice)
    with contextlib.ExitStack() as stack:
        workdir = args.workdir or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="soak-")))
        try:
            report = asyncio.run(run_soak(profile, workdir))
        except SoakError as error:
            print(f"soak could not run: {error}", file=sys.stderr)
            return 2
    table, broken = summarise(report)
    print(table)
    if args.report:
        args.report.write_text(json.dumps(report, indent=2) + "\n")
        print(f"report written to {args.report}")
    if broken:
        print("TARGETS MISSED:\n  " + "\n  ".join(broken))
        return 1
    print("every target met: 0 lost, 0 duplicate Jobs, 0 duplicate records, every event accounted for")
    return 0


if __name__ == "__main__":
    sys.exit(main())
