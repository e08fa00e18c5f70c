"""bucketrun beside the systems a user would otherwise pick (issue #22), on one local stack, in one run.

    .venv/bin/python bench/peers/run.py [--count 20] [--rate 1] [--burst 100] [--out bench/results]

Starts the local real stack (``bucketrun.devtools.stack.start_stack``: RabbitMQ, MinIO with its AMQP
target, etcd, kube-apiserver, kube-controller-manager, kube-scheduler, the node agent running pods as
local processes), then runs each system on the same uploads, one system at a time, each on buckets of
its own:

- **KEDA ScaledJob** (``make peers`` builds its operator): its CRDs applied, the operator run as a
  local process with the admin's kubeconfig, a queue bound to the exchange MinIO's AMQP target
  publishes to, the input bucket's notifications sent there, and a ScaledJob with KEDA's rabbitmq
  trigger (``mode: QueueLength``, ``value: "1"``: a Job per message) whose Job consumes one message and
  writes the output (bench/peers/keda_job.py). Everything else at KEDA's defaults. Measured at the
  default ``pollingInterval`` (30 s) and at 1 s.
- **bucketrun** as shipped: ``bucketrun services apply``, then ``bucketrun dispatcher`` and
  ``bucketrun watcher`` as processes, a service whose script does the same work.
- **OSCAR** (``make peers`` builds its server): run with its kube backend as a local process that sees
  in-cluster configuration, after the bench made what its Helm chart makes for its Jobs (the claim
  ``oscar-pvc`` holding the supervisor: see ``Oscar``), and a service created through its own API.

For each system: (1) ``count`` uploads at ``rate`` per second: upload → Job created (the watch event
of the Job that processed it) and upload → output written (the output's LastModified), p50/p95/p99;
(2) a burst of ``burst`` uploads: time to drain, Jobs created per upload, uploads never processed;
(3) the same burst with the receiver (KEDA's operator, bucketrun's dispatcher) killed (SIGKILL) a third
of the way in and restarted ``--down`` seconds later: lost, duplicated, drain time; (4) a failing script:
the Jobs it caused, their status, whether an output was written, the end of the script container's log;
(5) CPU seconds and peak RSS of the
system's own processes over all its phases. Writes ``peers.md`` and ``peers.json`` (and ``peers.png``
with matplotlib) into ``--out``.
"""

# ruff: noqa: T201 - a benchmark prints its progress and its figures
from __future__ import annotations

import argparse
import base64
import concurrent.futures
import contextlib
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import pika

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from bucketrun.devtools.stack import NAMESPACE, Stack, StackOptions, start_stack  # noqa: E402

SERVERS = Path(os.environ.get("BUCKETRUN_SERVERS_DIR", Path.home() / ".cache/bucketrun/servers"))
BIN = SERVERS / "bin"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
KEDA_NAMESPACE = "peers-keda"
KEDA_QUEUE = "peers-keda"
SCRIPT = """\
name=$(basename "$INPUT_FILE_PATH")
tr a-z A-Z < "$INPUT_FILE_PATH" > "$TMP_OUTPUT_DIR/$name"
if grep -q FAIL "$INPUT_FILE_PATH"; then echo "$STORAGE_OBJECT_KEY: failing on purpose" >&2; exit 3; fi
echo "upper-cased $STORAGE_OBJECT_KEY"
"""
"""The bucketrun and OSCAR services' script; bench/peers/keda_job.py does the same work. A failing upload
writes its output first and then exits 3, so whether a system uploads a failed script's outputs shows."""


def free_port() -> int:
    """A free TCP port on the loopback interface."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def percentiles(values: list[float]) -> dict[str, float | None]:
    """p50, p95 and p99 (nearest rank) of *values*, None for each when there are none."""
    if not values:
        return {"p50": None, "p95": None, "p99": None}
    ordered = sorted(values)

    def rank(q: float) -> float:
        return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered) + 0.5) - 1))]

    return {"p50": rank(0.50), "p95": rank(0.95), "p99": rank(0.99)}


def wait_until(condition: Callable[[], bool], timeout: float, what: str, interval: float = 0.2) -> None:
    """Until *condition* holds; TimeoutError naming *what* after *timeout* seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout:.0f} s")
        time.sleep(interval)


# --- what the bench observes ------------------------------------------------------------------------


@dataclass
class JobEvent:
    """A Job as the watch saw it."""

    name: str
    added: float
    annotations: dict[str, str]
    finished: str | None = None
    """``Complete``, ``Failed: <reason>``, or None while it runs."""
    failed_pods: int = 0
    event: str = ""
    """The ``EVENT`` variable of its first container (OSCAR passes the MinIO event so)."""


class JobWatch:
    """Every Job of a namespace, with the local time its ADDED event arrived (a thread on the watch)."""

    def __init__(self, stack: Stack, namespace: str) -> None:
        self._stack = stack
        self._path = f"/apis/batch/v1/namespaces/{namespace}/jobs"
        self.jobs: dict[str, JobEvent] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        version = ""
        while not self._stop.is_set():
            url = f"{self._stack.plane.api_url}{self._path}?watch=1&allowWatchBookmarks=true"
            if version:
                url += f"&resourceVersion={version}"
            try:
                context = self._stack.plane.admin_context
                with urllib.request.urlopen(url, timeout=5, context=context) as stream:  # noqa: S310
                    for line in stream:
                        event = json.loads(line)
                        obj = event["object"]
                        version = obj["metadata"].get("resourceVersion", version)
                        if event["type"] in ("ADDED", "MODIFIED", "DELETED"):
                            self._seen(obj, time.time())
                        elif event["type"] == "ERROR":
                            version = ""
            except (TimeoutError, OSError, json.JSONDecodeError):
                continue

    def _seen(self, job: dict[str, Any], now: float) -> None:
        name = job["metadata"]["name"]
        with self._lock:
            entry = self.jobs.get(name)
            if entry is None:
                containers = job["spec"]["template"]["spec"].get("containers") or [{}]
                env = {e.get("name"): e.get("value", "") for e in containers[0].get("env") or []}
                entry = JobEvent(
                    name, now, job["metadata"].get("annotations") or {}, event=env.get("EVENT", "")
                )
                self.jobs[name] = entry
            status = job.get("status") or {}
            entry.failed_pods = max(entry.failed_pods, int(status.get("failed") or 0))
            for condition in status.get("conditions") or []:
                if condition.get("status") != "True":
                    continue
                if condition["type"] == "Complete":
                    entry.finished = "Complete"
                elif condition["type"] == "Failed":
                    entry.finished = f"Failed: {condition.get('reason', '')}"

    def snapshot(self) -> dict[str, JobEvent]:
        """The Jobs seen so far."""
        with self._lock:
            return dict(self.jobs)

    def stop(self) -> None:
        """End the thread (within the watch's 5 s read timeout)."""
        self._stop.set()


