"""`bucketrun stack up|down` (what `make stack-up` / `make stack-down` run): up returns once the stack is
ready with a stack.env whose values work (kubectl, the settings, RabbitMQ, MinIO), refuses a second
stack in the same directory, and down leaves no process behind, also after the process that
supervised the stack was killed.

Skipped, saying why, where `make servers` has not built the servers or RabbitMQ is not installed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

from bucketrun.devtools.control_plane import ServersNotBuiltError, find_binaries
from bucketrun.devtools.minio_server import built
from bucketrun.devtools.moto_server import port_open
from bucketrun.devtools.rabbit_node import private_node_supported
from bucketrun.devtools.stack import (
    ENV_FILE,
    NAMESPACE,
    StackState,
    alive,
    group_command_lines,
    node_agent_available,
    read_env,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

UP_TIMEOUT = 240


@pytest.fixture(autouse=True)
def _servers_built() -> None:
    try:
        find_binaries()
    except ServersNotBuiltError as error:
        pytest.skip(f"the control plane is not built: {error}")
    if built("minio") is None:
        pytest.skip("MinIO is not built: make servers")
    if not private_node_supported():
        pytest.skip("RabbitMQ is not installed: make system-deps")


def bucketrun(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bucketrun.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=UP_TIMEOUT + 60,
        env=env,
        check=False,
    )


def processes_mentioning(marker: str) -> dict[int, str]:
    """Live processes whose command line contains *marker* (the stack's directory)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            command_line = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if marker in command_line and alive(int(entry.name)):
            found[int(entry.name)] = command_line
    return found


def group_alive(pgid: int) -> bool:
    """Whether process group *pgid* has a live member (zombies that init has not reaped yet aside)."""
    return bool(group_command_lines(pgid))


def wait_until(check: Callable[[], bool], what: str, within: float = 30.0) -> None:
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {within} s waiting for {what}")
        time.sleep(0.1)  # the processes are not ours to wait on: poll


HELLO_JOB = """
apiVersion: batch/v1
kind: Job
metadata: {name: hello}
spec:
  backoffLimit: 0
  template:
    spec:
      restartPolicy: Never
      automountServiceAccountToken: false
      containers:
      - name: main
        image: busybox
        command: ["sh", "-c", "echo hello from the stack"]
        securityContext:
          runAsNonRoot: true
          runAsUser: 1000
          allowPrivilegeEscalation: false
          capabilities: {drop: [ALL]}
          seccompProfile: {type: RuntimeDefault}
"""


def run_a_job(kubectl: list[str]) -> None:
    """A Job that meets PodSecurity "restricted" completes on the node agent; kubectl reads its log
    through the API server."""
    subprocess.run(
        [*kubectl, "apply", "-n", NAMESPACE, "-f", "-"], input=HELLO_JOB, text=True, timeout=60, check=True
    )
    subprocess.run(
        [*kubectl, "wait", "-n", NAMESPACE, "--for=condition=Complete", "job/hello", "--timeout=60s"],
        capture_output=True,
        timeout=90,
        check=True,
    )
    logs = subprocess.run(
        [*kubectl, "logs", "-n", NAMESPACE, "job/hello"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert logs.stdout == "hello from the stack\n"


def test_up_writes_a_working_env_and_down_leaves_nothing(tmp_path: Path) -> None:
    directory = tmp_path / "stack"
    up = bucketrun("stack", "up", "--dir", str(directory), "--unsafe-no-fsync")
    assert up.returncode == 0, up.stderr + up.stdout
    assert "(hidden)" in up.stdout  # MinIO's root password is not printed
    env_file = directory / ENV_FILE
    assert env_file.stat().st_mode & 0o077 == 0, "stack.env holds a password: owner only"
    env = read_env(env_file)
    state = StackState.read(directory)
    assert state is not None
    assert state.supervisor is not None
    try:
        # the values work from a shell that sources the file
        shell = subprocess.run(
            ["bash", "-c", f'set -a; . "{env_file}"; set +a; "$STACK_KUBECTL" get ns -o name'],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert shell.returncode == 0, shell.stderr
        assert f"namespace/{NAMESPACE}" in shell.stdout.split()
        kubectl = [env["STACK_KUBECTL"], "--kubeconfig", env["KUBECONFIG"]]
        labels = subprocess.run(
            [*kubectl, "get", "ns", NAMESPACE, "-o", "jsonpath={.metadata.labels}"],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout
        # As deploy/kubernetes has it: root images (most OSCAR services') admitted, the rest warned about.
        assert '"pod-security.kubernetes.io/enforce":"baseline"' in labels
        assert '"pod-security.kubernetes.io/warn":"restricted"' in labels
        roles = subprocess.run(
            [*kubectl, "get", "roles", "-n", NAMESPACE, "-o", "name"],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout.split()
        assert "role.rbac.authorization.k8s.io/bucketrun-dispatcher" in roles
        for kubeconfig, question, allowed in (
            ("STACK_DISPATCHER_KUBECONFIG", ("create", "jobs.batch"), "yes"),
            ("STACK_DISPATCHER_KUBECONFIG", ("delete", "jobs.batch"), "no"),
            ("STACK_WATCHER_KUBECONFIG", ("get", "pods", "--subresource=log"), "yes"),
            ("STACK_WATCHER_KUBECONFIG", ("get", "secrets"), "no"),
        ):
            can_i = subprocess.run(
                [env["STACK_KUBECTL"], "--kubeconfig", env[kubeconfig], "auth", "can-i", *question],
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            assert can_i.stdout.strip() == allowed, (kubeconfig, question, can_i.stdout, can_i.stderr)
        if node_agent_available():
            nodes = subprocess.run(
                [*kubectl, "get", "nodes", "-o", "name"],
                capture_output=True,
                text=True,
                timeout=60,
                check=True,
            ).stdout.split()
            assert nodes == [f"node/{env['STACK_NODE']}"]
            run_a_job(kubectl)

        settings = bucketrun("dispatcher", "--print-settings", env={**os.environ, **env})
        assert settings.returncode == 0, settings.stderr
        assert "cluster.executor = 'kubernetes'" in settings.stdout
        assert f"storage.endpoint = '{env['BUCKETRUN_STORAGE__ENDPOINT']}'" in settings.stdout

        amqp_port = int(env["BUCKETRUN_AMQP__URL"].rsplit(":", 1)[1].strip("/"))
        assert port_open("127.0.0.1", amqp_port)
        health = f"http://{env['BUCKETRUN_STORAGE__ENDPOINT']}/minio/health/cluster"
        with urllib.request.urlopen(health, timeout=10) as response:
            assert response.status == 200

        again = bucketrun("stack", "up", "--dir", str(directory))
        assert again.returncode == 1
        assert "already runs" in again.stderr
    finally:
        down = bucketrun("stack", "down", "--dir", str(directory))
    assert down.returncode == 0, down.stderr
    assert "stopped the stack" in down.stdout
    assert not env_file.exists()
    assert not alive(state.supervisor)
    assert not [name for name, pgid in state.process_groups.items() if group_alive(pgid)]
    assert processes_mentioning(str(directory)) == {}
    epmd_port = state.epmd_port
    assert epmd_port is not None
    wait_until(lambda: not port_open("127.0.0.1", epmd_port), "the private epmd to stop")
    assert bucketrun("stack", "down", "--dir", str(directory)).stdout.startswith("no stack runs")


def test_down_kills_what_is_left_when_the_supervisor_was_killed(tmp_path: Path) -> None:
    directory = tmp_path / "stack"
    up = bucketrun("stack", "up", "--dir", str(directory), "--unsafe-no-fsync", "--no-node")
    assert up.returncode == 0, up.stderr + up.stdout
    state = StackState.read(directory)
    assert state is not None
    supervisor = state.supervisor
    assert supervisor is not None
    assert set(state.process_groups) >= {"etcd", "kube-apiserver", "minio", "rabbitmq"}
    os.kill(supervisor, signal.SIGKILL)
    wait_until(lambda: not alive(supervisor), "the supervisor to die")
    assert all(group_alive(pgid) for pgid in state.process_groups.values())

    down = bucketrun("stack", "down", "--dir", str(directory))

    assert down.returncode == 0, down.stderr
    assert "killed what was left" in down.stdout
    wait_until(lambda: processes_mentioning(str(directory)) == {}, "every server of the stack to exit")
    wait_until(
        lambda: not [name for name, pgid in state.process_groups.items() if group_alive(pgid)],
        "every process group of the stack to end",
    )
