"""The test backends themselves: each really is the server it claims to be, and cleans up after itself."""

from __future__ import annotations

import asyncio
import io
import subprocess
import urllib.request

import aio_pika  # noqa: TID251 - exercising the broker directly
import pytest

from bucketrun.devtools.moto_server import start_moto
from tests.backends import port_open
from tests.backends.rabbit_node import PrivateRabbitNode
from tests.backends.rabbitmq import AmqpNames
from tests.backends.s3 import S3Scope

pytestmark = pytest.mark.integration


async def _get_one(
    queue: aio_pika.abc.AbstractQueue, within: float = 10.0
) -> aio_pika.abc.AbstractIncomingMessage:
    """Wait (bounded) for one message on *queue*."""
    async with asyncio.timeout(within):
        while True:
            message = await queue.get(fail=False)
            if message is not None:
                return message
            await asyncio.sleep(0.02)


async def test_shared_broker_round_trip_with_quorum_queue_and_dead_letter(amqp_names: AmqpNames) -> None:
    connection = await aio_pika.connect(amqp_names.url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        dlx = await channel.declare_exchange(
            amqp_names.exchange("dlx"), aio_pika.ExchangeType.FANOUT, durable=True
        )
        dlq = await channel.declare_queue(amqp_names.queue("dlq"), durable=True)
        await dlq.bind(dlx)
        queue = await channel.declare_queue(
            amqp_names.queue("work"),
            durable=True,
            arguments={
                "x-queue-type": "quorum",
                "x-delivery-limit": 1,
                "x-dead-letter-exchange": dlx.name,
                "x-dead-letter-strategy": "at-least-once",
                "x-overflow": "reject-publish",
            },
        )
        await channel.default_exchange.publish(
            aio_pika.Message(b"payload", delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
            routing_key=queue.name,
        )
        first = await _get_one(queue)
        assert first.body == b"payload"
        await first.reject(requeue=True)  # delivery 1 of the limit
        second = await _get_one(queue)
        assert second.headers.get("x-delivery-count") == 1
        await second.reject(requeue=True)  # over the limit: dead-lettered
        dead = await _get_one(dlq)
        assert dead.body == b"payload"
        await dead.ack()


async def test_private_node_keeps_durable_messages_across_restart(
    private_rabbitmq: PrivateRabbitNode,
) -> None:
    connection = await aio_pika.connect(private_rabbitmq.url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        queue = await channel.declare_queue(
            "restart-proof", durable=True, arguments={"x-queue-type": "quorum"}
        )
        await channel.default_exchange.publish(
            aio_pika.Message(b"survives", delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
            routing_key=queue.name,
        )
    private_rabbitmq.stop()
    assert not port_open("127.0.0.1", private_rabbitmq.amqp_port)
    with pytest.raises(aio_pika.exceptions.AMQPConnectionError):
        await aio_pika.connect(private_rabbitmq.url, timeout=2)
    private_rabbitmq.start()
    connection = await aio_pika.connect(private_rabbitmq.url)
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(
            "restart-proof", durable=True, arguments={"x-queue-type": "quorum"}
        )
        message = await _get_one(queue)
        assert message.body == b"survives"
        await message.ack()


def test_private_node_leaves_nothing_running(tmp_path) -> None:
    node = PrivateRabbitNode(tmp_path)
    node.start()
    node.close()
    assert not port_open("127.0.0.1", node.amqp_port)
    assert not port_open("127.0.0.1", node.epmd_port)
    leftovers = subprocess.run(["pgrep", "-f", node.node], capture_output=True, text=True, check=False)
    assert leftovers.stdout == "", f"processes of {node.node} still running: {leftovers.stdout}"


def test_s3_scope_round_trip_and_presigned_get(s3: S3Scope) -> None:
    bucket = s3.bucket("data")
    client = s3.endpoint.client()
    client.put_object(bucket, "in/hello world+1.txt", io.BytesIO(b"hi"), length=2)
    assert client.get_object(bucket, "in/hello world+1.txt").read() == b"hi"
    url = client.presigned_get_object(bucket, "in/hello world+1.txt")
    with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - loopback test server
        assert response.read() == b"hi"


def test_s3_scope_cleanup_removes_buckets_with_objects(s3_endpoint) -> None:
    scope = S3Scope(s3_endpoint)
    bucket = scope.bucket("gone")
    s3_endpoint.client().put_object(bucket, "a/b", io.BytesIO(b"x"), length=1)
    scope.cleanup()
    assert not s3_endpoint.client().bucket_exists(bucket)


def test_moto_server_stops_and_frees_its_port(tmp_path) -> None:
    server = start_moto(tmp_path / "moto.log")
    assert port_open("127.0.0.1", server.port)
    server.stop()
    assert server.process.poll() is not None
    assert not port_open("127.0.0.1", server.port)