@dataclass
class Usage:
    """CPU seconds and peak RSS of a system's processes, summed over every instance it ran."""

    cpu_s: float = 0.0
    peak_rss_mib: dict[str, float] = field(default_factory=dict)

    def sample(self, name: str, pid: int) -> tuple[float, float] | None:
        """CPU seconds so far and peak RSS (MiB) of *pid*, None once it is gone."""
        try:
            stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            return None
        hwm = next((int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM")), 0)
        return (int(stat[11]) + int(stat[12])) / CLOCK_TICKS, hwm / 1024

    def add(self, name: str, cpu: float, hwm: float) -> None:
        """Account a finished instance of *name*."""
        self.cpu_s += cpu
        self.peak_rss_mib[name] = max(self.peak_rss_mib.get(name, 0.0), hwm)


class Proc:
    """A system's process: its log, its usage sampled until it ends."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log: Path, usage: Usage) -> None:
        self.name, self.argv, self.env, self.log, self.usage = name, argv, env, log, usage
        self.process: subprocess.Popen[bytes] | None = None
        self._last: tuple[float, float] = (0.0, 0.0)
        self._sampler: threading.Thread | None = None

    def start(self) -> None:
        """Start it in a session of its own, appending to its log."""
        with self.log.open("ab") as sink:
            self.process = subprocess.Popen(
                self.argv, env=self.env, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True
            )
        self._last = (0.0, 0.0)
        self._sampler = threading.Thread(target=self._sample, args=(self.process,), daemon=True)
        self._sampler.start()

    def _sample(self, process: subprocess.Popen[bytes]) -> None:
        while process.poll() is None:
            now = self.usage.sample(self.name, process.pid)
            if now is not None:
                self._last = now
            time.sleep(0.5)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> None:
        """Signal its process group, wait for it, and account its CPU and RSS."""
        process = self.process
        if process is None:
            return
        now = self.usage.sample(self.name, process.pid)
        if now is not None:
            self._last = now
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)
        if self._sampler is not None:
            self._sampler.join(5)
        self.usage.add(self.name, *self._last)
        self.process = None

    def alive(self) -> bool:
        """Whether it runs."""
        return self.process is not None and self.process.poll() is None

    def tail(self) -> str:
        """The end of its log."""
        return self.log.read_text(errors="replace")[-1500:]


# --- uploads and outputs ----------------------------------------------------------------------------


class Store:
    """The stack's MinIO through boto3, as the admin."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.s3 = boto3.client(
            "s3",
            endpoint_url=f"http://{env['BUCKETRUN_STORAGE__ENDPOINT']}",
            aws_access_key_id=env["BUCKETRUN_STORAGE__ACCESS_KEY"],
            aws_secret_access_key=env["BUCKETRUN_STORAGE__SECRET_KEY"],
            region_name="us-east-1",
        )

    def ensure(self, bucket: str) -> None:
        """Create *bucket* if missing."""
        with contextlib.suppress(self.s3.exceptions.BucketAlreadyOwnedByYou):
            self.s3.create_bucket(Bucket=bucket)

    def upload(self, bucket: str, key: str, body: bytes) -> float:
        """Put one object; the time the put returned."""
        self.s3.put_object(Bucket=bucket, Key=key, Body=body)
        return time.time()

    def outputs(self, bucket: str, prefix: str) -> dict[str, float]:
        """Every object under *prefix*: its key's last part → LastModified (epoch seconds)."""
        found: dict[str, float] = {}
        for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                found[item["Key"].rsplit("/", 1)[-1]] = item["LastModified"].timestamp()
        return found

    def job_of(self, bucket: str, key: str) -> str:
        """The ``job`` metadata of an output (KEDA's Jobs record which Job wrote it)."""
        return str(self.s3.head_object(Bucket=bucket, Key=key).get("Metadata", {}).get("job", ""))


def names(prefix: str, count: int) -> list[str]:
    """The object names of one phase: the same for every system."""
    return [f"{prefix}-{i:04d}.txt" for i in range(count)]


def upload_at_rate(store: Store, bucket: str, keys: list[str], rate: float) -> dict[str, float]:
    """Upload *keys* (under ``in/``) at *rate* per second on a fixed schedule; name → upload time."""
    times: dict[str, float] = {}
    start = time.monotonic()
    for i, name in enumerate(keys):
        delay = start + i / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        times[name] = store.upload(bucket, f"in/{name}", f"upload {name}\n".encode())
    return times


def upload_burst(
    store: Store, bucket: str, keys: list[str], at: Callable[[int], None] | None = None
) -> dict[str, float]:
    """Upload *keys* as fast as 8 threads can; ``at(i)`` is called after the i-th put returns."""
    times: dict[str, float] = {}
    done = 0
    lock = threading.Lock()

    def put(name: str) -> None:
        nonlocal done
        stamp = store.upload(bucket, f"in/{name}", f"upload {name}\n".encode())
        with lock:
            times[name] = stamp
            done += 1
            count = done
        if at is not None:
            at(count)

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        list(pool.map(put, keys))
    return times


# --- one system -------------------------------------------------------------------------------------


class System:
    """What the phases need of a system under test."""

    label: str
    stack: Stack
    namespace: str
    in_bucket: str
    out_bucket: str
    receiver: Proc
    usage: Usage
    watch: JobWatch
    log_container: str | None = None
    """The container of its Jobs' pods that runs the script: whose log the failing-script column shows."""

    def job_for(self, name: str, jobs: dict[str, JobEvent]) -> JobEvent | None:
        """The Job that processed upload *name*."""
        raise NotImplementedError

    def record(self, job: str) -> str:
        """What the system itself recorded about how *job* ended, where it keeps such a record ('')."""
        return ""

    def stop(self) -> None:
        """Stop everything it started."""
        raise NotImplementedError


def measure_rate(system: System, store: Store, count: int, rate: float, timeout: float) -> dict[str, Any]:
    """Phase 1: *count* uploads at *rate*/s; latencies to Job created and to output written."""
    keys = names("rate", count)
    uploaded = upload_at_rate(store, system.in_bucket, keys, rate)
    outputs = wait_outputs(store, system, keys, timeout)
    jobs = system.watch.snapshot()
    to_job, to_output = [], []
    for name, at in uploaded.items():
        job = system.job_for(name, jobs)
        if job is not None:
            to_job.append(job.added - at)
        if name in outputs:
            to_output.append(outputs[name] - at)
    result: dict[str, Any] = {
        "uploads": count,
        "rate_per_s": rate,
        "job_created_s": percentiles(to_job),
        "output_written_s": percentiles(to_output),
        "missing_outputs": count - len(to_output),
    }
    if len(to_output) < count:
        result["pods_without_output"] = pod_reasons(system)
    return result


def pod_reasons(system: System) -> list[str]:
    """Why the pods of the system's namespace ended or wait: each distinct reason and message."""
    status, body = system.stack.plane.request("GET", f"/api/v1/namespaces/{system.namespace}/pods")
    if status != 200:
        return [f"listing pods: HTTP {status}"]
    reasons = set()
    for pod in body.get("items", []):
        pod_status = pod.get("status") or {}
        for condition in pod_status.get("conditions") or []:
            if condition.get("status") == "False" and condition.get("reason"):
                reasons.add(
                    f"pod {condition['type']} False, {condition['reason']}: {condition.get('message', '')}"[
                        :300
                    ]
                )
        for container in pod_status.get("containerStatuses") or []:
            for state in (container.get("state") or {}).values():
                if state.get("reason") not in (None, "Completed"):
                    reasons.add(f"{state.get('reason')}: {state.get('message', '')}".strip()[:300])
    return sorted(reasons)


STALL_SECONDS = 240.0
"""A phase stops waiting once this long passed without a new output: longer than any retry backoff of the
three systems (bucketrun's is capped at 120 s, KEDA polls at most every 30 s), so the outputs still
missing by then are uploads the system lost, not slow ones."""


def wait_outputs(store: Store, system: System, keys: list[str], timeout: float) -> dict[str, float]:
    """Until every output of *keys* is written, *timeout* passes, or ``STALL_SECONDS`` pass without a new
    output; name → LastModified of those written."""
    wanted = set(keys)
    started = time.monotonic()
    progressed, seen = started, 0
    while True:
        found = {k: v for k, v in store.outputs(system.out_bucket, "out/").items() if k in wanted}
        now = time.monotonic()
        if len(found) != seen:
            progressed, seen = now, len(found)
        if len(found) == len(wanted) or now - started > timeout or now - progressed > STALL_SECONDS:
            return found
        time.sleep(0.5)


def measure_burst(
    system: System, store: Store, prefix: str, size: int, timeout: float, *, kill_after: float | None = None
) -> dict[str, Any]:
    """Phases 2 and 3: *size* uploads at once (the receiver SIGKILLed after a third of them and
    restarted *kill_after* seconds later, when given); drain time, Jobs per upload, lost uploads."""
    keys = names(prefix, size)
    before = set(system.watch.snapshot())
    restart: threading.Thread | None = None
    down: dict[str, float] = {}

    def kill(count: int) -> None:
        nonlocal restart
        if kill_after is None or count != max(1, size // 3) or restart is not None:
            return
        down["killed"] = time.time()
        system.receiver.stop(signal.SIGKILL)

        def back() -> None:
            time.sleep(kill_after)
            system.receiver.start()
            down["restarted"] = time.time()

        restart = threading.Thread(target=back)
        restart.start()

    start = time.time()
    uploaded = upload_burst(store, system.in_bucket, keys, kill)
    if restart is not None:
        restart.join()
    outputs = wait_outputs(store, system, keys, timeout)
    time.sleep(2.0)  # Jobs created late (duplicates) are counted too
    jobs = {name: job for name, job in system.watch.snapshot().items() if name not in before}
    processed = [name for name in keys if name in outputs]
    result: dict[str, Any] = {
        "uploads": size,
        "upload_s": max(uploaded.values()) - start,
        "drain_s": (max(outputs.values()) - start) if len(processed) == size else None,
        "jobs_created": len(jobs),
        "jobs_per_upload": len(jobs) / size,
        "never_processed": size - len(processed),
        "uploads_with_job": sum(system.job_for(name, jobs) is not None for name in keys),
        "timeout_s": timeout,
    }
    if kill_after is not None:
        result["receiver_down_s"] = down.get("restarted", 0.0) - down.get("killed", 0.0)
    return result


def measure_failure(system: System, store: Store, observe: float) -> dict[str, Any]:
    """Phase 4: one upload whose script fails; what the user sees after *observe* seconds."""
    before = set(system.watch.snapshot())
    store.upload(system.in_bucket, "in/fail.txt", b"FAIL\n")
    time.sleep(observe)
    jobs = {n: j for n, j in system.watch.snapshot().items() if n not in before}
    outputs = store.outputs(system.out_bucket, "out/")
    first = min(jobs.values(), key=lambda j: j.added, default=None)
    return {
        "jobs": len(jobs),
        "statuses": sorted({j.finished or "running" for j in jobs.values()}),
        "failed_pods": sum(j.failed_pods for j in jobs.values()),
        "output_written": "fail.txt" in outputs,
        "observed_s": observe,
        "log": job_log(system, first.name) if first is not None else "",
        "record": system.record(first.name) if first is not None else "",
    }


def job_log(system: System, job: str, lines: int = 3) -> str:
    """The last *lines* lines of the script container's log in the Job's first pod, as ``kubectl logs``
    shows it to the user ('' when there is no pod or no such container)."""
    plane = system.stack.plane
    namespace = system.namespace
    status, body = plane.request("GET", f"/api/v1/namespaces/{namespace}/pods?labelSelector=job-name%3D{job}")
    pods = sorted((body or {}).get("items", []), key=lambda pod: pod["metadata"]["creationTimestamp"])
    if status != 200 or not pods or system.log_container is None:
        return ""
    pod = pods[0]["metadata"]["name"]
    url = f"{plane.api_url}/api/v1/namespaces/{namespace}/pods/{pod}/log?container={system.log_container}"
    try:
        context = plane.admin_context
        with urllib.request.urlopen(f"{url}&tailLines={lines}", timeout=10, context=context) as answer:  # noqa: S310
            return str(answer.read().decode(errors="replace").strip())
    except (urllib.error.URLError, OSError) as error:
        return f"(no log: {error})"


# --- KEDA -------------------------------------------------------------------------------------------


class Keda(System):
    """KEDA's operator and a ScaledJob on the stack (see the module docstring)."""

    def __init__(self, stack: Stack, store: Store, work: Path, polling: int, usage: Usage) -> None:
        self.label = f"KEDA ScaledJob (pollingInterval {polling} s)"
        self.stack, self.store, self.polling, self.usage = stack, store, polling, usage
        self.in_bucket, self.out_bucket = f"peers-keda{polling}-in", f"peers-keda{polling}-out"
        self.namespace = KEDA_NAMESPACE
        self.log_container = "worker"
        self.work = work
        env = stack.env
        plane = stack.plane
        status, body = plane.request("POST", "/api/v1/namespaces", {"metadata": {"name": KEDA_NAMESPACE}})
        if status not in (201, 409):
            raise RuntimeError(f"creating namespace {KEDA_NAMESPACE}: HTTP {status} {body}")
        plane.kubectl("apply", "--server-side", "-f", str(BIN / "keda-crd"))
        plane.kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd/scaledjobs.keda.sh")
        certs = work / "keda-certs"
        certs.mkdir(parents=True, exist_ok=True)
        cert, key = plane.issue_serving_cert("keda-operator")
        shutil.copy(cert, certs / "tls.crt")
        shutil.copy(key, certs / "tls.key")
        shutil.copy(plane.ca_cert, certs / "ca.crt")
        self.health = free_port()
        argv = [
            str(BIN / "keda-operator"),
            "--leader-elect=false",
            f"--metrics-bind-address=127.0.0.1:{free_port()}",
            f"--health-probe-bind-address=127.0.0.1:{self.health}",
            f"--metrics-service-bind-address=127.0.0.1:{free_port()}",
            f"--cert-dir={certs}",
            f"--ca-dir={certs}",
        ]
        operator_env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(work),
            "KUBECONFIG": env["KUBECONFIG"],
            "WATCH_NAMESPACE": "",
            "POD_NAMESPACE": KEDA_NAMESPACE,
            "KEDA_CLUSTER_OBJECT_NAMESPACE": KEDA_NAMESPACE,
            "OPERATOR_NAME": "keda-operator",
        }
        self.receiver = Proc("keda-operator", argv, operator_env, work / "keda-operator.log", usage)
        self.receiver.start()
        wait_until(self._ready, 120, f"keda-operator ready (log {self.receiver.log})", 0.5)
        self._queue(env)
        for bucket in (self.in_bucket, self.out_bucket):
            store.ensure(bucket)
        store.s3.put_bucket_notification_configuration(
            Bucket=self.in_bucket,
            NotificationConfiguration={
                "QueueConfigurations": [
                    {
                        "Id": "peers-keda",
                        "QueueArn": env["BUCKETRUN_STORAGE__NOTIFY_ARN"],
                        "Events": ["s3:ObjectCreated:*"],
                        "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": "in/"}]}},
                    }
                ]
            },
        )
        self.watch = JobWatch(stack, KEDA_NAMESPACE)
        self._scaled_job(env)

    def _ready(self) -> bool:
        if not self.receiver.alive():
            raise RuntimeError(f"keda-operator exited; its log ends:\n{self.receiver.tail()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.health}/readyz", timeout=2) as answer:
                return int(answer.status) == 200
        except (urllib.error.URLError, OSError):
            return False

    def _queue(self, env: dict[str, str]) -> None:
        """The queue KEDA's trigger counts, bound to the exchange MinIO's AMQP target publishes to; empty."""
        connection = pika.BlockingConnection(pika.URLParameters(env["BUCKETRUN_AMQP__URL"]))
        channel = connection.channel()
        channel.exchange_declare(env["BUCKETRUN_AMQP__EXCHANGE"], "fanout", durable=True)
        channel.queue_declare(KEDA_QUEUE, durable=True)
        channel.queue_bind(KEDA_QUEUE, env["BUCKETRUN_AMQP__EXCHANGE"])
        channel.queue_purge(KEDA_QUEUE)
        connection.close()

    def _scaled_job(self, env: dict[str, str]) -> None:
        secret = {
            "AMQP_URL": env["BUCKETRUN_AMQP__URL"],
            "QUEUE": KEDA_QUEUE,
            "S3_ENDPOINT": env["BUCKETRUN_STORAGE__ENDPOINT"],
            "S3_ACCESS_KEY": env["BUCKETRUN_STORAGE__ACCESS_KEY"],
            "S3_SECRET_KEY": env["BUCKETRUN_STORAGE__SECRET_KEY"],
            "OUTPUT_BUCKET": self.out_bucket,
        }
        name = f"upper-{self.polling}"
        manifests = [
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": f"{name}-env", "namespace": KEDA_NAMESPACE},
                "stringData": secret,
            },
            {
                "apiVersion": "keda.sh/v1alpha1",
                "kind": "TriggerAuthentication",
                "metadata": {"name": f"{name}-rabbitmq", "namespace": KEDA_NAMESPACE},
                "spec": {
                    "secretTargetRef": [{"parameter": "host", "name": f"{name}-env", "key": "AMQP_URL"}]
                },
            },
            {
                "apiVersion": "keda.sh/v1alpha1",
                "kind": "ScaledJob",
                "metadata": {"name": name, "namespace": KEDA_NAMESPACE},
                "spec": {
                    "pollingInterval": self.polling,
                    "jobTargetRef": {
                        "template": {
                            "spec": {
                                "restartPolicy": "Never",
                                "containers": [
                                    {
                                        "name": "worker",
                                        "image": "python:3.12-slim",
                                        "command": [
                                            sys.executable,
                                            str(Path(__file__).with_name("keda_job.py")),
                                        ],
                                        "envFrom": [{"secretRef": {"name": f"{name}-env"}}],
                                        "env": [
                                            {
                                                "name": "JOB_NAME",
                                                "valueFrom": {
                                                    "fieldRef": {"fieldPath": "metadata.labels['job-name']"}
                                                },
                                            }
                                        ],
                                    }
                                ],
                            }
                        }
                    },
                    "triggers": [
                        {
                            "type": "rabbitmq",
                            "metadata": {"queueName": KEDA_QUEUE, "mode": "QueueLength", "value": "1"},
                            "authenticationRef": {"name": f"{name}-rabbitmq"},
                        }
                    ],
                },
            },
        ]
        self.stack.plane.kubectl(
            "apply", "-f", "-", stdin=json.dumps({"apiVersion": "v1", "kind": "List", "items": manifests})
        )
        self.scaled_job = name

    def job_for(self, name: str, jobs: dict[str, JobEvent]) -> JobEvent | None:
        """The Job named in the output's metadata (KEDA's Jobs are not made for one upload)."""
        try:
            job = self.store.job_of(self.out_bucket, f"out/{name}")
        except Exception:  # noqa: BLE001 - no output: no Job to name
            return None
        return jobs.get(job)

    def stop(self) -> None:
        """Delete the ScaledJob and its Jobs, drop the queue binding, stop the operator."""
        with contextlib.suppress(subprocess.CalledProcessError):
            self.stack.plane.kubectl(
                "delete", "scaledjob", "-n", KEDA_NAMESPACE, self.scaled_job, "--wait=true"
            )
            self.stack.plane.kubectl("delete", "jobs", "--all", "-n", KEDA_NAMESPACE, "--wait=false")
        self.store.s3.put_bucket_notification_configuration(
            Bucket=self.in_bucket, NotificationConfiguration={}
        )
        connection = pika.BlockingConnection(pika.URLParameters(self.stack.env["BUCKETRUN_AMQP__URL"]))
        connection.channel().queue_delete(KEDA_QUEUE)
        connection.close()
        self.receiver.stop()
        self.watch.stop()


