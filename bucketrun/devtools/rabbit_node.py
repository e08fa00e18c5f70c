"""A private RabbitMQ node, for the local stack and the tests: started, stopped and restarted without
touching the machine's broker.

It runs Debian's `rabbitmq-server` directly (the /usr/sbin wrapper switches user and shares
/var/lib/rabbitmq) with its own node name, AMQP/distribution/epmd ports, data, logs and HOME (so
its own Erlang cookie), all under one directory. ``close()`` also ends the node's own epmd, which
Erlang starts as a daemon outside the node's process group.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

from bucketrun.devtools.moto_server import free_port, port_open

SERVER = Path("/usr/lib/rabbitmq/bin/rabbitmq-server")
CTL = Path("/usr/lib/rabbitmq/bin/rabbitmqctl")
BOOT_TIMEOUT = 60.0
"""Seconds the node may take to accept AMQP connections (≈6 s here)."""
STOP_TIMEOUT = 30.0
"""Seconds a graceful stop may take before the node is killed."""


def private_node_supported() -> bool:
    """True when Debian's RabbitMQ binaries (and epmd) are installed here."""
    return SERVER.exists() and CTL.exists() and shutil.which("epmd") is not None


class PrivateRabbitNode:
    """One private broker node: `start()`, `stop()`, `restart()`; the AMQP port survives restarts."""

    def __init__(self, base_dir: Path, name_prefix: str = "bucketrun-test") -> None:
        self.base_dir = base_dir
        self.amqp_port = free_port()
        self.dist_port = free_port()
        self.epmd_port = free_port()
        self.node = f"{name_prefix}-{self.amqp_port}@localhost"
        self._proc: subprocess.Popen[bytes] | None = None
        for sub in ("home", "mnesia", "log"):
            (base_dir / sub).mkdir(parents=True, exist_ok=True)
        (base_dir / "rabbitmq.conf").write_text(
            f"listeners.tcp.local = 127.0.0.1:{self.amqp_port}\n"
            "loopback_users = none\n"
            # The machine may be busy: don't let a disk/memory alarm block publishers in tests.
            "disk_free_limit.absolute = 50MB\n"
        )
        (base_dir / "enabled_plugins").write_text("[].\n")
        (base_dir / "rabbitmq-env.conf").write_text("")

    @property
    def url(self) -> str:
        """AMQP URL of this node (guest/guest on loopback)."""
        return f"amqp://guest:guest@127.0.0.1:{self.amqp_port}/"

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("RABBITMQ_", "ERL_"))}
        env.update(
            HOME=str(self.base_dir / "home"),
            RABBITMQ_NODENAME=self.node,
            RABBITMQ_NODE_IP_ADDRESS="127.0.0.1",
            RABBITMQ_NODE_PORT=str(self.amqp_port),
            RABBITMQ_DIST_PORT=str(self.dist_port),
            ERL_EPMD_PORT=str(self.epmd_port),
            ERL_EPMD_ADDRESS="127.0.0.1",
            RABBITMQ_MNESIA_BASE=str(self.base_dir / "mnesia"),
            RABBITMQ_LOG_BASE=str(self.base_dir / "log"),
            RABBITMQ_CONFIG_FILE=str(self.base_dir / "rabbitmq.conf"),
            RABBITMQ_CONF_ENV_FILE=str(self.base_dir / "rabbitmq-env.conf"),
            RABBITMQ_ENABLED_PLUGINS_FILE=str(self.base_dir / "enabled_plugins"),
            RABBITMQ_ENABLED_PLUGINS="",
        )
        return env

    @property
    def pid(self) -> int | None:
        """The node's process id (its process group's too) while it runs."""
        return self._proc.pid if self._proc is not None and self.running else None

    @property
    def running(self) -> bool:
        """True while the node's process is alive."""
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> None:
        """Boot the node and return once it accepts AMQP connections."""
        if self.running:
            return
        log = (self.base_dir / "log" / "console.log").open("ab")
        self._proc = subprocess.Popen(
            [str(SERVER)], env=self._env(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.close()
        deadline = time.monotonic() + BOOT_TIMEOUT
        while not port_open("127.0.0.1", self.amqp_port):
            if self._proc.poll() is not None:
                raise RuntimeError(
                    f"private RabbitMQ node exited with {self._proc.returncode}: {self._tail()}"
                )
            if time.monotonic() > deadline:
                self.kill()
                raise TimeoutError(f"private RabbitMQ node not up after {BOOT_TIMEOUT}s: {self._tail()}")
            time.sleep(0.1)

    def stop(self) -> None:
        """Stop the node gracefully (as an operator would), killing it if that takes too long."""
        if self._proc is None or not self.running:
            return
        self._proc.send_signal(signal.SIGTERM)
        try:
            self._proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.kill()
        self._wait_port_closed()

    def kill(self) -> None:
        """Kill the node's whole process group at once (a crash, not a shutdown)."""
        if self._proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self._proc.pid, signal.SIGKILL)
        self._proc.wait()
        self._wait_port_closed()

    def restart(self) -> None:
        """Stop then start again on the same ports, keeping its data."""
        self.stop()
        self.start()

    def close(self) -> None:
        """Stop the node and its private epmd; nothing of it is left running."""
        self.stop()
        self.kill()
        kill_epmd(self.epmd_port)

    def _wait_port_closed(self) -> None:
        deadline = time.monotonic() + STOP_TIMEOUT
        while port_open("127.0.0.1", self.amqp_port) and time.monotonic() < deadline:
            time.sleep(0.05)

    def tail(self) -> str:
        """The end of the node's console log, for error messages."""
        return self._tail()

    def _tail(self) -> str:
        path = self.base_dir / "log" / "console.log"
        return path.read_text(errors="replace")[-2000:] if path.exists() else "(no log)"


def kill_epmd(port: int) -> None:
    """End the epmd daemon listening on *port* (a private node's), if there is one."""
    epmd = shutil.which("epmd")
    if epmd is None:
        return
    env = {k: v for k, v in os.environ.items() if k != "ERL_EPMD_PORT"}
    subprocess.run([epmd, "-port", str(port), "-kill"], env=env, capture_output=True, check=False, timeout=10)
