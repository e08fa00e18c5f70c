"""RabbitMQ for tests: a container, a configured URL, or the machine's own server — and a private node.

Choice order for the shared broker (`rabbitmq_url`):
1. testcontainers RabbitMQ, where a Docker engine answers;
2. `BUCKETRUN_TEST_AMQP_URL` (a real deployment);
3. the local server on 127.0.0.1:5672 — started with `rabbitmq-server -detached` if installed but
   stopped, installed with apt-get first if missing.

Tests share that broker and stay isolated by unique names (`amqp_names`), so they run in any order.
`private_rabbitmq` is a node of the test's own that it may stop and restart.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import aio_pika  # noqa: TID251 - test infrastructure talks to the broker directly
import pytest

from tests.backends import docker_available, import_quietly, port_open, record_backend
from tests.backends.rabbit_node import PrivateRabbitNode, private_node_supported

LOCAL_URL = "amqp://guest:guest@127.0.0.1:5672/"
START_TIMEOUT = 90.0


def _ensure_local_server() -> str:
    """Make sure the machine's RabbitMQ answers on 5672; say what it took."""
    if port_open("127.0.0.1", 5672):
        return "already running"
    if shutil.which("rabbitmq-server") is None:
        if os.geteuid() != 0 or shutil.which("apt-get") is None:
            pytest.exit("RabbitMQ is not installed and cannot be installed here (need root and apt-get)", 3)
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-q"], check=True, env=env, timeout=600)
        subprocess.run(
            ["apt-get", "install", "-y", "-q", "rabbitmq-server"], check=True, env=env, timeout=900
        )
    subprocess.run(["rabbitmq-server", "-detached"], check=False, timeout=60)
    deadline = time.monotonic() + START_TIMEOUT
    while not port_open("127.0.0.1", 5672):
        if time.monotonic() > deadline:
            pytest.exit(f"local RabbitMQ did not open 127.0.0.1:5672 within {START_TIMEOUT}s", 3)
        time.sleep(0.2)
    return "started by the tests"


@pytest.fixture(scope="session")
def rabbitmq_url() -> Iterator[str]:
    """AMQP URL of the broker shared by this test session."""
    if docker_available():
        containers = import_quietly("testcontainers.community.rabbitmq")
        with containers.RabbitMqContainer("rabbitmq:3.13-management") as container:
            host, port = container.get_container_host_ip(), container.get_exposed_port(5672)
            record_backend("rabbitmq", "testcontainers", f"{host}:{port}")
            yield f"amqp://guest:guest@{host}:{port}/"
        return
    if url := os.environ.get("BUCKETRUN_TEST_AMQP_URL"):
        record_backend("rabbitmq", "env", "BUCKETRUN_TEST_AMQP_URL")
        yield url
        return
    how = _ensure_local_server()
    record_backend("rabbitmq", "local", f"127.0.0.1:5672, {how}")
    yield LOCAL_URL


@dataclass
class AmqpNames:
    """Unique exchange/queue names for one test; everything named here is deleted after it."""

    url: str
    prefix: str = field(default_factory=lambda: f"t-{uuid.uuid4().hex[:10]}")
    exchanges: list[str] = field(default_factory=list)
    queues: list[str] = field(default_factory=list)

    def exchange(self, role: str) -> str:
        """A unique exchange name for *role*, removed at teardown."""
        name = f"{self.prefix}.{role}"
        self.exchanges.append(name)
        return name

    def queue(self, role: str) -> str:
        """A unique queue name for *role*, removed at teardown."""
        name = f"{self.prefix}.{role}"
        self.queues.append(name)
        return name

    async def cleanup(self) -> None:
        """Delete every queue and exchange handed out (unconditionally: tests leave messages behind)."""
        connection = await aio_pika.connect(self.url, timeout=10)
        async with connection:
            channel = await connection.channel()
            for queue in self.queues:
                await channel.queue_delete(queue, if_unused=False, if_empty=False)
            for exchange in self.exchanges:
                await channel.exchange_delete(exchange, if_unused=False)


@pytest.fixture
async def amqp_names(rabbitmq_url: str) -> AsyncIterator[AmqpNames]:
    """Per-test unique names on the shared broker (isolation without vhosts, which need admin rights)."""
    names = AmqpNames(rabbitmq_url)
    yield names
    await names.cleanup()


@pytest.fixture
def private_rabbitmq(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateRabbitNode]:
    """A broker node of this test's own, which it may `stop()`, `kill()`, `start()` and `restart()`."""
    if not private_node_supported():
        pytest.skip(
            "a private RabbitMQ node needs Debian's rabbitmq-server (apt-get install rabbitmq-server)"
        )
    node = PrivateRabbitNode(Path(tmp_path_factory.mktemp("rabbit-node")))
    record_backend("rabbitmq-private", "local-private-node", f"127.0.0.1:{node.amqp_port} ({node.node})")
    try:
        node.start()
        yield node
    finally:
        node.close()
