"""The bucket poller against real servers: RabbitMQ and S3 (moto, which sends no notifications).

The acceptance: 500 objects uploaded while it runs and 100 more across a restart become exactly 600
events, and nothing already announced is announced again.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
from collections import Counter
from collections.abc import Iterable
from functools import partial
from pathlib import Path

import aio_pika  # noqa: TID251 - the test reads the events exchange through its own queue
import pytest

from dispatcher.adapters.amqp.client import AmqpClient
from dispatcher.adapters.s3.storage import Storage
from dispatcher.domain.events import parse_message
from dispatcher.fdl.catalog import load_catalog
from dispatcher.poller.app import Poller, list_targets, run_poller
from dispatcher.poller.seen_objects import SeenObjects
from dispatcher.runtime.settings import Settings
from tests.backends.rabbitmq import AmqpNames
from tests.backends.s3 import S3Scope
from tests.integration.stack import amqp_settings, started, storage_settings, until

pytestmark = pytest.mark.integration

FDL = """
functions:
  oscar:
  - c:
      name: upper
      image: busybox:1.36
      script: "exit 0\\n"
      input: [{storage_provider: minio, path: DATA/in}]
      output: [{storage_provider: minio, path: DATA/out}]
"""


class Events:
    """The events exchange seen through a queue of the test's own."""

    def __init__(self, url: str, queue: str) -> None:
        self.url, self.queue = url, queue
        self.keys: list[tuple[str, str | None]] = []

    async def drain(self) -> list[tuple[str, str | None]]:
        """Every event published so far, as (key, eTag), appended to ``keys``."""
        connection = await aio_pika.connect(self.url)
        async with connection:
            channel = await connection.channel()
            queue = await channel.get_queue(self.queue, ensure=False)
            while (message := await queue.get(no_ack=True, fail=False)) is not None:
                self.keys.extend((event.key, event.etag) for event in parse_message(message.body))
        return self.keys

    async def reach(self, count: int) -> None:
        async def enough() -> bool:
            return len(await self.drain()) >= count

        await until(enough, f"{count} events", within=60)


def _settings(names: AmqpNames, s3: S3Scope, fdl: Path, state: Path) -> Settings:
    return Settings.load(
        amqp=amqp_settings(names),
        storage=storage_settings(s3.endpoint, records_bucket=s3.bucket("records")),
        services={"paths": (fdl,)},
        poller={"interval": 0.2, "state_file": state, "batch_size": 50},
    )


@pytest.fixture
async def setup(amqp_names: AmqpNames, s3: S3Scope, tmp_path: Path) -> tuple[Settings, str, Events]:
    data = s3.bucket("data")
    fdl = tmp_path / "services.yaml"
    fdl.write_text(FDL.replace("DATA", data))
    settings = _settings(amqp_names, s3, fdl, tmp_path / "poller" / "seen.sqlite3")
    queue_name = amqp_names.queue("observer")
    connection = await aio_pika.connect(amqp_names.url)
    async with connection:
        channel = await connection.channel()
        # Declared as the topology declares it, so whichever side comes first, the other agrees.
        exchange = await channel.declare_exchange(
            settings.amqp.exchange, aio_pika.ExchangeType.FANOUT, durable=True
        )
        queue = await channel.declare_queue(queue_name, durable=True)
        await queue.bind(exchange)
    return settings, data, Events(amqp_names.url, queue_name)


def poller(settings: Settings) -> contextlib.AbstractAsyncContextManager[asyncio.Task[None]]:
    """The poller running in this process until the block ends."""
    return started(partial(run_poller, settings), "poller")


async def _upload(s3: S3Scope, bucket: str, keys: Iterable[str], body: bytes = b"x") -> None:
    client = s3.endpoint.client()

    def put(key: str) -> None:
        client.put_object(bucket, key, io.BytesIO(body), len(body))

    await asyncio.gather(*(asyncio.to_thread(put, key) for key in keys))


async def test_600_objects_across_a_restart_become_exactly_600_events(setup, s3: S3Scope) -> None:
    settings, data, events = setup
    first = [f"in/first/{n:03d}.txt" for n in range(500)]
    second = [f"in/second/{n:03d}.txt" for n in range(100)]
    # Never announced: outside the input folder, and a folder marker inside it.
    await _upload(s3, data, ["elsewhere/x.txt", "in/folder/"], b"")

    async with poller(settings):
        await _upload(s3, data, first)
        await events.reach(500)
    await _upload(s3, data, second[:50])  # while it is stopped
    async with poller(settings):
        await _upload(s3, data, second[50:])
        await events.reach(600)

    # One more full cycle over the same state announces nothing.
    catalog = load_catalog(settings.services.paths)
    async with await AmqpClient.connect(settings.amqp) as amqp:
        with SeenObjects(settings.poller.state_file) as seen:
            again = Poller(
                settings, amqp, Storage(settings.storage), seen, list_targets(catalog.services.values())
            )
            report = await again.poll_once()
            assert (report.listed, report.published, len(seen)) == (601, 0, 600)

    keys = Counter(key for key, _ in await events.drain())
    assert sorted(keys) == sorted(first + second)
    assert set(keys.values()) == {1}, [key for key, n in keys.items() if n > 1][:10]


async def test_a_reupload_with_new_content_is_announced_again(setup, s3: S3Scope) -> None:
    settings, data, events = setup
    await _upload(s3, data, ["in/photo.txt"], b"old")
    async with poller(settings):
        await events.reach(1)
        await _upload(s3, data, ["in/photo.txt"], b"new content")
        await events.reach(2)
    (old, new) = await events.drain()
    assert old[0] == new[0] == "in/photo.txt"
    assert old[1] != new[1]