# --- bucketrun --------------------------------------------------------------------------------------


class Bucketrun(System):
    """bucketrun as shipped: services apply, the dispatcher and the watcher as processes."""

    def __init__(self, stack: Stack, store: Store, work: Path, usage: Usage) -> None:
        self.label = "bucketrun"
        self.stack, self.store, self.usage = stack, store, usage
        self.in_bucket, self.out_bucket = "peers-br-in", "peers-br-out"
        self.namespace = NAMESPACE
        self.log_container = "run"
        fdl = work / "bucketrun-services.yaml"
        script = "\n".join(f"        {line}" for line in SCRIPT.splitlines())
        fdl.write_text(
            "functions:\n  oscar:\n  - peers:\n      name: upper\n      image: busybox:1.36\n"
            f"      script: |\n{script}\n"
            f"      input: [{{storage_provider: minio, path: {self.in_bucket}/in}}]\n"
            f"      output: [{{storage_provider: minio, path: {self.out_bucket}/out}}]\n"
            "      bucketrun: {run_as_user: 1000}\n"
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith("BUCKETRUN_")} | {
            k: v for k, v in stack.env.items() if not k.startswith("STACK_")
        }
        env |= {"BUCKETRUN_SERVICES__PATHS": json.dumps([str(fdl)]), "PYTHONPATH": str(REPO)}
        cli = [sys.executable, "-m", "bucketrun.cli.main"]
        applied = subprocess.run(
            [*cli, "services", "apply", str(fdl)], env=env, capture_output=True, text=True, check=False
        )
        if applied.returncode != 0:
            raise RuntimeError(
                f"bucketrun services apply: exit {applied.returncode}: {applied.stdout}{applied.stderr}"
            )
        self.watch = JobWatch(stack, NAMESPACE)
        dispatcher_env = env | {
            "BUCKETRUN_METRICS__PORT": str(free_port()),
            "BUCKETRUN_METRICS__HOST": "127.0.0.1",
        }
        watcher_env = env | {
            "BUCKETRUN_METRICS__PORT": str(free_port()),
            "BUCKETRUN_METRICS__HOST": "127.0.0.1",
        }
        self.receiver = Proc(
            "dispatcher", [*cli, "dispatcher"], dispatcher_env, work / "dispatcher.log", usage
        )
        self.watcher = Proc("watcher", [*cli, "watcher"], watcher_env, work / "watcher.log", usage)
        self.receiver.start()
        self.watcher.start()
        self._ports = {
            "dispatcher": dispatcher_env["BUCKETRUN_METRICS__PORT"],
            "watcher": watcher_env["BUCKETRUN_METRICS__PORT"],
        }
        for proc in (self.receiver, self.watcher):
            wait_until(
                lambda proc=proc: self._ready(proc), 120, f"bucketrun {proc.name} ready (log {proc.log})", 0.5
            )

    def _ready(self, proc: Proc) -> bool:
        if not proc.alive():
            raise RuntimeError(f"bucketrun {proc.name} exited; its log ends:\n{proc.tail()}")
        try:
            url = f"http://127.0.0.1:{self._ports[proc.name]}/readyz"
            with urllib.request.urlopen(url, timeout=2) as answer:
                return int(answer.status) == 200
        except (urllib.error.URLError, OSError):
            return False

    def job_for(self, name: str, jobs: dict[str, JobEvent]) -> JobEvent | None:
        """The Job whose ``bucketrun.io/key`` annotation names the upload (the first, if several)."""
        mine = [j for j in jobs.values() if j.annotations.get("bucketrun.io/key") == f"in/{name}"]
        return min(mine, key=lambda j: j.added) if mine else None

    def record(self, job: str) -> str:
        """The outcome, exit code, reason and message of the Job's ``status.json``, which the watcher writes
        to ``<records bucket>/<records prefix><service>/<job>/`` (docs/USAGE.md); waits for it up to 30 s."""
        bucket = self.stack.env.get("BUCKETRUN_STORAGE__RECORDS_BUCKET", "bucketrun-records")
        prefix = self.stack.env.get("BUCKETRUN_STORAGE__RECORDS_PREFIX", "records/")
        key = f"{prefix}upper/{job}/status.json"
        found: dict[str, Any] = {}

        def recorded() -> bool:
            try:
                body = self.store.s3.get_object(Bucket=bucket, Key=key)["Body"].read()
            except self.store.s3.exceptions.NoSuchKey:
                return False
            found.update(json.loads(body))
            return True

        try:
            wait_until(recorded, 30, f"{bucket}/{key}", 0.5)
        except TimeoutError as error:
            return f"no record: {error}"
        parts = [f"outcome {found.get('outcome')}", f"exit code {found.get('exit_code')}"]
        parts += [f"{field} {found[field]}" for field in ("reason", "message") if found.get(field)]
        return ", ".join(parts)

    def stop(self) -> None:
        """Stop the dispatcher and the watcher."""
        self.receiver.stop()
        self.watcher.stop()
        self.watch.stop()


