"""The whole local stack in one directory: RabbitMQ, MinIO, a real Kubernetes control plane and a node
agent, on 127.0.0.1, for a person (``kubectl get jobs``, the MinIO console) and for tests.

``start_stack`` starts, under ``directory``:

- a private RabbitMQ node (``rabbitmq/``; its own ports, data and epmd, never the machine's broker);
- the MinIO that ``make servers`` builds (``minio/``), its AMQP notification target publishing to
  bucketrun's events exchange on that node, as ``deploy/`` configures production;
- the control plane (``kube/``: etcd, kube-apiserver, kube-controller-manager, kube-scheduler) with the
  namespace ``bucketrun`` (PodSecurity ``restricted`` enforced) and ``deploy/kubernetes``'
  ServiceAccounts, Roles and RoleBindings in it;
- the node agent (``node/``) as its own process, identified as ``system:node:NODE_NAME``, once it is
  there to run (without it pods stay Pending, and the stack says so).

Then it writes ``stack.env``: shell-sourceable ``KEY=value`` lines with ``KUBECONFIG`` (the admin's),
the ``BUCKETRUN_*`` settings a dispatcher or watcher needs on this stack, and ``STACK_*`` facts (URLs,
the node agent's fault endpoint, kubeconfigs with the dispatcher's and the watcher's ServiceAccount
tokens, bound only to their Roles). ``stack.env`` is written last, so its existence means "ready".
``stack.json`` records the process group of every server, so ``stop_stack_dir`` can end them from
another process even when the process that started them is gone.

Each start begins empty: the servers' directories from a previous start are removed (nothing else
in ``directory`` is touched).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import importlib.util
import json
import os
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, TextIO

import yaml

from bucketrun.devtools.control_plane import NODES_GROUP, ControlPlane, find_binaries, start_control_plane
from bucketrun.devtools.minio_server import AmqpTarget, Credentials, MinioServer, built, start_minio
from bucketrun.devtools.moto_server import free_port
from bucketrun.devtools.processes import stop_group
from bucketrun.devtools.rabbit_node import PrivateRabbitNode, kill_epmd, private_node_supported

ENV_FILE: Final = "stack.env"
STATE_FILE: Final = "stack.json"
LOG_FILE: Final = "stack.log"
NAMESPACE: Final = "bucketrun"
EXCHANGE: Final = "bucketrun.events"
"""The events exchange MinIO publishes to: bucketrun's default ``BUCKETRUN_AMQP__EXCHANGE``."""
NODE_NAME: Final = "bucketrun-node"
NODE_READY_TIMEOUT: Final = 60.0
"""Seconds the node agent may take to register a Ready Node."""
TOKEN_SECONDS: Final = 7 * 86400
"""How long the dispatcher's and the watcher's ServiceAccount tokens in stack.env stay valid (7 days)."""
SERVICE_ACCOUNT_TIMEOUT: Final = 30.0
"""Seconds the serviceaccount controller may take to create a new namespace's ``default`` ServiceAccount."""
STOP_TIMEOUT: Final = 60.0
"""Seconds ``stop_stack_dir`` gives the stack's own shutdown before it kills what is left."""
_SERVER_DIRS: Final = ("rabbitmq", "minio", "kube", "node")
_RBAC_FILES: Final = ("serviceaccounts.yaml", "rbac.yaml")
_NODE_AGENT: Final = "bucketrun.devtools.node_agent"


class StackError(RuntimeError):
    """The stack cannot start or stop; the message says what to do."""


@dataclass(frozen=True)
class StackOptions:
    """How to start the stack."""

    directory: Path
    """Where every server keeps its data and logs, and where ``stack.env`` and ``stack.json`` go."""
    node: bool = True
    """Start the node agent (without it, pods are scheduled nowhere and stay Pending)."""
    fsync: bool = True
    """etcd syncs its writes to disk; False (``--unsafe-no-fsync``) is faster and loses the cluster on a
    machine crash: for tests only."""
    node_args: tuple[str, ...] = ()
    """More options for the node agent, e.g. a larger allocatable ``--pods`` than a kubelet's 110."""


