"""A real Kubernetes control plane on this machine: etcd, kube-apiserver, kube-controller-manager and
kube-scheduler as ``make servers`` builds them, for the local stack and the tests.

``start_control_plane`` generates a CA and every certificate under ``base_dir/pki`` (``kube_pki``),
starts the four servers on free 127.0.0.1 ports, one after the other, each logging to
``base_dir/logs/NAME.log``, and returns once each answers its health check. What it runs is a
small but real cluster:

- the API server authorizes with ``Node,RBAC`` and admits with NamespaceLifecycle, LimitRanger,
  ServiceAccount, PodSecurity, ResourceQuota, NodeRestriction (and the rest of its defaults); it signs
  ServiceAccount tokens (TokenRequest) and reaches kubelets over HTTPS at a Node's ``InternalIP``,
  checking their serving certificate against the cluster CA and presenting a client certificate of
  its own (user ``kube-apiserver-kubelet-client``);
- the controller manager runs the controllers a Job's life needs, and those binding claims to
  volumes (``CONTROLLERS``), each with its own ServiceAccount credentials;
- the scheduler binds pods to Ready Nodes. There is no node: a node agent (``node_agent``) registers
  one as user ``system:node:NAME`` in group ``system:nodes`` (``kubeconfig_for``), serving with a
  certificate from ``issue_serving_cert``. The ClusterRole ``system:node`` is bound to that group
  (``NODE_BINDING``), on top of what the Node authorizer grants.

The invariant a caller keeps: the ControlPlane owns its processes, each in a session of its own, and
``stop()`` ends them all, newest first, waiting for each. ``fsync=False`` runs etcd with
``--unsafe-no-fsync``, which loses data on a machine crash: for tests only.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from bucketrun.devtools.kube_pki import ClusterPki, KeyPair, file_stem
from bucketrun.devtools.minio_server import BuiltServer, servers_dir
from bucketrun.devtools.moto_server import free_port
from bucketrun.devtools.processes import stop_group

BINARIES: Final = (
    "etcd",
    "etcdctl",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kubectl",
)
"""What ``make servers`` builds for the control plane (``kubectl`` applies manifests)."""
BOOT_TIMEOUT: Final = 90.0
"""Seconds each server may take to report healthy (the API server takes the longest, ~5-15 s)."""
STOP_TIMEOUT: Final = 15.0
"""Seconds a server has to exit after SIGTERM before it is killed."""
_ATTEMPTS: Final = 3  # free ports are picked before a server binds them: a lost race is retried
HOST: Final = "127.0.0.1"
SERVICE_CIDR: Final = "10.96.0.0/16"
SERVICE_IP: Final = "10.96.0.1"
"""The ``kubernetes`` Service's ClusterIP: the first address of SERVICE_CIDR, in the API server's cert."""
SA_ISSUER: Final = "https://kubernetes.default.svc.cluster.local"
CONTROLLERS: Final = (
    "job-controller",
    "ttl-after-finished-controller",
    "garbage-collector-controller",
    "pod-garbage-collector-controller",
    "namespace-controller",
    "resourcequota-controller",
    "serviceaccount-controller",
    "serviceaccount-token-controller",
    # every namespace's kube-root-ca.crt ConfigMap, which a pod's ServiceAccount token volume projects
    "root-ca-certificate-publisher-controller",
    # the admin/edit/view ClusterRoles are aggregated: empty without it
    "clusterrole-aggregation-controller",
    # a Node whose agent stops renewing its Lease turns NotReady and gets the unreachable taint
    "node-lifecycle-controller",
    "taint-eviction-controller",
    # PersistentVolumeClaims bound to PersistentVolumes (hostPath ones: the node agent mounts those), and
    # the finalizers the StorageObjectInUseProtection admission plugin puts on both removed when unused
    "persistentvolume-binder-controller",
    "persistentvolume-protection-controller",
    "persistentvolumeclaim-protection-controller",
)
"""The kube-controller-manager controllers started (names as v1.37's ``--controllers`` spells them)."""
CONTROLLER_MANAGER_TUNING: Final = (
    "--kube-api-qps=200",
    "--kube-api-burst=400",
    "--concurrent-job-syncs=20",
)
"""Raised from 20 QPS, burst 30 and 5 Job workers, as clusters that run many Jobs raise them: at the
defaults the Job controller's client-side rate limiter is the whole stack's ceiling. Each Job costs it
about five writes (the pod, Job status updates, the pod's finalizer removed, events): in a 10,000-event
soak (4 Dec 2026) it wrote ~26 requests/s, and after 9 min 4,766 pods had Succeeded but only 1,061 Jobs
were Complete, with kube-controller-manager at 6% CPU."""
ADMISSION_PLUGINS: Final = (
    "NamespaceLifecycle",
    "LimitRanger",
    "ServiceAccount",
    "PodSecurity",
    "ResourceQuota",
    "NodeRestriction",
    "DefaultTolerationSeconds",
    "TaintNodesByCondition",
    "Priority",
)
ADMIN_USER: Final = "bucketrun-admin"
NODES_GROUP: Final = "system:nodes"
KUBELET_CLIENT_USER: Final = "kube-apiserver-kubelet-client"
NODE_BINDING: Final[dict[str, Any]] = {
    "apiVersion": "rbac.authorization.k8s.io/v1",
    "kind": "ClusterRoleBinding",
    "metadata": {"name": "bucketrun:node-agents"},
    "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "system:node"},
    "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": NODES_GROUP}],
}
"""Binds the built-in ClusterRole ``system:node`` (bound to nothing by default) to every node agent."""