# --- OSCAR ------------------------------------------------------------------------------------------

OSCAR_NAMESPACE = "oscar-bench"
OSCAR_SERVICES_NAMESPACE = "oscar-svc"
OSCAR_PVC = "oscar-pvc"
"""The claim OSCAR's Job pods mount at /oscar/bin (its pkg/types.PVCName), as its Helm chart names it."""
OSCAR_PV = "peers-oscar-supervisor"
"""The hostPath PersistentVolume standing for the storage class the chart's claim is provisioned from."""
FAAS_SUPERVISOR_VERSION = "1.5.2"
"""PyPI's faas-supervisor. OSCAR 3.3's chart pins 1.5.7, whose metadata asks for
``webdavclient3 (==3.14.6requests)``, which no pip can install (pip >= 24.1 refuses the specifier, older
pips find no such version); 1.5.2's binary supervisor, MinIO event parsing and S3 up/download are the
same code (diffed), 1.5.7 adds dCache and WebDAV."""
WEBDAVCLIENT_VERSION = "3.14.6"
"""faas-supervisor imports ``webdav3`` whatever the storage, but 1.5.2 does not declare it (the PyInstaller
build bundles it): installed beside it at the version 1.5.7 means."""
PEERS_DIR = SERVERS / "peers"
"""Where the bench installs what the peers need at run time (outside the checkout)."""
_IN_CLUSTER = "/run/secrets/kubernetes.io/serviceaccount"  # /var/run is a link to /run
SUPERVISOR_WRAPPER = """\
#!/bin/sh
# OSCAR's `supervisor` for bench/peers/run.py: PyPI's faas-supervisor {version} (in {venv}) in place of
# the PyInstaller build of it that OSCAR's Helm chart downloads into oscar-pvc.
# faas-supervisor reads the service's configuration and script at the fixed paths
# /oscar/config/function_config.yaml and /oscar/config/script.sh, where the pod mounts the service's
# ConfigMap (volume oscar-config). The node agent cannot mount: it runs the pod's processes on this host
# and rewrites mountPaths only in env values, command, args and workingDir, and keeps that volume at
# $HOME/../volumes/oscar-config (the local runner's workdir layout). When those files are absent,
# faas-supervisor takes both from the environment (FUNCTION_CONFIG and SCRIPT, base64: its binary
# mode's other input), so this wrapper passes them that way; faas-supervisor itself runs unchanged.
config="$HOME/../volumes/oscar-config"
for file in function_config.yaml script.sh; do
    if [ ! -f "$config/$file" ]; then
        echo "supervisor (bench wrapper): $config/$file not found: not run by the node agent?" >&2
        exit 1
    fi
done
FUNCTION_CONFIG=$(base64 -w0 < "$config/function_config.yaml")
SCRIPT=$(base64 -w0 < "$config/script.sh")
export FUNCTION_CONFIG SCRIPT
exec {python} -m faassupervisor.supervisor
"""
"""The ``supervisor`` put into oscar-pvc (its comments say what it adapts and why)."""