@dataclass
class Stack:
    """A running stack; ``stop()`` ends everything it started, newest first."""

    directory: Path
    rabbit: PrivateRabbitNode
    plane: ControlPlane
    minio: MinioServer
    node_agent: subprocess.Popen[bytes] | None = None
    node_control_port: int | None = None
    env: dict[str, str] = field(default_factory=dict)

    def process_groups(self) -> dict[str, int]:
        """Each running server's process group id (its process id: each runs in a session of its own)."""
        groups = {name: pid for name, pid in self.plane.pids.items() if pid is not None}
        if self.rabbit.pid is not None:
            groups["rabbitmq"] = self.rabbit.pid
        if self.minio.process.poll() is None:
            groups["minio"] = self.minio.process.pid
        if self.node_agent is not None and self.node_agent.poll() is None:
            groups["node-agent"] = self.node_agent.pid
        return groups

    def exited(self) -> list[str]:
        """The servers that have exited by themselves, each with its exit code and log."""
        gone = []
        for name, component in self.plane.components.items():
            if component.process is not None and component.process.poll() is not None:
                gone.append(f"{name} (exit {component.process.returncode}, log {component.log})")
        if self.minio.process.poll() is not None:
            gone.append(f"minio (exit {self.minio.process.returncode}, log {self.minio.log})")
        if not self.rabbit.running:
            gone.append(f"rabbitmq (log {self.rabbit.base_dir / 'log'})")
        if self.node_agent is not None and self.node_agent.poll() is not None:
            gone.append(f"node-agent (exit {self.node_agent.returncode}, log {self.directory / 'node.log'})")
        return gone

    def stop(self) -> None:
        """Stop the node agent, the control plane, MinIO and RabbitMQ, waiting for each."""
        if self.node_agent is not None:
            stop_group(self.node_agent, timeout=30.0)
        self.plane.stop()
        self.minio.stop()
        self.rabbit.close()
        (self.directory / ENV_FILE).unlink(missing_ok=True)
        (self.directory / STATE_FILE).unlink(missing_ok=True)

    def summary(self) -> str:
        """What runs where, for the banner ``bucketrun stack run`` prints."""
        node = (
            f"node agent: Node {NODE_NAME} (pods run as local processes; faults at "
            f"http://127.0.0.1:{self.node_control_port}/faults)"
            if self.node_agent is not None
            else "node agent: none (pods stay Pending)"
        )
        lines = [
            f"RabbitMQ: {self.rabbit.url.replace('guest:guest@', '')} (node {self.rabbit.node})",
            f"MinIO {self.env.get('STACK_MINIO_VERSION', '')}: S3 http://{self.minio.endpoint}, console "
            f"{self.minio.console_url} (user and password: BUCKETRUN_STORAGE__ACCESS_KEY/SECRET_KEY)",
            f"Kubernetes API: {self.plane.api_url} (namespace {NAMESPACE}, restricted PodSecurity)",
            *(f"  {line}" for line in self.plane.summary().splitlines()),
            node,
        ]
        return "\n".join(lines)


def node_agent_available() -> bool:
    """Whether this installation has the node agent (``bucketrun.devtools.node_agent``)."""
    return importlib.util.find_spec(_NODE_AGENT) is not None


def start_stack(options: StackOptions, out: TextIO = sys.stdout) -> Stack:
    """Start everything (see the module docstring) and write ``stack.env``; return once all is ready.

    ServersNotBuiltError naming a binary ``make servers`` has not built, StackError naming what else is
    missing (RabbitMQ) or what did not start; whatever started before the failure is stopped again.
    """
    directory = options.directory.resolve()
    _check_prerequisites()
    directory.mkdir(parents=True, exist_ok=True)
    for name in (*_SERVER_DIRS, ENV_FILE, STATE_FILE):
        path = directory / name
        shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
    rabbit = PrivateRabbitNode(directory / "rabbitmq", name_prefix="bucketrun-stack")
    started: list[Callable[[], None]] = [rabbit.close]
    try:
        plane = _start_rabbit_and_plane(rabbit, directory / "kube", options.fsync, started, out)
        prepare_namespace(plane)
        minio = _start_minio(directory / "minio", rabbit.url, out)
        started.append(minio.stop)
        stack = Stack(directory, rabbit, plane, minio)
        started.append(stack.stop)  # from here on, the whole stack stops as one
        if options.node and node_agent_available():
            _start_node_agent(stack, options.node_args, out)
        elif options.node:
            print("node agent: not in this installation; the stack has no node (pods stay Pending)", file=out)
        stack.env = stack_environment(stack) | _component_kubeconfigs(plane)
        write_state(directory, stack.process_groups(), rabbit.epmd_port)
        write_env(directory / ENV_FILE, stack.env)
    except BaseException:
        for stop in reversed(started):
            with contextlib.suppress(Exception):
                stop()
        raise
    return stack


