"""The soak's servers and processes, all real and all its own, so that it may break them at will.

- a private RabbitMQ node (the `private_rabbitmq` fixture's, or one started here for the command line);
- an S3 server of its own (never the session's: the soak freezes it with SIGSTOP): the MinIO built from
  source, or moto where it is not built;
- a Kubernetes of its own (the soak changes the kubelet's mode and injects faults globally): the real
  control plane built by ``make servers`` (etcd without fsync, kube-apiserver, the controller manager,
  the scheduler, the node agent) behind the fault proxy, or the API emulator where it is not built;
- two `bucketrun dispatcher` processes and two `bucketrun watcher` processes sharing one Lease, each in
  its own process group, configured by environment variables only, as in a pod.

`SoakStack.close()` ends everything it started (process groups, the cluster and its pod processes, the
S3 server, the node if it started it), whatever state a fault left it in.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from minio import Minio  # noqa: TID251 - the soak plays MinIO's users: it uploads the objects
from minio.versioningconfig import ENABLED, VersioningConfig  # noqa: TID251

from bucketrun.devtools.minio_server import Credentials, MinioServer, built, start_minio
from bucketrun.devtools.moto_server import MotoServer, start_moto
from dispatcher.runtime.settings import Settings
from tests.backends import free_port, record_backend
from tests.backends.kubernetes import missing_servers
from tests.backends.local_kube import LocalClusterControl, run_local_cluster
from tests.backends.rabbit_node import PrivateRabbitNode
from tests.backends.rabbitmq import AmqpNames
from tests.backends.s3 import S3Endpoint
from tests.integration.dispatcher_process import (
    DispatcherProcess,
    kill_group,
    start_in_group,
    with_settings,
)
from tests.integration.stack import amqp_settings, storage_settings
from tests.k8s_emulator import EmulatorControl, run_emulator

SERVICES = ("alpha", "beta", "gamma", "delta", "epsilon")
RETRY_TIERS = (1, 3, 10)
LEASE_DURATION = 4.0
READY_WITHIN = 90.0
"""Seconds a process may take to come up on a loaded 2-core machine."""
WATCHER_COMMAND = (sys.executable, "-m", "bucketrun.cli.main", "watcher")
SCRIPT = 'wc -c < "$INPUT_FILE_PATH" > "$TMP_OUTPUT_DIR/$(basename "$INPUT_FILE_PATH").size"'


class SoakError(RuntimeError):
    """The soak could not run (a server did not start, a process did not come up): not a verdict."""


def service_fdl(prefix: str, output_bucket: str, services: Sequence[str] = SERVICES) -> str:
    """OSCAR FDL of the five soak services: each watches `<prefix>-<service>/in` and writes the input's
    size to `<output_bucket>/<service>`."""
    entries = "".join(
        f"  - soak:\n"
        f"      name: {name}\n"
        f"      image: busybox:1.36\n"
        f"      cpu: '0.1'\n"
        f"      memory: 32Mi\n"
        f"      script: {json.dumps(SCRIPT)}\n"
        f"      input: [{{storage_provider: minio, path: {prefix}-{name}/in}}]\n"
        f"      output: [{{storage_provider: minio, path: {output_bucket}/{name}}}]\n"
        for name in services
    )
    return "functions:\n  oscar:\n" + entries


@dataclass
class ChildProcess:
    """One `bucketrun watcher` child in its own process group, its output in a log file."""

    settings: Settings
    log_path: Path
    proc: subprocess.Popen[bytes] = field(init=False)

    def __post_init__(self) -> None:
        self.proc = start_in_group(WATCHER_COMMAND, self.settings, self.log_path)

    @property
    def identity(self) -> str:
        """Its identity on the Lease."""
        return self.settings.watcher.identity

    def kill(self) -> None:
        """SIGKILL its process group and reap it (a crash; safe to call again)."""
        kill_group(self.proc)


SOAK_ROOT = Credentials("bucketrun-soak", "bucketrun-soak-secret")


def _start_store(base: Path) -> tuple[MinioServer | MotoServer, S3Endpoint]:
    """The soak's own S3 server: the built MinIO (no notification target: the soak publishes its
    events itself, to control the load), or moto where MinIO is not built."""
    binary = built("minio")
    if binary is None:
        moto = start_moto(base / "moto.log")
        record_backend("s3-soak", "moto", f"{moto.endpoint}; fallback: no MinIO built")
        return moto, S3Endpoint(moto.endpoint, "testing", "testing")
    minio = start_minio(binary.path, base / "minio", SOAK_ROOT)
    record_backend("s3-soak", "minio (built)", f"{binary.version} at {minio.endpoint}")
    return minio, S3Endpoint(minio.endpoint, SOAK_ROOT.user, SOAK_ROOT.password, backend="minio")


@dataclass(frozen=True)
class SoakCluster:
    """The soak's Kubernetes: where its API answers (no credentials needed), a kubeconfig for it, and
    the control client that injects faults and counts requests (the emulator's or the fault proxy's)."""

    backend: str
    """"local" (the real control plane) or "emulator"."""
    url: str
    kubeconfig: Path
    control: EmulatorControl | LocalClusterControl

    @property
    def real(self) -> bool:
        """True on the real control plane."""
        return self.backend == "local"


@contextlib.contextmanager
def soak_cluster(base: Path, max_running_pods: int) -> Iterator[SoakCluster]:
    """The real control plane where ``make servers`` built it, else the emulator (a failure under CI,
    which builds it); its kubelet runs pods, at most *max_running_pods* at once."""
    missing = missing_servers()
    if missing is None:
        with run_local_cluster(base / "cluster") as cluster:
            cluster.control.set_kubelet("run", max_running_pods=max_running_pods)
            version = cluster.plane.versions["kube-apiserver"]
            record_backend("kubernetes-soak", "local", f"kube-apiserver {version} at {cluster.plane.api_url}")
            yield SoakCluster("local", cluster.proxy.url, cluster.kubeconfig, cluster.control)
        return
    if os.environ.get("CI") == "true":
        raise SoakError(f"CI builds the control plane with make servers, yet {missing}")
    with run_emulator(base, kubelet="run", max_running_pods=max_running_pods, seed=9) as emulator:
        record_backend("kubernetes-soak", "emulator", f"{emulator.url}; fallback: {missing}")
        yield SoakCluster("emulator", emulator.url, emulator.kubeconfig, emulator.control)


@dataclass
class SoakStack:
    """Everything the soak runs against; build it with `SoakStack.start(...)`, end it with `close()`."""

    base: Path
    node: PrivateRabbitNode
    own_node: bool
    store: MinioServer | MotoServer
    cluster: SoakCluster
    settings: Settings
    names: AmqpNames
    s3: S3Endpoint
    prefix: str
    output_bucket: str
    dead_bucket: str
    services: tuple[str, ...]
    dispatchers: list[DispatcherProcess] = field(default_factory=list)
    watchers: list[ChildProcess] = field(default_factory=list)
    _cluster_context: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)
    _frozen: bool = False
    _spawned: int = 0

    # -- start and stop ---------------------------------------------------------------------------------

    @classmethod
    async def start(
        cls,
        base: Path,
        *,
        node: PrivateRabbitNode | None = None,
        services: Sequence[str] = SERVICES,
        max_running_pods: int = 6,
    ) -> SoakStack:
        """Start the servers (the node too unless given), the buckets, two dispatchers and two watchers.
        The kubelet starts in `run` mode. `SoakError` when something does not come up."""
        await asyncio.to_thread(base.mkdir, parents=True, exist_ok=True)
        own_node = node is None
        if node is None:
            node = PrivateRabbitNode(base / "rabbit")
            await asyncio.to_thread(node.start)
        store, s3 = _start_store(base)
        cluster_context = contextlib.ExitStack()
        try:
            cluster = cluster_context.enter_context(soak_cluster(base, max_running_pods))
        except BaseException:
            store.stop()
            if own_node:
                node.close()
            raise
        prefix = f"soak{os.getpid() % 100_000}"
        names = AmqpNames(node.url, prefix=prefix)
        namespace = f"{prefix}-jobs"
        fdl = base / "services.yaml"
        output_bucket, records_bucket = f"{prefix}-out", f"{prefix}-records"
        fdl.write_text(service_fdl(prefix, output_bucket, services))
        settings = Settings.load(
            amqp=amqp_settings(names, services=services, retry_tiers=RETRY_TIERS),
            storage=storage_settings(s3, records_bucket=records_bucket, records_prefix="records/"),
            cluster={
                "executor": "kubernetes",
                "namespace": namespace,
                "kubeconfig": cluster.kubeconfig,
                "api_write_rate": 150.0,
                "api_write_burst": 50,
            },
            services={"paths": (fdl,), "reload_interval": 5.0},
            dispatch={"retry_base_delay": 0.2, "max_retry_delay": 3.0, "drain_timeout": 5.0},
            watcher={
                "results_exchange": names.exchange("results"),
                "lease_duration": LEASE_DURATION,
                "lease_renew_period": 1.0,
                "identity": "watcher-1",
                "watch_timeout": 30,
            },
            metrics={"host": "127.0.0.1", "port": 0},
        )
        stack = cls(
            base,
            node,
            own_node,
            store,
            cluster,
            settings,
            names,
            s3,
            prefix,
            output_bucket,
            f"{prefix}-nowhere",
            tuple(services),
            _cluster_context=cluster_context,
        )
        try:
            await stack._prepare(namespace, records_bucket)
            for _ in range(2):
                await stack.start_dispatcher()
            first = stack.start_watcher()
            await stack.wait_leader({first.identity})
            stack.start_watcher()
        except BaseException:
            stack.close()
            raise
        return stack

    async def _prepare(self, namespace: str, records_bucket: str) -> None:
        client = self.minio()
        for bucket in [*(self.input_bucket(s) for s in self.services), self.output_bucket, records_bucket]:
            client.make_bucket(bucket)
        # Versioned, so that a second write of one record shows up as a second version.
        client.set_bucket_versioning(records_bucket, VersioningConfig(ENABLED))
        await self.api("POST", "/api/v1/namespaces", {"metadata": {"name": namespace}})
        if self.cluster.real:  # its pods are refused until the ServiceAccount controller made `default`
            deadline = time.monotonic() + READY_WITHIN
            while await self.api("GET", f"/api/v1/namespaces/{namespace}/serviceaccounts/default") is None:
                if time.monotonic() > deadline:
                    raise SoakError(f"no default ServiceAccount in {namespace} after {READY_WITHIN:.0f} s")
                await asyncio.sleep(0.2)

    def close(self) -> None:
        """End every process and server this stack started (safe after any fault, safe twice)."""
        self.thaw_s3()
        for process in [*self.dispatchers, *self.watchers]:
            process.kill()
        self._cluster_context.close()
        self.store.stop()
        if self.own_node:
            self.node.close()

    # -- accessors --------------------------------------------------------------------------------------

    @property
    def control(self) -> EmulatorControl | LocalClusterControl:
        """The cluster's control client (never fault-injected)."""
        return self.cluster.control

    @property
    def namespace(self) -> str:
        """Where the Jobs go."""
        return self.settings.cluster.namespace

    def input_bucket(self, service: str) -> str:
        """The bucket *service* watches (its input folder is ``in/``)."""
        return f"{self.prefix}-{service}"

    def minio(self, **options: Any) -> Minio:
        """A client of the soak's S3 server (*options* as ``S3Endpoint.client`` takes them)."""
        return self.s3.client(**options)

    # -- processes --------------------------------------------------------------------------------------

    async def start_dispatcher(self) -> DispatcherProcess:
        """A new dispatcher process, once its /readyz answers 200."""
        self._spawned += 1
        settings = with_settings(self.settings, metrics={"host": "127.0.0.1", "port": free_port()})
        process = DispatcherProcess(settings, self.base / f"dispatcher-{self._spawned}.log")
        self.dispatchers.append(process)
        deadline = time.monotonic() + READY_WITHIN
        while await process.status("/readyz") != 200:
            if process.returncode is not None or time.monotonic() > deadline:
                raise SoakError(f"dispatcher {process.pid} not ready: {process.log()[-3000:]}")
            await asyncio.sleep(0.2)
        return process

    def live_dispatchers(self) -> list[DispatcherProcess]:
        """Dispatchers still running."""
        return [process for process in self.dispatchers if process.returncode is None]

    def start_watcher(self) -> ChildProcess:
        """A new watcher process with a fresh identity (it campaigns for the Lease at once)."""
        self._spawned += 1
        identity = f"watcher-{self._spawned}"
        settings = self.settings.model_copy(
            update={"watcher": self.settings.watcher.model_copy(update={"identity": identity})}
        )
        process = ChildProcess(settings, self.base / f"{identity}.log")
        self.watchers.append(process)
        return process

    def live_watchers(self) -> list[ChildProcess]:
        """Watchers still running."""
        return [process for process in self.watchers if process.proc.poll() is None]

    async def leader(self) -> str | None:
        """The Lease's holder, or None while it has none (or the API refused the read)."""
        lease = self.settings.watcher.lease_name
        path = f"/apis/coordination.k8s.io/v1/namespaces/{self.namespace}/leases/{lease}"
        found = await self.api("GET", path, tries=1)
        return ((found or {}).get("spec") or {}).get("holderIdentity")

    async def wait_leader(self, among: set[str], within: float = READY_WITHIN) -> str:
        """The first holder of the Lease among *among*; `SoakError` after *within* s."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            holder = await self.leader()
            if holder in among:
                return holder
            if not any(w.identity in among for w in self.live_watchers()):
                candidates = [w for w in self.watchers if w.identity in among]
                raise SoakError(f"every watcher among {sorted(among)} exited:\n{self.logs(candidates)}")
            await asyncio.sleep(0.1)
        raise SoakError(f"no watcher among {sorted(among)} took the Lease within {within}s")

    # -- S3 outage --------------------------------------------------------------------------------------

    def freeze_s3(self) -> None:
        """SIGSTOP the S3 server: connections are accepted by the kernel, then hang, as with a server
        that stopped answering (it resumes with everything it had)."""
        os.killpg(self.store.process.pid, signal.SIGSTOP)
        self._frozen = True

    def thaw_s3(self) -> None:
        """SIGCONT the S3 server (no-op unless frozen)."""
        if self._frozen:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.store.process.pid, signal.SIGCONT)
            self._frozen = False

    # -- the API, read directly (through the injected faults, retried) ---------------------------------

    async def api(
        self, method: str, path: str, body: dict[str, Any] | None = None, *, tries: int = 20
    ) -> Any:
        """One API call; 5xx/429 (injected faults) are retried *tries* times; 404 gives None."""
        for attempt in range(tries):
            async with (
                aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as session,
                session.request(method, self.cluster.url + path, json=body) as response,
            ):
                if response.status == 404:
                    return None
                if response.status < 300:
                    return await response.json()
                if response.status in (429, 500, 503, 504) and attempt + 1 < tries:
                    await asyncio.sleep(0.2)
                    continue
                if response.status in (429, 500, 503, 504):
                    return None
                raise SoakError(f"{method} {path} answered {response.status}: {await response.text()}")
        return None

    def logs(self, processes: Sequence[DispatcherProcess | ChildProcess], limit: int = 4000) -> str:
        """The end of each process's log, for a failed run's output."""
        parts = []
        for process in processes:
            text = process.log_path.read_text(errors="replace")
            parts.append(f"----- {process.log_path.name} -----\n{text[-limit:]}")
        return "\n".join(parts)