def faas_supervisor() -> Path:
    """PyPI's faas-supervisor in a virtualenv under PEERS_DIR (installed once) and the ``supervisor``
    wrapper that runs it; the wrapper's path."""
    home = PEERS_DIR / f"faas-supervisor-{FAAS_SUPERVISOR_VERSION}"
    venv = home / "venv"
    python = venv / "bin" / "python"
    probe = [str(python), "-c", "import faassupervisor.supervisor, webdav3.client"]
    if not python.is_file() or subprocess.run(probe, capture_output=True, check=False).returncode != 0:
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True, capture_output=True)
        install = [
            *(str(python), "-m", "pip", "install", "-q"),
            f"faas-supervisor=={FAAS_SUPERVISOR_VERSION}",
            f"webdavclient3=={WEBDAVCLIENT_VERSION}",
        ]
        done = subprocess.run(install, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"pip install faas-supervisor: exit {done.returncode}: {done.stderr[-800:]}")
    wrapper = home / "supervisor"
    wrapper.write_text(
        SUPERVISOR_WRAPPER.format(version=FAAS_SUPERVISOR_VERSION, venv=venv, python=shlex.quote(str(python)))
    )
    wrapper.chmod(0o755)
    return wrapper


class Oscar(System):
    """OSCAR's server with its kube backend, as a local process that sees in-cluster configuration.

    OSCAR reads ``rest.InClusterConfig()``: ``KUBERNETES_SERVICE_HOST``/``PORT`` and a ServiceAccount
    token and CA under /var/run/secrets/kubernetes.io/serviceaccount. It runs under ``unshare -m``: in
    its private mount namespace a tmpfs covers /run and the token, CA and namespace of its ServiceAccount
    (bound to cluster-admin, as broad as its Helm chart's ClusterRole) are bind-mounted there; the
    machine's own /run is untouched. Its MinIO webhook goes to ``http://OSCAR_NAME.OSCAR_NAMESPACE:
    OSCAR_SERVICE_PORT/job/<service>`` (a cluster Service's DNS name); with OSCAR_NAME ``127.0.0`` and
    OSCAR_NAMESPACE ``1`` (used for nothing else) that is this process's address. Its services are
    created through its own API (``POST /system/services``), which creates the buckets, registers the
    webhook in MinIO (and restarts MinIO, as OSCAR does) and subscribes the input folder.

    Its Jobs' pods run ``echo $EVENT | /oscar/bin/supervisor``, the supervisor (faas-supervisor) coming
    from the PersistentVolumeClaim ``oscar-pvc`` that OSCAR's Helm chart creates in the services
    namespace and fills with its ``populate-volume-job``. Before OSCAR starts, the bench makes the same:
    a hostPath PersistentVolume (the chart's claim is provisioned from the cluster's storage class; this
    stack has none), the chart's claim, bound to it by the controller manager, and the chart's Job
    (same name, container, mount at /data) copying ``SUPERVISOR_WRAPPER`` in, which runs PyPI's
    faas-supervisor. The node agent mounts the bound claim as a kubelet would.
    """

    def __init__(self, stack: Stack, store: Store, work: Path, usage: Usage) -> None:
        self.label = f"OSCAR {(BIN / 'oscar.version').read_text().strip()}"
        self.stack, self.store, self.usage = stack, store, usage
        self.in_bucket, self.out_bucket = "peers-oscar-in", "peers-oscar-out"
        self.namespace = OSCAR_SERVICES_NAMESPACE
        self.log_container = "oscar-container"
        plane = stack.plane
        for namespace in (OSCAR_NAMESPACE, OSCAR_SERVICES_NAMESPACE):
            status, body = plane.request("POST", "/api/v1/namespaces", {"metadata": {"name": namespace}})
            if status not in (201, 409):
                raise RuntimeError(f"creating namespace {namespace}: HTTP {status} {body}")
        self._supervisor_volume(work / "oscar-pv")
        account = {"metadata": {"name": "oscar", "namespace": OSCAR_NAMESPACE}}
        plane.request("POST", f"/api/v1/namespaces/{OSCAR_NAMESPACE}/serviceaccounts", account)
        binding = {
            "metadata": {"name": "peers-oscar"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": "cluster-admin",
            },
            "subjects": [{"kind": "ServiceAccount", "name": "oscar", "namespace": OSCAR_NAMESPACE}],
        }
        plane.request("POST", "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings", binding)
        status, body = plane.request(
            "POST",
            f"/api/v1/namespaces/{OSCAR_NAMESPACE}/serviceaccounts/oscar/token",
            {"spec": {"expirationSeconds": 86400}},
        )
        if status != 201:
            raise RuntimeError(f"token of ServiceAccount {OSCAR_NAMESPACE}/oscar: HTTP {status} {body}")
        secrets_dir = work / "oscar-serviceaccount"
        secrets_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        (secrets_dir / "token").write_text(body["status"]["token"])
        (secrets_dir / "namespace").write_text(OSCAR_NAMESPACE)
        shutil.copy(plane.ca_cert, secrets_dir / "ca.crt")
        self.port = free_port()
        self.password = os.urandom(12).hex()
        env = stack.env
        api = plane.api_url.removeprefix("https://")
        oscar_env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(work),
            "KUBERNETES_SERVICE_HOST": api.rsplit(":", 1)[0],
            "KUBERNETES_SERVICE_PORT": api.rsplit(":", 1)[1],
            "OSCAR_USERNAME": "oscar",
            "OSCAR_PASSWORD": self.password,
            "MINIO_ENDPOINT": f"http://{env['BUCKETRUN_STORAGE__ENDPOINT']}",
            "MINIO_ACCESS_KEY": env["BUCKETRUN_STORAGE__ACCESS_KEY"],
            "MINIO_SECRET_KEY": env["BUCKETRUN_STORAGE__SECRET_KEY"],
            "MINIO_TLS_VERIFY": "false",
            "OSCAR_NAME": "127.0.0",
            "OSCAR_NAMESPACE": "1",
            "OSCAR_SERVICE_PORT": str(self.port),
            "OSCAR_SERVICES_NAMESPACE": OSCAR_SERVICES_NAMESPACE,
        }
        mount = (
            f"mount -t tmpfs -o mode=755 tmpfs /run && mkdir -p {_IN_CLUSTER}"
            f' && mount --bind "$1" {_IN_CLUSTER} && exec "$2"'
        )
        argv = ["unshare", "-m", "--propagation", "private", "sh", "-c", mount, "oscar", str(secrets_dir)]
        argv.append(str(BIN / "oscar"))
        self.receiver = Proc("oscar", argv, oscar_env, work / "oscar.log", usage)
        self.receiver.start()
        wait_until(self._ready, 60, f"OSCAR ready (log {self.receiver.log})", 0.5)
        self.watch = JobWatch(stack, OSCAR_SERVICES_NAMESPACE)
        self._service()

    def _supervisor_volume(self, directory: Path) -> None:
        """What OSCAR's Helm chart makes for its Jobs: the claim ``oscar-pvc`` (bound here to a hostPath
        volume on *directory*), filled with the supervisor by the chart's ``populate-volume-job``."""
        wrapper = faas_supervisor()
        shutil.rmtree(directory, ignore_errors=True)
        directory.mkdir(parents=True)
        plane = self.stack.plane
        volume: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": "PersistentVolume",
            "metadata": {"name": OSCAR_PV},
            "spec": {
                "capacity": {"storage": "2Gi"},
                "accessModes": ["ReadWriteMany"],
                "persistentVolumeReclaimPolicy": "Retain",
                "storageClassName": "",
                "hostPath": {"path": str(directory), "type": "Directory"},
            },
        }
        # oscar/templates/oscar-volume.yaml (storageClassName unset: the chart's default)
        claim: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {"name": OSCAR_PVC, "namespace": OSCAR_SERVICES_NAMESPACE},
            "spec": {"accessModes": ["ReadWriteMany"], "resources": {"requests": {"storage": "2Gi"}}},
        }
        for path, body in (
            ("/api/v1/persistentvolumes", volume),
            (f"/api/v1/namespaces/{OSCAR_SERVICES_NAMESPACE}/persistentvolumeclaims", claim),
        ):
            status, answer = plane.request("POST", path, body)
            if status != 201:
                raise RuntimeError(
                    f"creating {body['kind']} {body['metadata']['name']}: HTTP {status} {answer}"
                )
        claim_path = f"/api/v1/namespaces/{OSCAR_SERVICES_NAMESPACE}/persistentvolumeclaims/{OSCAR_PVC}"
        wait_until(
            lambda: (plane.request("GET", claim_path)[1] or {}).get("status", {}).get("phase") == "Bound",
            60,
            f"claim {OSCAR_PVC} bound to {OSCAR_PV}",
        )
        populate = {  # oscar/templates/populate-oscar-volume-job.yaml, its downloader a local copy
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"name": "populate-volume-job", "namespace": OSCAR_SERVICES_NAMESPACE},
            "spec": {
                "ttlSecondsAfterFinished": 120,
                "template": {
                    "spec": {
                        "restartPolicy": "Never",
                        "containers": [
                            {
                                "name": "bin-downloader",
                                "image": "ghcr.io/grycap/oscar-bin-downloader:v3.3.0",
                                "command": ["/bin/sh", "-c"],
                                "args": [
                                    'mkdir -p /data/alpine && cp "$SUPERVISOR" /data/supervisor'
                                    ' && cp "$SUPERVISOR" /data/alpine/supervisor'
                                    " && chmod 755 /data/supervisor /data/alpine/supervisor"
                                ],
                                "env": [
                                    {"name": "FAAS_SUPERVISOR_VERSION", "value": FAAS_SUPERVISOR_VERSION},
                                    {"name": "SUPERVISOR", "value": str(wrapper)},
                                ],
                                "volumeMounts": [{"name": "oscar-vol", "mountPath": "/data"}],
                            }
                        ],
                        "volumes": [{"name": "oscar-vol", "persistentVolumeClaim": {"claimName": OSCAR_PVC}}],
                    }
                },
            },
        }
        status, answer = plane.request(
            "POST", f"/apis/batch/v1/namespaces/{OSCAR_SERVICES_NAMESPACE}/jobs", populate
        )
        if status != 201:
            raise RuntimeError(f"creating populate-volume-job: HTTP {status} {answer}")
        job_path = f"/apis/batch/v1/namespaces/{OSCAR_SERVICES_NAMESPACE}/jobs/populate-volume-job"

        def populated() -> bool:
            conditions = (plane.request("GET", job_path)[1] or {}).get("status", {}).get("conditions") or []
            ended = {c["type"] for c in conditions if c.get("status") == "True"}
            if "Failed" in ended:
                raise RuntimeError(f"populate-volume-job failed: {'; '.join(pod_reasons(self))}")
            return "Complete" in ended

        wait_until(populated, 120, "populate-volume-job complete")
        if not os.access(directory / "supervisor", os.X_OK):
            raise RuntimeError(f"populate-volume-job completed, but {directory}/supervisor is not there")

    def _call(self, method: str, path: str, body: Any = None) -> tuple[int, str]:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", data=data, method=method)
        token = base64.b64encode(f"oscar:{self.password}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
        request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=120) as answer:  # noqa: S310
                return int(answer.status), answer.read().decode(errors="replace")
        except urllib.error.HTTPError as error:
            with error:  # an error answer holds its connection open until closed
                return error.code, error.read().decode(errors="replace")

    def _ready(self) -> bool:
        if not self.receiver.alive():
            raise RuntimeError(f"OSCAR exited; its log ends:\n{self.receiver.tail()}")
        try:
            return self._call("GET", "/health")[0] == 200
        except (urllib.error.URLError, OSError):
            return False

    def _service(self) -> None:
        service = {
            "name": "upper",
            "image": "busybox:1.36",
            "script": SCRIPT,
            "input": [{"storage_provider": "minio.default", "path": f"{self.in_bucket}/in"}],
            "output": [{"storage_provider": "minio.default", "path": f"{self.out_bucket}/out"}],
        }
        status, text = self._call("POST", "/system/services", service)
        if status not in (200, 201):
            raise RuntimeError(f"OSCAR POST /system/services: HTTP {status}: {text[:500]}")
        # OSCAR restarted MinIO to load the webhook target: wait until it answers again
        wait_until(self._minio_up, 60, "MinIO back after OSCAR restarted it", 0.5)

    def _minio_up(self) -> bool:
        try:
            self.store.s3.head_bucket(Bucket=self.in_bucket)
        except Exception:  # noqa: BLE001 - not up yet
            return False
        return True

    def job_for(self, name: str, jobs: dict[str, JobEvent]) -> JobEvent | None:
        """The Job whose ``EVENT`` names the upload."""
        for job in jobs.values():
            if f"in/{name}" in job.event or f"in%2F{name}" in job.event:
                return job
        return None

    def stop(self) -> None:
        """Stop OSCAR (its service and webhook stay: the stack is thrown away after the run)."""
        self.receiver.stop()
        self.watch.stop()