def _check_prerequisites() -> None:
    """StackError (or ServersNotBuiltError) naming what is missing, before anything starts."""
    find_binaries()
    if built("minio") is None:
        raise StackError("minio is not built: run `make servers`")
    if not private_node_supported():
        raise StackError(
            "RabbitMQ's server is not installed (/usr/lib/rabbitmq/bin/rabbitmq-server, epmd): run "
            "`make system-deps` (as root) or `apt-get install rabbitmq-server`"
        )


def _start_rabbit_and_plane(
    rabbit: PrivateRabbitNode, kube_dir: Path, fsync: bool, started: list[Callable[[], None]], out: TextIO
) -> ControlPlane:
    """Boot RabbitMQ (≈6 s) while the control plane starts; each one's stop goes into *started*."""
    print("starting RabbitMQ and the Kubernetes control plane ...", file=out, flush=True)
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        booting = pool.submit(rabbit.start)
        try:
            plane = start_control_plane(kube_dir, fsync=fsync)
        finally:
            # wait for the node either way, so a failure leaves nothing half-started behind
            failure = booting.exception()
        started.append(plane.stop)
    if failure is not None:
        raise StackError(f"RabbitMQ did not start: {failure}") from failure
    return plane


def prepare_namespace(plane: ControlPlane, timeout: float = SERVICE_ACCOUNT_TIMEOUT) -> None:
    """The ``bucketrun`` namespace as deploy/kubernetes has it (PodSecurity: enforce ``baseline``, which
    admits the root images most OSCAR services use, warn ``restricted``) with deploy/kubernetes' RBAC in
    it; returns once its ``default`` ServiceAccount exists (until then ServiceAccount admission refuses its
    pods, and the Job controller backs off 10 s and more). StackError naming what failed."""
    base = deploy_dir() / "kubernetes" / "base"
    namespace = yaml.safe_load((base / "namespace.yaml").read_text(encoding="utf-8"))
    if namespace["metadata"]["name"] != NAMESPACE:
        raise StackError(
            f"{base / 'namespace.yaml'} names {namespace['metadata']['name']!r}, not {NAMESPACE!r}"
        )
    status, body = plane.request("POST", "/api/v1/namespaces", namespace)
    if status not in (201, 409):
        raise StackError(f"creating namespace {NAMESPACE}: HTTP {status} {body}")
    files = [arg for name in _RBAC_FILES for arg in ("-f", str(base / name))]
    try:
        plane.kubectl("apply", "--namespace", NAMESPACE, *files)
    except subprocess.CalledProcessError as error:
        raise StackError(f"kubectl apply of {base} RBAC failed: {error.stderr}") from error
    _wait_for_default_service_account(plane, timeout)


def _wait_for_default_service_account(plane: ControlPlane, timeout: float) -> None:
    path = f"/api/v1/namespaces/{NAMESPACE}/serviceaccounts/default"
    deadline = time.monotonic() + timeout
    while (status := plane.request("GET", path)[0]) != 200:
        if time.monotonic() > deadline:
            raise StackError(
                f"the ServiceAccount default of namespace {NAMESPACE} did not appear within {timeout:.0f} s "
                f"(last answer HTTP {status}): is kube-controller-manager running? (log under "
                f"{plane.base_dir / 'logs'})"
            )
        time.sleep(0.1)


def _component_kubeconfigs(plane: ControlPlane) -> dict[str, str]:
    """STACK_DISPATCHER_KUBECONFIG and STACK_WATCHER_KUBECONFIG: tokens of deploy/kubernetes'
    ServiceAccounts, allowed exactly their Roles (as in a cluster)."""
    return {
        f"STACK_{component.upper()}_KUBECONFIG": str(
            plane.service_account_kubeconfig(NAMESPACE, f"bucketrun-{component}", TOKEN_SECONDS)
        )
        for component in ("dispatcher", "watcher")
    }


def deploy_dir() -> Path:
    """The checkout's ``deploy/`` (the stack is a developer tool: it runs from a checkout)."""
    path = Path(__file__).resolve().parents[2] / "deploy"
    if not path.is_dir():
        raise StackError(f"{path} is missing: the local stack runs from a bucketrun checkout")
    return path