class ServersNotBuiltError(RuntimeError):
    """A control-plane binary is missing: ``make servers`` builds it."""


def find_binaries(bin_dir: Path | None = None) -> dict[str, BuiltServer]:
    """Each of BINARIES in *bin_dir* (default: ``make servers``' bin directory) with its version stamp.

    ServersNotBuiltError naming the first one missing.
    """
    directory = bin_dir if bin_dir is not None else servers_dir() / "bin"
    found = {}
    for name in BINARIES:
        path, stamp = directory / name, directory / f"{name}.version"
        if not (path.is_file() and os.access(path, os.X_OK) and stamp.is_file()):
            raise ServersNotBuiltError(
                f"{name} is not built: no executable {path} with its stamp {stamp}; "
                "run `make servers` (or set BUCKETRUN_SERVERS_DIR to where it put them)"
            )
        found[name] = BuiltServer(path, stamp.read_text().strip())
    return found


def _get(url: str, context: ssl.SSLContext | None) -> tuple[int, bytes]:
    """(status, body) of GET *url*; status 0 when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=2, context=context) as response:  # noqa: S310 - our own URL
            return int(response.status), response.read()
    except urllib.error.HTTPError as error:
        with error:  # an error answer holds its connection open until closed
            return error.code, error.read()
    except (urllib.error.URLError, OSError):
        return 0, b""


@dataclass
class Component:
    """One server process of the control plane, restartable with the same command line."""

    name: str
    argv: list[str]
    log: Path
    healthy: Callable[[], bool]
    process: subprocess.Popen[bytes] | None = None
    startup_seconds: float = 0.0
    """Seconds from the last start to the first healthy answer."""

    @property
    def pid(self) -> int | None:
        """The running process's id (its session's too), None when it is not running."""
        return self.process.pid if self.process and self.process.poll() is None else None

    def launch(self) -> None:
        """Start the process (logging to ``log``) without waiting for it."""
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as sink:
            self.process = subprocess.Popen(
                self.argv, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True
            )
        self._started = time.monotonic()

    def wait_healthy(self, timeout: float = BOOT_TIMEOUT) -> bool:
        """Wait until healthy (True) or exited (False); TimeoutError quoting the log after *timeout*.
        Interrupted (Ctrl-C) or timed out, it stops the process first."""
        try:
            return self._poll_health(timeout)
        except BaseException:
            self.stop()
            raise

    def _poll_health(self, timeout: float) -> bool:
        if self.process is None:
            raise RuntimeError(f"{self.name} was never launched")
        deadline = time.monotonic() + timeout
        while self.process.poll() is None:
            if self.healthy():
                self.startup_seconds = time.monotonic() - self._started
                return True
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.name} not healthy after {timeout:.0f} s; {self.tail()}")
            time.sleep(0.1)
        return False

    def stop(self) -> None:
        """SIGTERM the process's session, SIGKILL it after STOP_TIMEOUT; wait for it either way."""
        if self.process is not None:
            stop_group(self.process, STOP_TIMEOUT)

    def rss_bytes(self) -> int | None:
        """The process's resident set size now (``/proc``), None when it is not running."""
        pid = self.pid
        if pid is None:
            return None
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        return None

    def tail(self) -> str:
        """The end of the log, for error messages."""
        text = self.log.read_text(errors="replace")[-3000:] if self.log.exists() else "(empty)"
        return f"its log ({self.log}) ends:\n{text}"