def oscar_or_reason(stack: Stack, store: Store, work: Path, usage: Usage) -> Oscar:
    """OSCAR, or RuntimeError saying what `make peers` left instead of its server."""
    if not (BIN / "oscar").is_file():
        reason = BIN / "oscar.unavailable"
        raise RuntimeError(
            reason.read_text().strip() if reason.is_file() else "oscar not built: run `make peers`"
        )
    return Oscar(stack, store, work, usage)


# --- the run ----------------------------------------------------------------------------------------


def run_system(
    make: Callable[[Usage], System], args: argparse.Namespace, store: Store, log: Callable[[str], None]
) -> dict[str, Any]:
    """Every phase for one system; an exception in one phase is recorded and the next phase runs."""
    usage = Usage()
    result: dict[str, Any] = {}
    try:
        system = make(usage)
    except Exception as error:  # noqa: BLE001 - the report says what stopped it
        return {"error": f"{type(error).__name__}: {error}"}
    result["system"] = system.label
    phases: list[tuple[str, Callable[[], dict[str, Any]]]] = [
        ("rate", lambda: measure_rate(system, store, args.count, args.rate, args.timeout)),
        ("burst", lambda: measure_burst(system, store, "burst", args.burst, args.timeout)),
        (
            "kill",
            lambda: measure_burst(system, store, "kill", args.burst, args.timeout, kill_after=args.down),
        ),
        ("failure", lambda: measure_failure(system, store, args.observe)),
    ]
    try:
        for name, phase in phases:
            if name not in args.phases:
                continue
            log(f"{system.label}: {name} ...")
            started = time.monotonic()
            try:
                result[name] = phase()
            except Exception as error:  # noqa: BLE001 - recorded, the other phases still run
                result[name] = {"error": f"{type(error).__name__}: {error}"}
            took = time.monotonic() - started
            log(f"{system.label}: {name} done in {took:.0f} s: {json.dumps(result[name])}")
    finally:
        system.stop()
    result["cpu_s"] = round(usage.cpu_s, 2)
    result["peak_rss_mib"] = {k: round(v, 1) for k, v in usage.peak_rss_mib.items()}
    return result