def _start_minio(base: Path, amqp_url: str, out: TextIO) -> MinioServer:
    minio = built("minio")
    if minio is None:
        raise StackError("minio is not built: run `make servers`")
    root = Credentials("bucketrun-stack", secrets.token_urlsafe(18))
    print("starting MinIO ...", file=out, flush=True)
    try:
        return start_minio(minio.path, base, root, amqp=AmqpTarget(amqp_url, EXCHANGE))
    except (RuntimeError, TimeoutError) as error:
        raise StackError(f"MinIO ({minio.path}) did not start: {error}") from error


def _start_node_agent(stack: Stack, args: Iterable[str], out: TextIO) -> None:
    """Run the node agent as ``system:node:NODE_NAME`` with *args*; return once its Node is Ready."""
    print("starting the node agent ...", file=out, flush=True)
    stack.node_agent, stack.node_control_port = start_node_agent_process(
        stack.plane, stack.directory / "node", stack.directory / "node.log", extra_args=args
    )


def start_node_agent_process(
    plane: ControlPlane,
    workdir: Path,
    log: Path,
    *,
    node_name: str = NODE_NAME,
    extra_args: Iterable[str] = (),
) -> tuple[subprocess.Popen[bytes], int]:
    """Start the node agent for *plane* as a process of its own (its session, output to *log*), as
    ``system:node:NODE_NAME`` serving logs with a certificate of the cluster CA; return it and its fault
    control port once its Node is Ready. *extra_args* are more of its command-line options.
    StackError quoting its log when it exits or the Node is not Ready within NODE_READY_TIMEOUT."""
    workdir.mkdir(parents=True, exist_ok=True)
    cert, key = plane.issue_serving_cert(node_name)
    kubeconfig = plane.kubeconfig_for(f"system:node:{node_name}", [NODES_GROUP])
    control_port = free_port()
    argv = [sys.executable, "-m", _NODE_AGENT, f"--kubeconfig={kubeconfig}", f"--node-name={node_name}"]
    argv += [
        f"--port={free_port()}",
        f"--tls-cert={cert}",
        f"--tls-key={key}",
        f"--client-ca={plane.ca_cert}",
    ]
    argv += [f"--workdir={workdir}", f"--control-port={control_port}", *extra_args]
    with log.open("ab") as sink:
        agent = subprocess.Popen(argv, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + NODE_READY_TIMEOUT
    while not _node_ready(plane, node_name):
        if agent.poll() is not None or time.monotonic() > deadline:
            stop_group(agent, timeout=10.0)
            tail = log.read_text(errors="replace")[-2000:]
            raise StackError(f"the node agent did not register a Ready Node; its log ({log}) ends:\n{tail}")
        time.sleep(0.2)
    return agent, control_port


def _node_ready(plane: ControlPlane, node_name: str = NODE_NAME) -> bool:
    status, node = plane.request("GET", f"/api/v1/nodes/{node_name}")
    conditions = node.get("status", {}).get("conditions", []) if status == 200 else []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def stack_environment(stack: Stack) -> dict[str, str]:
    """``stack.env``'s values: KUBECONFIG, bucketrun's settings for this stack, and STACK_* facts."""
    root = stack.minio.root
    env = {
        "KUBECONFIG": str(stack.plane.kubeconfig),
        "BUCKETRUN_AMQP__URL": stack.rabbit.url,
        "BUCKETRUN_AMQP__EXCHANGE": EXCHANGE,
        # what MinIO's AMQP target declares (minio_server): the same exchange, or the broker refuses it
        "BUCKETRUN_AMQP__EXCHANGE_TYPE": "fanout",
        "BUCKETRUN_AMQP__EXCHANGE_DURABLE": "true",
        "BUCKETRUN_STORAGE__ENDPOINT": stack.minio.endpoint,
        "BUCKETRUN_STORAGE__ACCESS_KEY": root.user,
        "BUCKETRUN_STORAGE__SECRET_KEY": root.password,
        "BUCKETRUN_STORAGE__REGION": "us-east-1",
        "BUCKETRUN_STORAGE__SECURE": "false",
        "BUCKETRUN_STORAGE__NOTIFY_ARN": stack.minio.notify_arn or "",
        "BUCKETRUN_CLUSTER__EXECUTOR": "kubernetes",
        "BUCKETRUN_CLUSTER__NAMESPACE": NAMESPACE,
        "STACK_DIR": str(stack.directory),
        "STACK_KUBE_API": stack.plane.api_url,
        "STACK_KUBE_CA": str(stack.plane.ca_cert),
        "STACK_MINIO_CONSOLE": stack.minio.console_url,
        "STACK_MINIO_VERSION": _version("minio"),
        "STACK_KUBERNETES_VERSION": stack.plane.versions["kube-apiserver"],
        "STACK_KUBECTL": str(stack.plane.binaries["kubectl"].path),
    }
    if stack.node_agent is not None:
        env["STACK_NODE"] = NODE_NAME
        env["STACK_NODE_FAULTS"] = f"http://127.0.0.1:{stack.node_control_port}/faults"
    return env


def _version(name: str) -> str:
    server = built(name)
    return server.version if server else "?"


def write_env(path: Path, env: Mapping[str, str]) -> None:
    """*env* as shell-sourceable ``KEY=value`` lines (values quoted where needed), mode 0600 (it holds
    MinIO's root password), replaced atomically so a reader never sees half of it."""
    partial = path.with_suffix(".partial")
    partial.touch(mode=0o600)
    partial.write_text("".join(f"{key}={shlex.quote(value)}\n" for key, value in env.items()))
    partial.replace(path)


def read_env(path: Path) -> dict[str, str]:
    """The ``KEY=value`` lines of a ``stack.env`` (as ``write_env`` writes them)."""
    env = {}
    for line in path.read_text().splitlines():
        key, _, value = line.partition("=")
        if key and not key.startswith("#"):
            (env[key],) = shlex.split(value) or [""]
    return env


@dataclass(frozen=True)
class StackState:
    """What ``stack.json`` records: who supervises the stack and every process group it started."""

    supervisor: int | None
    process_groups: dict[str, int]
    epmd_port: int | None

    @classmethod
    def read(cls, directory: Path) -> StackState | None:
        """The state in *directory*, None when there is none."""
        path = directory / STATE_FILE
        if not path.is_file():
            return None
        data: dict[str, Any] = json.loads(path.read_text())
        return cls(data.get("supervisor"), dict(data.get("process_groups", {})), data.get("epmd_port"))


def write_state(directory: Path, groups: Mapping[str, int], epmd_port: int | None) -> None:
    """Record this process as the supervisor of *groups* (see ``StackState``)."""
    state = {"supervisor": os.getpid(), "process_groups": dict(groups), "epmd_port": epmd_port}
    partial = directory / f"{STATE_FILE}.partial"
    partial.write_text(json.dumps(state, indent=2))
    partial.replace(directory / STATE_FILE)


def alive(pid: int) -> bool:
    """Whether process *pid* exists (and is not a zombie)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def stop_stack_dir(directory: Path, timeout: float = STOP_TIMEOUT) -> list[str]:
    """Stop the stack recorded in *directory*: SIGTERM its supervisor (which stops every server in
    order) and wait; then kill whatever is still running of what it recorded. Returns what was done,
    one line each; an empty list when nothing was running."""
    state = StackState.read(directory)
    if state is None:
        return []
    done = []
    if state.supervisor is not None and alive(state.supervisor):
        os.kill(state.supervisor, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while alive(state.supervisor) and time.monotonic() < deadline:
            time.sleep(0.1)
        done.append(f"stopped the stack (supervisor {state.supervisor})")
    left = _kill_groups(state.process_groups.items(), marker=str(directory.resolve()))
    if left:
        done.append(f"killed what was left: {', '.join(left)}")
    if state.epmd_port is not None:
        kill_epmd(state.epmd_port)
    (directory / STATE_FILE).unlink(missing_ok=True)
    (directory / ENV_FILE).unlink(missing_ok=True)
    return done


def _kill_groups(groups: Iterable[tuple[str, int]], marker: str) -> list[str]:
    """SIGKILL each recorded process group that still has a process with *marker* (the stack's
    directory) on its command line: a process group id reused by anything else is left alone."""
    killed = []
    for name, pgid in groups:
        if not any(marker in command_line for command_line in group_command_lines(pgid)):
            continue
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)
            killed.append(f"{name} ({pgid})")
    return killed


def group_command_lines(pgid: int) -> list[str]:
    """The command lines of the live processes in process group *pgid* (the leader may be a shell
    script, as RabbitMQ's is, whose command line names nothing of the stack)."""
    lines = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            if fields[0] == "Z" or int(fields[2]) != pgid:
                continue
            lines.append((entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"))
        except (OSError, IndexError, ValueError):
            continue
    return lines
