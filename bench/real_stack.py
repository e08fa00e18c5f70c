"""The bench's servers on the real stack: etcd, kube-apiserver, kube-controller-manager, kube-scheduler,
the node agent, RabbitMQ and MinIO, as ``bucketrun stack run`` starts them (``bucketrun.devtools.stack``).

``started_real_stack`` yields the same ``bench_dispatch.Stack`` the emulator gives, with a ``RealControl``
in place of the emulator's control: the bench's phases run unchanged on either. What differs:

- **request counts** come from kube-apiserver's ``apiserver_request_total`` (``/metrics``), which has no
  namespace label: a namespace's counts are the increase since the bench created it (the phases run one
  at a time, and the counted writes are the Job and ConfigMap writes only clients make);
- **between phases** nothing is emptied (deleting thousands of Jobs is work for the same control plane
  the next phase measures): ``reset_namespace`` waits instead until the control plane is quiet again, the
  Job controller and the scheduler done with the phase's Jobs, and records how long that took;
- **kubelet modes** are the node agent's faults (``hold`` = off, ``instant``);
- **CPU** is read per process group (each server runs in a session of its own), for every server.

etcd syncs its writes (``fsync=True``) unless asked otherwise: production's etcd does, and an API
server's create costs what its etcd commit costs.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from bucketrun.devtools.control_plane import ServersNotBuiltError, find_binaries
from bucketrun.devtools.minio_server import AmqpTarget, Credentials, MinioServer, built, minio_environment
from bucketrun.devtools.moto_server import free_port
from bucketrun.devtools.processes import stop_group
from bucketrun.devtools.rabbit_node import private_node_supported
from bucketrun.devtools.stack import EXCHANGE, StackOptions, start_stack
from bucketrun.devtools.stack import Stack as DevStack

CLOCK_TICKS: Final = os.sysconf("SC_CLK_TCK")
NAMESPACE_READY_TIMEOUT: Final = 30.0
"""Seconds a new namespace may take to get its ``default`` ServiceAccount and ``kube-root-ca.crt``."""
QUIET_CORE_SHARE: Final = 0.10
"""The control plane is quiet when its servers together use less than this share of one core ..."""
QUIET_SAMPLES: Final = 3
"""... over this many consecutive half-second samples."""
BENCH_NODE: Final = ("--pods=1000000", "--cpu=1000000", "--memory=1000Ti")
"""The bench's node fits every pod its phases make (a kubelet's default is 110 pods). On a full node the
Job controller's pods stay unschedulable, and kube-scheduler retries each one every five minutes (its
pods left unschedulable that long are flushed back to the queue every 30 s), each retry a FailedScheduling
event written: with the thousands of pods a full run leaves, those waves kept the control plane busy
through every later phase (measured: each retried pod cost the servers ~6 ms of CPU, so 14,000 pending
pods keep ~0.3 of a core busy, in waves)."""
CONTROL_PLANE: Final = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "node-agent")
PAUSABLE: Final = ("kube-controller-manager", "kube-scheduler")
"""The servers `RealControl.controllers_paused` stops: the ones that act on created Jobs by themselves."""
CLIENT_RESOURCES: Final = ("jobs", "configmaps")
"""The kinds only the bench's clients write (the dispatcher's Jobs and ConfigMaps)."""
_VERBS: Final = {
    "create": ("POST",),
    "update": ("PUT",),
    "patch": ("PATCH", "APPLY"),
    "delete": ("DELETE",),
    "deletecollection": ("DELETE",),
}
_SAMPLE = re.compile(r"^apiserver_request_total\{(?P<labels>[^}]*)\} (?P<value>\S+)$")
_LABEL = re.compile(r'(\w+)="([^"]*)"')


def unavailable() -> str | None:
    """Why the real stack cannot run here (a sentence naming what to build), or None when it can."""
    try:
        find_binaries()
    except ServersNotBuiltError as error:
        return str(error)
    if built("minio") is None:
        return "minio is not built: run `make servers`"
    if not private_node_supported():
        return "RabbitMQ's server is not installed (/usr/lib/rabbitmq/bin/rabbitmq-server)"
    return None


def group_cpu_seconds(group: int) -> float:
    """User + system CPU seconds of every live process in process group *group* (0 when none)."""
    return groups_cpu_seconds({"group": group})["group"]


def groups_cpu_seconds(groups: Mapping[str, int]) -> dict[str, float]:
    """``group_cpu_seconds`` of each named process group, from one pass over ``/proc``."""
    by_group = dict.fromkeys(groups.values(), 0)
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as stat:  # noqa: PTH123 - hot loop, no Path objects
                fields = stat.read().rsplit(b")", 1)[1].split()
        except (OSError, IndexError):
            continue
        group = int(fields[2])
        if group in by_group:
            by_group[group] += int(fields[11]) + int(fields[12])
    return {name: by_group[group] / CLOCK_TICKS for name, group in groups.items()}


def parse_request_totals(text: str) -> Counter[tuple[str, str, str, str]]:
    """``apiserver_request_total`` of a ``/metrics`` text: (verb, resource, subresource, code) -> count."""
    totals: Counter[tuple[str, str, str, str]] = Counter()
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if match is None:
            continue
        labels = dict(_LABEL.findall(match["labels"]))
        key = (
            labels.get("verb", ""),
            labels.get("resource", ""),
            labels.get("subresource", ""),
            labels.get("code", ""),
        )
        totals[key] += int(float(match["value"]))
    return totals


def count_requests(
    totals: Mapping[tuple[str, str, str, str], int],
    *,
    verb: str | Sequence[str] | None = None,
    resource: str | None = None,
    subresource: str | None = None,
    code: int | None = None,
) -> int:
    """The requests of *totals* matching every given dimension; verbs as the emulator names them
    (create, update, patch, delete, deletecollection: WRITE_VERBS), subresource "" for the object itself."""
    verbs = [verb] if isinstance(verb, str) else list(verb) if verb is not None else None
    methods = {method for name in verbs for method in _VERBS[name]} if verbs is not None else None
    total = 0
    for (method, kind, sub, status), count in totals.items():
        if methods is not None and method not in methods:
            continue
        if resource is not None and kind != resource:
            continue
        if subresource is not None and sub != subresource:
            continue
        if code is not None and status != str(code):
            continue
        total += count
    return total


@dataclass
class RealControl:
    """The emulator control's methods the bench calls, on the real stack (see the module docstring)."""

    stack: DevStack
    settle_cap: float
    """Seconds ``reset_namespace`` waits for the control plane at most."""
    settles: list[dict[str, Any]] = field(default_factory=list)
    """Per phase: how long the control plane took to become quiet after it, and whether it did."""
    _baselines: dict[str, Counter[tuple[str, str, str, str]]] = field(default_factory=dict)

    @property
    def _context(self) -> ssl.SSLContext:
        return self.stack.plane.admin_context

    def request_totals(self) -> Counter[tuple[str, str, str, str]]:
        """kube-apiserver's request counters now."""
        url = f"{self.stack.plane.api_url}/metrics"
        with urllib.request.urlopen(url, context=self._context, timeout=30) as answer:  # noqa: S310 - its own URL
            return parse_request_totals(answer.read().decode())

    def namespace_created(self, namespace: str) -> None:
        """Wait for what the controllers add to a new namespace (its ``default`` ServiceAccount, without
        which pods are refused, and ``kube-root-ca.crt``), then start counting its requests."""
        deadline = time.monotonic() + NAMESPACE_READY_TIMEOUT
        for path in ("serviceaccounts/default", "configmaps/kube-root-ca.crt"):
            while self.stack.plane.request("GET", f"/api/v1/namespaces/{namespace}/{path}")[0] != 200:
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        f"namespace {namespace} has no {path} after {NAMESPACE_READY_TIMEOUT:.0f} s"
                    )
                time.sleep(0.05)
        self._baselines[namespace] = self.request_totals()

    def request_count(
        self,
        *,
        verb: str | Sequence[str] | None = None,
        resource: str | None = None,
        subresource: str | None = None,
        namespace: str | None = None,
        code: int | None = None,
    ) -> int:
        """Requests matching every given dimension since *namespace* was created (in any namespace: the
        metric has none), on the object itself (subresource "") unless *subresource* is given; without
        *resource*, of CLIENT_RESOURCES only (the controllers write pods, events, leases and Job status)."""
        now = self.request_totals()
        now.subtract(self._baselines.get(namespace or "", Counter()))
        if resource is not None:
            return count_requests(now, verb=verb, resource=resource, subresource=subresource or "", code=code)
        return sum(
            count_requests(now, verb=verb, resource=kind, subresource=subresource or "", code=code)
            for kind in CLIENT_RESOURCES
        )

    def set_kubelet(self, mode: str) -> None:
        """The node agent's mode: run, instant (pods finish at once) or off (pods are held, never start)."""
        if mode not in {"run", "instant", "off"}:
            raise ValueError(f"kubelet mode must be run, instant or off, got {mode!r}")
        body = json.dumps({"hold": mode == "off", "instant": mode == "instant"}).encode()
        request = urllib.request.Request(  # noqa: S310 - the node agent's http://127.0.0.1 control port
            self.stack.env["STACK_NODE_FAULTS"],
            data=body,
            method="PUT",
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310 - see above
            answer.read()

    def cpu(self) -> dict[str, float]:
        """CPU seconds so far of every server of the stack (process group sums)."""
        return {name: group_cpu_seconds(group) for name, group in self.stack.process_groups().items()}

    def reset_namespace(self, namespace: str) -> None:
        """Between phases: wait until the control plane is quiet (nothing is deleted; see the module
        docstring); the wait is recorded in ``settles``."""
        self.settles.append({"after": namespace, **self.wait_quiet()})

    def wait_quiet(self) -> dict[str, Any]:
        """Until the control plane's servers together use under QUIET_CORE_SHARE of a core for
        QUIET_SAMPLES half-second samples, or ``settle_cap`` seconds pass: the seconds and the outcome."""
        groups = {name: group for name, group in self.stack.process_groups().items() if name in CONTROL_PLANE}
        started = time.monotonic()
        quiet, last = 0, sum(group_cpu_seconds(group) for group in groups.values())
        while quiet < QUIET_SAMPLES and time.monotonic() - started < self.settle_cap:
            time.sleep(0.5)  # sampling CPU: there is no event that says the controllers are done
            now = sum(group_cpu_seconds(group) for group in groups.values())
            quiet = quiet + 1 if now - last < QUIET_CORE_SHARE * 0.5 else 0
            last = now
        return {"seconds": round(time.monotonic() - started, 1), "quiet": quiet >= QUIET_SAMPLES}

    @contextlib.contextmanager
    def controllers_paused(self) -> Iterator[None]:
        """kube-controller-manager and kube-scheduler stopped (SIGSTOP) for the block, resumed after it
        (SIGCONT), even on an error. Meanwhile the Job controller makes no pods and writes no Job status,
        so a create run's window holds its creates and nothing of the pods they cause; the controllers
        catch up once resumed (the settle after the run waits for them). Pause only after a new
        namespace is ready: its ServiceAccount is the controller manager's to make."""
        groups = self.stack.process_groups()
        stopped: list[int] = []
        try:
            for name in PAUSABLE:
                if name in groups:
                    os.killpg(groups[name], signal.SIGSTOP)
                    stopped.append(groups[name])
            yield
        finally:
            for group in stopped:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(group, signal.SIGCONT)

    def set_faults(self, **_: Any) -> None:
        """No API faults on the real stack (the with-API-latency phase is the emulator's)."""
        raise NotImplementedError("the real stack has no injected API latency")

    def clear_faults(self) -> None:
        """Nothing to clear (see ``set_faults``)."""


def versions(stack: DevStack) -> dict[str, str]:
    """The version of every server of the stack."""
    found = dict(stack.plane.versions)
    found["minio"] = stack.env.get("STACK_MINIO_VERSION", "?")
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        answer = subprocess.run(
            ["/usr/lib/rabbitmq/bin/rabbitmqctl", "version"],
            capture_output=True,
            text=True,
            timeout=20,
            check=False,
        )
        if answer.returncode == 0 and answer.stdout.strip():
            found["rabbitmq"] = answer.stdout.strip()
    return found


@contextlib.contextmanager
def started_real_stack(
    directory: Path, *, fsync: bool, settle_cap: float
) -> Iterator[tuple[DevStack, RealControl]]:
    """The whole local stack in *directory* (node agent included); stopped on exit."""
    with Path(os.devnull).open("w") as quiet:
        stack = start_stack(StackOptions(directory, node=True, fsync=fsync, node_args=BENCH_NODE), out=quiet)
    try:
        yield stack, RealControl(stack, settle_cap)
    finally:
        stack.stop()


# -- a second MinIO without queue_dir --------------------------------------------------------------------


@dataclass
class BareMinio:
    """A MinIO whose AMQP target has no ``queue_dir``: it publishes each event as the request completes."""

    server: MinioServer
    exchange: str


@contextlib.contextmanager
def started_minio_without_queue_dir(amqp_url: str, exchange: str) -> Iterator[BareMinio]:
    """A second MinIO (``make servers``' binary) publishing to *exchange* without a queue store; stopped on
    exit.

    The stack's MinIO keeps events in ``queue_dir`` while the broker is away, and delivers them through
    that store; this one shows what the store costs in latency.
    """
    binary = built("minio")
    if binary is None:
        raise RuntimeError("minio is not built: run `make servers`")
    with tempfile.TemporaryDirectory(prefix="bucketrun-bench-minio-") as scratch:
        base = Path(scratch)
        root = Credentials("bench-minio", uuid.uuid4().hex)
        env = minio_environment(root, AmqpTarget(amqp_url, exchange), base / "unused-queue")
        del env["MINIO_NOTIFY_AMQP_QUEUE_DIR"]
        (base / "data").mkdir()
        port, console = free_port(), free_port()
        argv = [str(binary.path), "server", "--address", f"127.0.0.1:{port}"]
        argv += ["--console-address", f"127.0.0.1:{console}", str(base / "data")]
        log = base / "minio.log"
        with log.open("ab") as sink:
            process = subprocess.Popen(
                argv, env=env, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True
            )
        server = MinioServer(process, port, console, log, root, AmqpTarget(amqp_url, exchange))
        try:
            deadline = time.monotonic() + 60
            while not server.ready():
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the second MinIO did not start; its log ends:\n{server.tail()}")
                time.sleep(0.1)
            yield BareMinio(server, exchange)
        finally:
            stop_group(process, timeout=20.0)


__all__ = ["EXCHANGE", "RealControl", "started_minio_without_queue_dir", "started_real_stack", "unavailable"]