@dataclass
class ControlPlane:
    """A running control plane; see the module docstring."""

    base_dir: Path
    pki: ClusterPki
    binaries: dict[str, BuiltServer]
    api_port: int
    etcd_url: str
    kubeconfig: Path
    """The admin's kubeconfig (user ``bucketrun-admin``, group ``system:masters``)."""
    admin: KeyPair
    """The admin's client certificate and key."""
    components: dict[str, Component] = field(default_factory=dict)
    """etcd, kube-apiserver, kube-controller-manager, kube-scheduler, in start order."""

    @property
    def api_url(self) -> str:
        """The API server's URL."""
        return f"https://{HOST}:{self.api_port}"

    @property
    def ca_cert(self) -> Path:
        """The cluster CA's certificate (PEM): it signed every certificate of the cluster."""
        return self.pki.ca.cert

    @property
    def versions(self) -> dict[str, str]:
        """Each binary's pinned version, from the stamps ``make servers`` wrote."""
        return {name: built.version for name, built in self.binaries.items()}

    @property
    def pids(self) -> dict[str, int | None]:
        """Each server's process id (None while stopped)."""
        return {name: component.pid for name, component in self.components.items()}

    @property
    def startup_seconds(self) -> dict[str, float]:
        """Seconds each server took from its last start to healthy."""
        return {name: component.startup_seconds for name, component in self.components.items()}

    def rss(self) -> dict[str, int | None]:
        """Each server's resident memory in bytes now (None while stopped)."""
        return {name: component.rss_bytes() for name, component in self.components.items()}

    def summary(self) -> str:
        """One line per server: version, startup time, RSS: for a test summary or the stack's banner."""
        rss = self.rss()
        lines = []
        for name, component in self.components.items():
            resident = rss[name]
            memory = f"{resident / 2**20:.0f} MiB" if resident else "stopped"
            version = self.binaries[name].version
            lines.append(f"{name} {version}: ready in {component.startup_seconds:.1f} s, RSS {memory}")
        return "\n".join(lines)

    # --- credentials ---------------------------------------------------------------------------------

    def issue_serving_cert(self, name: str, ips: Sequence[str] = (HOST,)) -> tuple[Path, Path]:
        """(cert, key) PEM files for a server the API server calls (a node agent's kubelet port)."""
        pair = self.pki.issue_serving_cert(name, ips, dns_names=(name,))
        return pair.cert, pair.key

    def issue_client_cert(self, user: str, groups: Sequence[str] = ()) -> tuple[Path, Path]:
        """(cert, key) PEM files authenticating as *user* in *groups*."""
        pair = self.pki.issue_client_cert(user, groups)
        return pair.cert, pair.key

    def kubeconfig_for(self, user: str, groups: Sequence[str] = ()) -> Path:
        """A kubeconfig authenticating as *user* in *groups* (a node agent: ``system:node:NAME`` in
        ``system:nodes``)."""
        path = self.base_dir / "kubeconfigs" / f"{file_stem(user)}.kubeconfig"
        path.parent.mkdir(parents=True, exist_ok=True)
        return self.pki.write_kubeconfig(path, self.api_url, user, self.pki.issue_client_cert(user, groups))

    def service_account_kubeconfig(self, namespace: str, name: str, seconds: int = 86400) -> Path:
        """A kubeconfig with a token of ServiceAccount *namespace*/*name* (TokenRequest, valid *seconds*),
        its context in *namespace*: its calls are allowed exactly what RBAC grants that ServiceAccount."""
        request: dict[str, Any] = {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {"expirationSeconds": seconds},
        }
        path = f"/api/v1/namespaces/{namespace}/serviceaccounts/{name}/token"
        status, body = self.request("POST", path, request)
        if status != 201:
            raise RuntimeError(f"TokenRequest for ServiceAccount {namespace}/{name}: HTTP {status} {body}")
        user = f"system:serviceaccount:{namespace}:{name}"
        kubeconfig = self.base_dir / "kubeconfigs" / f"{file_stem(user)}.kubeconfig"
        return self.pki.write_token_kubeconfig(
            kubeconfig, self.api_url, user, body["status"]["token"], namespace
        )

    # --- calls ---------------------------------------------------------------------------------------

    @functools.cached_property
    def admin_context(self) -> ssl.SSLContext:
        """TLS context trusting the cluster CA and presenting the admin's client certificate."""
        return _client_context(self.pki, self.admin)

    def request(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        """One API call as the admin: (HTTP status, decoded JSON body or None)."""
        data = json.dumps(body).encode() if body is not None else None
        call = urllib.request.Request(  # noqa: S310 - https to our own API server
            self.api_url + path, data=data, method=method, headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(call, timeout=30, context=self.admin_context) as response:  # noqa: S310
                status, raw = int(response.status), response.read()
        except urllib.error.HTTPError as error:
            with error:  # an error answer holds its connection open until closed
                status, raw = error.code, error.read()
        return status, json.loads(raw) if raw else None

    def kubectl(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        """``kubectl ARGS`` as the admin; CalledProcessError (with kubectl's stderr) on failure."""
        argv = [str(self.binaries["kubectl"].path), f"--kubeconfig={self.kubeconfig}", *args]
        return subprocess.run(argv, input=stdin, capture_output=True, text=True, check=True, timeout=120)

    def etcdctl(self, *args: str) -> str:
        """``etcdctl ARGS`` against this etcd; its standard output."""
        argv = [str(self.binaries["etcdctl"].path), f"--endpoints={self.etcd_url}", *args]
        return subprocess.run(argv, capture_output=True, text=True, check=True, timeout=60).stdout

    def compact(self) -> int:
        """Compact etcd's history up to its current revision (physically); return that revision.

        A running API server serves reads and watches from its watch cache, which learns only of the
        compactions the API server runs itself: reads at older resourceVersions keep working until the
        cache's window passes them or ``stop_apiserver()``/``start_apiserver()`` restarts it; from then
        on an exact read or a watch at a resourceVersion before the compaction gets 410 Gone.
        """
        (status,) = json.loads(self.etcdctl("endpoint", "status", "--write-out=json"))
        revision = int(status["Status"]["header"]["revision"])
        self.etcdctl("compact", str(revision), "--physical")
        return revision

    # --- lifecycle -----------------------------------------------------------------------------------

    def stop_apiserver(self) -> None:
        """Stop kube-apiserver (an outage); etcd and the other servers keep running."""
        self.components["kube-apiserver"].stop()

    def start_apiserver(self) -> None:
        """Start kube-apiserver again on the same port with the same data; return once ready."""
        apiserver = self.components["kube-apiserver"]
        if apiserver.pid is not None:
            return
        apiserver.launch()
        if not apiserver.wait_healthy():
            raise RuntimeError(f"kube-apiserver exited on restart (port {self.api_port}); {apiserver.tail()}")

    def stop(self) -> None:
        """Stop every server, newest first, waiting for each."""
        for component in reversed(self.components.values()):
            component.stop()


def _start(component: Component, attempt_ports: Callable[[], Component] | None = None) -> Component:
    """Launch *component* and wait for it; with *attempt_ports*, retry on fresh ports when it exits."""
    for _ in range(_ATTEMPTS):
        component.launch()
        if component.wait_healthy():
            return component
        if attempt_ports is None:
            break
        component = attempt_ports()
    raise RuntimeError(f"{component.name} exited before it was healthy; {component.tail()}")


def _etcd(bins: dict[str, BuiltServer], base_dir: Path, *, fsync: bool) -> Component:
    client, peer = f"http://{HOST}:{free_port()}", f"http://{HOST}:{free_port()}"
    argv = [
        str(bins["etcd"].path),
        "--name=bucketrun",
        f"--data-dir={base_dir / 'etcd'}",
        f"--listen-client-urls={client}",
        f"--advertise-client-urls={client}",
        f"--listen-peer-urls={peer}",
        f"--initial-advertise-peer-urls={peer}",
        f"--initial-cluster=bucketrun={peer}",
        "--log-level=warn",
    ]
    if not fsync:
        argv.append("--unsafe-no-fsync")

    def healthy() -> bool:
        status, body = _get(f"{client}/health", None)
        return status == 200 and b'"true"' in body

    return Component("etcd", argv, base_dir / "logs" / "etcd.log", healthy)


def _etcd_url(etcd: Component) -> str:
    (url,) = (arg.split("=", 1)[1] for arg in etcd.argv if arg.startswith("--listen-client-urls="))
    return url


def _apiserver(
    bins: dict[str, BuiltServer], pki: ClusterPki, base_dir: Path, etcd_url: str, admin: ssl.SSLContext
) -> Component:
    port = free_port()
    serving = pki.issue_serving_cert(
        "kube-apiserver",
        [HOST, SERVICE_IP],
        [
            "localhost",
            "kubernetes",
            "kubernetes.default",
            "kubernetes.default.svc",
            "kubernetes.default.svc.cluster.local",
        ],
    )
    kubelet_client = pki.issue_client_cert(KUBELET_CLIENT_USER, ["system:masters"])
    sa = pki.service_account_keys()
    argv = [
        str(bins["kube-apiserver"].path),
        f"--etcd-servers={etcd_url}",
        f"--bind-address={HOST}",
        f"--advertise-address={HOST}",
        f"--secure-port={port}",
        "--endpoint-reconciler-type=none",  # no kubernetes Service endpoints: nothing in a pod calls the API
        f"--tls-cert-file={serving.cert}",
        f"--tls-private-key-file={serving.key}",
        f"--client-ca-file={pki.ca.cert}",
        "--authorization-mode=Node,RBAC",
        f"--enable-admission-plugins={','.join(ADMISSION_PLUGINS)}",
        f"--service-account-issuer={SA_ISSUER}",
        f"--service-account-key-file={sa.cert}",
        f"--service-account-signing-key-file={sa.key}",
        f"--service-cluster-ip-range={SERVICE_CIDR}",
        f"--kubelet-client-certificate={kubelet_client.cert}",
        f"--kubelet-client-key={kubelet_client.key}",
        f"--kubelet-certificate-authority={pki.ca.cert}",
        "--kubelet-preferred-address-types=InternalIP",
        f"--cert-dir={base_dir / 'apiserver-certs'}",
        "--profiling=false",
        # without it SIGTERM waits ~60 s for the HTTP/2 connections of open watches
        "--shutdown-watch-termination-grace-period=2s",
    ]

    def healthy() -> bool:
        return _get(f"https://{HOST}:{port}/readyz", admin)[0] == 200

    return Component("kube-apiserver", argv, base_dir / "logs" / "kube-apiserver.log", healthy)


def _api_port(apiserver: Component) -> int:
    (port,) = (int(arg.split("=", 1)[1]) for arg in apiserver.argv if arg.startswith("--secure-port="))
    return port


def _controller(
    name: str, *, binary: BuiltServer, pki: ClusterPki, kubeconfig: Path, extra: Sequence[str], log_dir: Path
) -> Component:
    """kube-controller-manager or kube-scheduler: served with a CA-issued cert, healthy at /healthz."""
    port = free_port()
    serving = pki.issue_serving_cert(name, [HOST])
    argv = [
        str(binary.path),
        f"--kubeconfig={kubeconfig}",
        # no delegated authn/authz (no --authentication-kubeconfig): /healthz is always allowed, and
        # without a front proxy CA the delegated authenticator only logs errors
        f"--bind-address={HOST}",
        f"--secure-port={port}",
        f"--tls-cert-file={serving.cert}",
        f"--tls-private-key-file={serving.key}",
        "--leader-elect=false",  # one instance; a restart takes over at once instead of after a lease
        *extra,
    ]
    context = ssl.create_default_context(cafile=str(pki.ca.cert))

    def healthy() -> bool:
        return _get(f"https://{HOST}:{port}/healthz", context)[0] == 200

    return Component(name, argv, log_dir / f"{name}.log", healthy)


def _component_kubeconfig(pki: ClusterPki, base_dir: Path, api_url: str, user: str) -> Path:
    path = base_dir / "kubeconfigs" / f"{file_stem(user)}.kubeconfig"
    path.parent.mkdir(parents=True, exist_ok=True)
    return pki.write_kubeconfig(path, api_url, user, pki.issue_client_cert(user))


def _client_context(pki: ClusterPki, client: KeyPair) -> ssl.SSLContext:
    """TLS context trusting the cluster CA and presenting *client*."""
    context = ssl.create_default_context(cafile=str(pki.ca.cert))
    context.load_cert_chain(str(client.cert), str(client.key))
    return context


def start_control_plane(base_dir: Path, *, bin_dir: Path | None = None, fsync: bool = False) -> ControlPlane:
    """Start etcd, kube-apiserver, kube-controller-manager and kube-scheduler with their state under
    *base_dir* (reused when it holds a previous run's); return once all four are healthy.

    *bin_dir* is where the binaries are (default: ``make servers``' bin directory). *fsync* False runs
    etcd with ``--unsafe-no-fsync``: faster, and a machine crash loses the cluster: for tests only.
    ServersNotBuiltError naming a missing binary; RuntimeError or TimeoutError quoting the log of a
    server that does not come up (the ones already started are stopped).
    """
    base_dir.mkdir(parents=True, exist_ok=True)
    bins = find_binaries(bin_dir)
    pki = ClusterPki(base_dir / "pki")
    started: list[Component] = []
    try:
        etcd = _start(_etcd(bins, base_dir, fsync=fsync), lambda: _etcd(bins, base_dir, fsync=fsync))
        started.append(etcd)
        etcd_url = _etcd_url(etcd)
        admin = pki.issue_client_cert(ADMIN_USER, ["system:masters"])
        probe = _client_context(pki, admin)

        def apiserver_factory() -> Component:
            return _apiserver(bins, pki, base_dir, etcd_url, probe)

        apiserver = _start(apiserver_factory(), apiserver_factory)
        started.append(apiserver)
        api_url = f"https://{HOST}:{_api_port(apiserver)}"
        (base_dir / "kubeconfigs").mkdir(exist_ok=True)
        kubeconfig = pki.write_kubeconfig(
            base_dir / "kubeconfigs" / "admin.kubeconfig", api_url, ADMIN_USER, admin
        )
        plane = ControlPlane(base_dir, pki, bins, _api_port(apiserver), etcd_url, kubeconfig, admin)
        plane.components = {"etcd": etcd, "kube-apiserver": apiserver}
        _grant_nodes(plane)
        for component in _controllers(bins, pki, base_dir, api_url):
            started.append(component)
            plane.components[component.name] = component
    except BaseException:
        for component in reversed(started):
            component.stop()
        raise
    return plane


def _controllers(
    bins: dict[str, BuiltServer], pki: ClusterPki, base_dir: Path, api_url: str
) -> list[Component]:
    """Start the controller manager and the scheduler side by side; return them once both are healthy."""
    sa = pki.service_account_keys()
    logs = base_dir / "logs"

    def controller_manager() -> Component:
        kubeconfig = _component_kubeconfig(pki, base_dir, api_url, "system:kube-controller-manager")
        extra = [
            f"--controllers={','.join(CONTROLLERS)}",
            "--use-service-account-credentials=true",
            f"--service-account-private-key-file={sa.key}",
            f"--root-ca-file={pki.ca.cert}",
            *CONTROLLER_MANAGER_TUNING,
        ]
        return _controller(
            "kube-controller-manager",
            binary=bins["kube-controller-manager"],
            pki=pki,
            kubeconfig=kubeconfig,
            extra=extra,
            log_dir=logs,
        )

    def scheduler() -> Component:
        kubeconfig = _component_kubeconfig(pki, base_dir, api_url, "system:kube-scheduler")
        return _controller(
            "kube-scheduler",
            binary=bins["kube-scheduler"],
            pki=pki,
            kubeconfig=kubeconfig,
            extra=[],
            log_dir=logs,
        )

    factories = (controller_manager, scheduler)
    components = [factory() for factory in factories]
    for component in components:
        component.launch()
    ready = []
    try:
        for component, factory in zip(components, factories, strict=True):
            ready.append(component if component.wait_healthy() else _start(factory(), factory))
    except BaseException:
        for component in components:
            component.stop()
        raise
    return ready


def _grant_nodes(plane: ControlPlane) -> None:
    """Bind ClusterRole system:node to the group every node agent is in (NODE_BINDING)."""
    status, body = plane.request(
        "POST", "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings", NODE_BINDING
    )
    if status not in (201, 409):
        raise RuntimeError(f"creating ClusterRoleBinding {NODE_BINDING['metadata']['name']}: {status} {body}")
