"""Run the emulator as a subprocess for tests: `with run_emulator(tmp_path, kubelet="instant") as emu: ...`.

The emulator runs in its own process group. On exit it gets SIGTERM (it then kills its pods'
processes), then the whole group gets SIGKILL, and any pod process left over (pod processes run in
sessions of their own) is found by its working directory under the state dir and killed: no stray
processes and no listening port survive the context.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from tests.k8s_emulator.config import EmulatorConfig
from tests.k8s_emulator.control import EmulatorControl

REPO_ROOT = Path(__file__).resolve().parents[2]
TOKEN = "emulator-token"  # the emulator accepts any bearer token; kubeconfigs need one
_POLL = 0.02
_STOP_GRACE = 10.0


@dataclass(frozen=True)
class EmulatorHandle:
    """A running emulator: where it listens, a kubeconfig for it, and its control client."""

    url: str
    kubeconfig: Path
    control: EmulatorControl
    process: subprocess.Popen[bytes]
    state_dir: Path
    log_path: Path
    """The emulator's stdout and stderr."""

    @property
    def port(self) -> int:
        """The TCP port the API listens on."""
        port = urlsplit(self.url).port
        assert port is not None
        return port

    @property
    def pid(self) -> int:
        """The emulator's process id (also its process group id)."""
        return self.process.pid


def write_kubeconfig(path: Path, url: str, *, namespace: str = "default") -> Path:
    """A kubeconfig with one cluster (*url*), a dummy token user and a current context."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "emulator", "cluster": {"server": url}}],
        "users": [{"name": "emulator", "user": {"token": TOKEN}}],
        "contexts": [
            {
                "name": "emulator",
                "context": {"cluster": "emulator", "user": "emulator", "namespace": namespace},
            }
        ],
        "current-context": "emulator",
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def _tail(path: Path, limit: int = 4000) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no output)"
    return text[-limit:] or "(no output)"


def _wait_ready(process: subprocess.Popen[bytes], ready_file: Path, log_path: Path, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready_file.exists():
            return str(json.loads(ready_file.read_text())["url"])
        if process.poll() is not None:
            raise RuntimeError(
                f"the Kubernetes emulator exited with status {process.returncode} before it was ready; "
                f"its output:\n{_tail(log_path)}"
            )
        time.sleep(_POLL)
    raise RuntimeError(
        f"the Kubernetes emulator was not ready after {timeout} s; its output:\n{_tail(log_path)}"
    )


def processes_under(directory: Path) -> list[int]:
    """Processes whose working directory or HOME lies under *directory* (pod processes of this emulator)."""
    marker = str(directory.resolve())
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        with suppress(OSError):
            cwd = str((entry / "cwd").readlink())
            if cwd == marker or cwd.startswith(marker + "/"):
                found.append(int(entry.name))
                continue
        with suppress(OSError):
            environ = (entry / "environ").read_bytes().split(b"\0")
            if any(item.startswith(b"HOME=" + marker.encode()) for item in environ):
                found.append(int(entry.name))
    return found


def kill_leftovers(state_dir: Path) -> list[int]:
    """SIGKILL every process still working under *state_dir*; returns their ids."""
    pids = processes_under(state_dir) if state_dir.exists() else []
    for pid in pids:
        with suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    return pids


def stop_emulator(process: subprocess.Popen[bytes], state_dir: Path, grace: float = _STOP_GRACE) -> None:
    """SIGTERM the emulator (it stops its pods), SIGKILL its process group, kill leftover pod processes."""
    if process.poll() is None:
        with suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        with suppress(subprocess.TimeoutExpired):
            process.wait(grace)
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    kill_leftovers(state_dir)


@contextmanager
def run_emulator(tmp_path: Path, *, startup_timeout: float = 30.0, **knobs: Any) -> Iterator[EmulatorHandle]:
    """Start the emulator (knobs: any `EmulatorConfig` field but host/port/state_dir/ready_file) and stop it
    on exit, whole process group included. RuntimeError with the emulator's output if it does not start."""
    base = Path(tempfile.mkdtemp(prefix="k8s-emulator-", dir=tmp_path))
    state_dir, ready_file, log_path = base / "state", base / "ready.json", base / "emulator.log"
    state_dir.mkdir()
    config = EmulatorConfig(state_dir=state_dir, ready_file=ready_file, **knobs)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "tests.k8s_emulator", *config.to_argv()],
            cwd=REPO_ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        url = _wait_ready(process, ready_file, log_path, startup_timeout)
        kubeconfig = write_kubeconfig(base / "kubeconfig", url)
        yield EmulatorHandle(url, kubeconfig, EmulatorControl(url), process, state_dir, log_path)
    finally:
        stop_emulator(process, state_dir)