def parse_args() -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--count", type=int, default=20, help="uploads at a fixed rate (phase 1)")
    parser.add_argument("--rate", type=float, default=1.0, help="uploads per second in phase 1")
    parser.add_argument("--burst", type=int, default=1000, help="uploads of each burst (phases 2 and 3)")
    parser.add_argument("--down", type=float, default=10.0, help="seconds the receiver stays down (phase 3)")
    parser.add_argument("--timeout", type=float, default=1200.0, help="seconds a phase waits for its outputs")
    parser.add_argument("--observe", type=float, default=90.0, help="seconds the failing upload is watched")
    parser.add_argument("--systems", default="keda30,keda1,bucketrun,oscar", help="comma-separated, in order")
    parser.add_argument("--phases", default="rate,burst,kill,failure", help="comma-separated")
    parser.add_argument("--work", type=Path, default=REPO / ".bucketrun-peers")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    parser.add_argument(
        "--render", type=Path, help="only write peers.md and peers.png again from this peers.json"
    )
    return parser.parse_args()


def main() -> int:
    """Run the systems, write the report (after each system, so a run stopped part-way keeps those)."""
    args = parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.render is not None:
        report = json.loads(args.render.read_text())
        (args.out / "peers.md").write_text(markdown(report))
        with contextlib.suppress(ImportError):
            plot(report, args.out / "peers.png")
        return 0
    args.phases = set(args.phases.split(","))
    args.work.mkdir(parents=True, exist_ok=True)
    started = datetime.now(UTC)
    log_file = (args.work / "peers.log").open("a")

    def log(line: str) -> None:
        stamped = f"{datetime.now(UTC):%H:%M:%S} {line}"
        print(stamped, flush=True)
        print(stamped, file=log_file, flush=True)

    load_at_start = os.getloadavg()[0]
    results: dict[str, Any] = {}

    def write_report() -> dict[str, Any]:
        report = {
            "started": started.isoformat(timespec="seconds"),
            "command": shlex.join([Path(sys.executable).name, *sys.argv]),
            "machine": f"{os.cpu_count()} cores, load average at start {load_at_start:.1f}",
            "versions": versions(),
            "args": {k: (sorted(v) if isinstance(v, set) else str(v)) for k, v in vars(args).items()},
            "results": results,
        }
        (args.out / "peers.json").write_text(json.dumps(report, indent=2))
        (args.out / "peers.md").write_text(markdown(report))
        return report

    log("starting the local stack ...")
    stack = start_stack(StackOptions(args.work / "stack", fsync=False), out=sys.stdout)
    try:
        store = Store(stack.env)
        makers: dict[str, Callable[[Usage], System]] = {
            "bucketrun": lambda usage: Bucketrun(stack, store, args.work, usage),
        }
        for polling in (30, 1):
            makers[f"keda{polling}"] = lambda usage, polling=polling: keda_or_reason(
                stack, store, args.work, polling, usage
            )
        makers["oscar"] = lambda usage: oscar_or_reason(stack, store, args.work, usage)
        for name in args.systems.split(","):
            results[name] = run_system(makers[name], args, store, log)
            results[name].setdefault("system", name)
            write_report()
    finally:
        stack.stop()
        log_file.close()
    report = write_report()
    with contextlib.suppress(ImportError):
        plot(report, args.out / "peers.png")
    print((args.out / "peers.md").read_text())
    return 0


def keda_or_reason(stack: Stack, store: Store, work: Path, polling: int, usage: Usage) -> Keda:
    """KEDA, or RuntimeError saying what `make peers` left instead of its operator."""
    if not (BIN / "keda-operator").is_file():
        reason = BIN / "keda-operator.unavailable"
        raise RuntimeError(
            reason.read_text().strip() if reason.is_file() else "keda-operator not built: run `make peers`"
        )
    return Keda(stack, store, work, polling, usage)


def versions() -> dict[str, str]:
    """The version stamp of every binary used."""
    found = {}
    for name in ("keda-operator", "oscar", "minio", "kube-apiserver"):
        stamp = BIN / f"{name}.version"
        found[name] = stamp.read_text().strip() if stamp.is_file() else "not built"
    return found


def _fmt(value: float | None, digits: int = 1) -> str:
    """*value* with *digits* decimals; below 1 (a latency in seconds) two significant ones, not 0.0."""
    if value is None:
        return "—"
    if digits and 0 < abs(value) < 1:
        return f"{value:.2g}"
    return f"{value:.{digits}f}"


HOW_TO_READ = [
    "## How each system runs here, and how to read the figures",
    "",
    "- The same object names, contents and schedule go to each system's own buckets, one system at a time",
    "  on one stack. Job created: the local time the Job's ADDED watch event arrived. Output: the output",
    "  object's LastModified (the same clock). CPU and peak RSS: the system's own processes only (KEDA's",
    "  operator; bucketrun's dispatcher and watcher; OSCAR's server), summed over restarts; Jobs' pods are",
    "  not counted. The node agent runs every system's pods as local processes on the same 2 cores, so the",
    "  drain times of the bursts are mostly pod execution, the same work for each system. etcd runs",
    "  without fsync here, for every system alike.",
    "- **bucketrun** as shipped: `bucketrun services apply` points the input bucket's notifications at",
    "  MinIO's AMQP target, which the stack configures with `queue_dir` as deploy/ does, so MinIO keeps",
    "  the events while RabbitMQ is away. MinIO delivers such a target from its store in a loop of its",
    "  own, not as the PUT completes: that is most of bucketrun's upload -> Job created here (`make bench`",
    "  measured MinIO's PUT -> message at about 1.7 s p50 through the store, 2 ms without one). KEDA's",
    "  queue is fed by the same target. The dispatcher and the watcher run as processes.",
    "- **KEDA ScaledJob**, as its Scaling Jobs documentation describes: the rabbitmq trigger",
    "  (`mode: QueueLength`, `value: 1`) on a queue bound to the exchange MinIO's AMQP target publishes to;",
    "  each Job takes one message, writes the output, then acknowledges it (bench/peers/keda_job.py). Every",
    "  other field at its default (maxReplicaCount 100, backoffLimit 6, the default scaling strategy). Its",
    "  Jobs are not made for one upload: the output's metadata names the Job that processed it. The default",
    "  `pollingInterval` is 30 s; its documentation names no lower value to use for latency that this bench",
    "  found, so the second row uses 1 s, the smallest it accepts. A failing message returns to the queue",
    "  unacknowledged, so the Job's next pods (and later Jobs) take the same upload again.",
    "- **OSCAR**: its server with the kube backend, in-cluster configuration through a private mount",
    "  (`unshare -m`), its MinIO webhook, its service created through its own API. OSCAR registers the",
    "  webhook target with an endpoint and a token only (no `queue_dir`), so MinIO keeps no event it could",
    "  not deliver: while the target is marked offline, MinIO drops the events (its log says `not connected",
    '  to target server/service` for `targetID="upper:webhook"`). Its Job pods run',
    "  `echo $EVENT | /oscar/bin/supervisor`, the supervisor (faas-supervisor) coming from the",
    "  PersistentVolumeClaim `oscar-pvc` that its Helm chart creates in the services namespace (`oscar-svc`)",
    "  and fills with its `populate-volume-job`. The bench makes the same before OSCAR starts: the chart's",
    "  claim, bound to a hostPath PersistentVolume (the chart's claim is provisioned from the cluster's",
    "  default storage class; this stack has none), and the chart's Job (its name, container and mount at",
    "  /data) copying in a `supervisor` that runs PyPI's faas-supervisor 1.5.2 with webdavclient3 3.14.6",
    "  (OSCAR 3.3's chart pins 1.5.7, whose metadata no pip can install; its binary-supervisor, MinIO and",
    "  S3 code is 1.5.2's). The node agent mounts the bound claim's host path as a kubelet would.",
    "  faas-supervisor reads the service's configuration and script at the fixed paths",
    "  /oscar/config/function_config.yaml and /oscar/config/script.sh, which a local process does not see",
    "  (the node agent rewrites mount paths only in env values, command, args and workingDir); the",
    "  `supervisor` wrapper reads both from the pod's ConfigMap volume and passes them through",
    "  faas-supervisor's own environment inputs (FUNCTION_CONFIG, SCRIPT), so the script runs from",
    "  `$TMP_INPUT_DIR/script.sh` instead; faas-supervisor itself is unchanged. Its binary supervisor reads",
    "  the script's output but never its exit status, so a failing script's Job completes, whatever the",
    "  script left in `$TMP_OUTPUT_DIR` is uploaded, and the pod's log is the user's only sign.",
    "- Failing script: the script writes its output and then exits 3, so the column shows whether a",
    "  failed script's outputs are uploaded (bucketrun: only after success, its default; KEDA's Job does",
    "  its own upload, after success). It gives the Jobs the upload caused, how they ended, their failed",
    "  pods, whether an output was written, and the last lines of the script container's log in the",
    "  first Job's first pod, as `kubectl logs` shows them; for bucketrun also its job record",
    "  (`status.json`, which the watcher writes under the records bucket's `records/<service>/<job>/`):",
    "  outcome, exit code, reason, message.",
    "- Issue #22 asks for OSCAR v4: the Go module proxy refuses github.com/grycap/oscar/v4 at every",
    "  version, so this is v3.3.0, the newest OSCAR it serves (`make peers`, .ci/peers.env).",
    "",
]
"""The fixed part of peers.md: what the table's figures are and how each system was set up."""


def markdown(report: dict[str, Any]) -> str:
    """The table: a row per system, a column per measure; then what could not run, and how to rerun."""
    rows = []
    notes = []
    for result in report["results"].values():
        label = result.get("system", "?")
        if "rate" not in result and "error" in result:
            notes.append(f"- **{label}**: {result['error']}")
            rows.append(f"| {label} | not run (below) |" + " |" * 9)
            continue
        cells = [label]
        rate = result.get("rate", {})
        for measure in ("job_created_s", "output_written_s"):
            p = rate.get(measure, {})
            cells.append(f"{_fmt(p.get('p50'))} / {_fmt(p.get('p95'))} / {_fmt(p.get('p99'))}" if p else "—")
        for phase in ("burst", "kill"):
            b = result.get(phase, {})
            if "error" in b:
                notes.append(f"- **{label}**, {phase}: {b['error']}")
            drain = (
                _fmt(b.get("drain_s"), 0)
                if b.get("drain_s") is not None
                else f"not drained (no new output for {STALL_SECONDS:.0f} s, "
                f"or {_fmt(b.get('timeout_s'), 0)} s in all)"
            )
            cells.append(("error" if "error" in b else drain) if b else "—")
            cells.append(f"{b['jobs_created']} ({b['jobs_per_upload']:.2f})" if "jobs_created" in b else "—")
            cells.append(
                f"{b['never_processed']} ({b['uploads'] - b['uploads_with_job']} without a Job)"
                if "never_processed" in b
                else "—"
            )
        failure = result.get("failure", {})
        cells.append(describe_failure(failure))
        if rate.get("pods_without_output"):
            reasons = "; ".join(rate["pods_without_output"])
            missing = f"{rate['missing_outputs']} of {rate['uploads']} uploads got no output"
            notes.append(f"- **{label}**: phase 1: {missing}; its pods: {reasons or 'none'}")
        rss = ", ".join(f"{k} {v:.0f}" for k, v in result.get("peak_rss_mib", {}).items())
        cells.append(f"{_fmt(result.get('cpu_s'))} s; {rss}")
        rows.append("| " + " | ".join(cells) + " |")
    args = report["args"]
    header = (
        "| system | upload → Job created p50/p95/p99 (s) | upload → output p50/p95/p99 (s) "
        "| burst: drain (s) | burst: Jobs (per upload) | burst: never processed "
        "| receiver killed: drain (s) | killed: Jobs (per upload) | killed: never processed "
        "| failing script | CPU; peak RSS (MiB) |\n" + "|---" * 11 + "|"
    )
    lines = [
        "# bucketrun beside KEDA ScaledJob and OSCAR (issue #22)",
        "",
        f"One run, started {report['started']} on {report['machine']}; every figure below is from it.",
        f"Versions: {', '.join(f'{k} {v}' for k, v in report['versions'].items())}.",
        f"Phase 1: {args['count']} uploads at {args['rate']}/s. Bursts: {args['burst']} uploads each; in the "
        f"second, the receiver is SIGKILLed a third of the way in and restarted {args['down']} s later. "
        f"A phase waits at most {args['timeout']} s for its outputs, and stops once {STALL_SECONDS:.0f} s "
        "pass without a new one; the failing upload is watched "
        f"{args['observe']} s.",
        "",
        header,
        *rows,
        "",
        *HOW_TO_READ,
        "## What could not run",
        "",
        *(notes or ["Nothing."]),
        "",
        "## Reproduce",
        "",
        "```sh",
        "make servers peers",
        f".venv/bin/{report['command']}",
        "```",
        "",
    ]
    return "\n".join(lines)


def describe_failure(failure: dict[str, Any]) -> str:
    """The failing-script cell: the Jobs it caused, their end, failed pods, and whether an output came."""
    if "jobs" not in failure:
        return str(failure.get("error", "—"))
    statuses = ", ".join(failure["statuses"])
    output = "yes" if failure["output_written"] else "no"
    cell = f"{failure['jobs']} Jobs ({statuses}), {failure['failed_pods']} failed pods, output: {output}"
    log = " ⏎ ".join(line.strip() for line in str(failure.get("log", "")).splitlines() if line.strip())
    if log:
        shown = log if len(log) <= 240 else f"…{log[-240:]}"
        # a table cell: no pipe, and no backquote to end the code span
        cell += f"; its log ends `{shown.replace('|', '/').replace('`', chr(39))}`"
    if failure.get("record"):
        cell += f"; its record: {str(failure['record'])[:300].replace('|', '/')}"
    return cell


def plot(report: dict[str, Any], path: Path) -> None:
    """Upload → output p50/p95/p99 per system, as bars."""
    import matplotlib  # noqa: PLC0415 - optional

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    systems = [
        r
        for r in report["results"].values()
        if r.get("rate", {}).get("output_written_s", {}).get("p50") is not None
    ]
    if not systems:
        return
    figure, axes = plt.subplots(figsize=(8, 4))
    width = 0.25
    for i, q in enumerate(("p50", "p95", "p99")):
        values = [r["rate"]["output_written_s"][q] or 0.0 for r in systems]
        axes.bar([x + i * width for x in range(len(systems))], values, width, label=q)
    axes.set_xticks(
        [x + width for x in range(len(systems))],
        [r["system"].replace(" (", "\n(") for r in systems],
        fontsize=8,
    )
    axes.set_ylabel("upload → output written (s)")
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)


if __name__ == "__main__":
    sys.exit(main())
