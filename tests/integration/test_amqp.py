"""The AMQP adapter against a real RabbitMQ: topology, retries through tiers, dead letters, reconnects.

Waits are on conditions with a bound (a message arriving), never fixed sleeps.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

import aio_pika  # noqa: TID251 - the tests play MinIO's part and read queues directly
import pytest

from dispatcher.adapters.amqp import AlreadySettledError, AmqpClient, Delivery, Settlement, headers
from dispatcher.domain.errors import PermanentError, TransientError
from dispatcher.domain.events import build_message
from dispatcher.runtime.settings import AmqpSettings
from tests.backends import free_port
from tests.backends.rabbit_node import PrivateRabbitNode
from tests.backends.rabbitmq import AmqpNames

pytestmark = pytest.mark.integration

EVENT_TIME = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
WITHIN = 15.0  # seconds any one expected message may take (tiers here are 1 s)


def settings_for(names: AmqpNames, *, url: str | None = None, **overrides) -> AmqpSettings:
    """Settings whose every exchange and queue is unique to this test and deleted after it."""
    tiers = overrides.pop("retry_tiers", (1, 60))
    for seconds in tiers:
        names.queue(f"retry.{seconds}s")
    values = {
        "url": url or names.url,
        "exchange": names.exchange("events"),
        "ingress_queue": names.queue("ingress"),
        "dead_letter_exchange": names.exchange("dead"),
        "dead_letter_queue": names.queue("dead"),
        "retry_exchange": names.exchange("retry"),
        "retry_queue_prefix": f"{names.prefix}.retry",
        "service_queue_prefix": f"{names.prefix}.svc",
        "retry_tiers": tiers,
        "delivery_limit": 3,
        "prefetch": 8,
        "publish_timeout": 5.0,
        "reconnect_interval": 0.3,
    }
    return AmqpSettings.model_validate(values | overrides)


def event_body(key: str = "in/a.txt") -> bytes:
    return build_message(
        event_name="s3:ObjectCreated:Put",
        bucket="photos",
        key=key,
        etag="e1",
        sequencer="01",
        event_time=EVENT_TIME,
    )


async def next_item(queue: asyncio.Queue, within: float = WITHIN):
    async with asyncio.timeout(within):
        return await queue.get()


async def publish_as_minio(client: AmqpClient, body: bytes) -> None:
    """What MinIO's AMQP target does: publish to the configured exchange, persistent."""
    await client.publisher.publish(
        client.topology.exchange,
        "bucketlogs",
        body,
        {"minio-bucket": "photos"},
        content_type="application/json",
    )


async def read_dead_letter(client: AmqpClient, names: AmqpNames) -> aio_pika.abc.AbstractIncomingMessage:
    connection = await aio_pika.connect(names.url)
    async with connection:
        channel = await connection.channel()
        queue = await channel.get_queue(client.topology.dead_letter_queue)
        async with asyncio.timeout(WITHIN):
            async with queue.iterator() as messages:
                async for message in messages:
                    await message.ack()
                    return message
    raise AssertionError("unreachable")


async def upper_queue(client: AmqpClient, names: AmqpNames) -> str:
    """Service `upper`'s work queue, declared (and deleted after the test)."""
    names.queue("svc.upper")
    return await client.declare_service_queue("upper")


@pytest.fixture
async def client(amqp_names):
    async with await AmqpClient.connect(settings_for(amqp_names)) as connected:
        await connected.declare_topology()
        yield connected


async def test_topology_is_idempotent_and_matches_minios_declaration(amqp_names):
    settings = settings_for(amqp_names)
    async with await AmqpClient.connect(settings) as first, await AmqpClient.connect(settings) as second:
        await first.declare_topology()
        await first.declare_topology()
        await second.declare_topology()
        # MinIO's ExchangeDeclare(name, type, durable, autoDeleted=false, internal=false, noWait, nil args).
        connection = await aio_pika.connect(amqp_names.url)
        async with connection:
            channel = await connection.channel()
            await channel.declare_exchange(
                settings.exchange,
                aio_pika.ExchangeType.FANOUT,
                durable=True,
                auto_delete=False,
                internal=False,
            )
            # The ingress queue is bound: what MinIO publishes lands there.
            await publish_as_minio(first, event_body())
            ingress = await channel.get_queue(settings.ingress_queue)
            async with asyncio.timeout(WITHIN):
                async with ingress.iterator() as messages:
                    async for message in messages:
                        assert message.body == event_body()
                        assert message.headers["minio-bucket"] == "photos"
                        await message.ack()
                        break


async def test_a_minio_declaration_with_other_durability_would_be_refused(client, amqp_names):
    connection = await aio_pika.connect(amqp_names.url)
    async with connection:
        channel = await connection.channel()
        with pytest.raises(aio_pika.exceptions.ChannelPreconditionFailed):
            await channel.declare_exchange(
                client.topology.exchange, aio_pika.ExchangeType.FANOUT, durable=False
            )


async def test_an_exchange_minio_declared_differently_is_named_with_the_fix(amqp_names):
    settings = settings_for(amqp_names)
    connection = await aio_pika.connect(amqp_names.url)
    async with connection:
        channel = await connection.channel()
        # MinIO with its default MINIO_NOTIFY_AMQP_DURABLE=off got there first.
        await channel.declare_exchange(settings.exchange, aio_pika.ExchangeType.FANOUT, durable=False)
    async with await AmqpClient.connect(settings) as client:
        with pytest.raises(PermanentError) as caught:
            await client.declare_topology()
    assert caught.value.reason == "topology-mismatch"
    assert settings.exchange in str(caught.value)
    assert "MINIO_NOTIFY_AMQP_DURABLE=on" in str(caught.value)


async def test_unreachable_broker_is_transient_and_keeps_the_password_out(amqp_names):
    settings = settings_for(amqp_names, url=f"amqp://guest:pw-{amqp_names.prefix}@127.0.0.1:{free_port()}/")
    with pytest.raises(TransientError) as caught:
        await AmqpClient.connect(settings)
    assert "127.0.0.1" in str(caught.value)
    assert f"pw-{amqp_names.prefix}" not in str(caught.value)
    assert caught.value.__cause__ is None


async def test_consuming_a_queue_that_does_not_exist_is_permanent(client, amqp_names):
    with pytest.raises(PermanentError) as caught:
        await client.consume(f"{amqp_names.prefix}.nobody", lambda delivery: delivery.ack())
    assert caught.value.reason == "topology-missing"


async def test_retry_goes_through_the_tier_and_comes_back_with_the_attempt(client):
    deliveries: asyncio.Queue[tuple[Delivery, float]] = asyncio.Queue()
    settled: list[Settlement] = []

    async def handler(delivery: Delivery) -> None:
        await deliveries.put((delivery, time.monotonic()))
        if delivery.attempt == 0:
            settled.append(await delivery.retry_later(0.2, "api-5xx"))
        else:
            settled.append(await delivery.ack())

    async with await client.consume(client.topology.ingress_queue, handler):
        await publish_as_minio(client, event_body())
        first, first_at = await next_item(deliveries)
        again, again_at = await next_item(deliveries)
    assert first.attempt == 0
    assert again.attempt == 1
    assert again.body == first.body
    assert again_at - first_at >= 0.9  # parked in the 1 s tier, the smallest one >= 0.2 s
    assert again.headers[headers.RETRY_TIER] == "1s"
    assert again.headers[headers.RETRY_REASON] == "api-5xx"
    assert again.headers[headers.ORIGINAL_EXCHANGE] == client.topology.exchange
    assert again.headers[headers.ORIGINAL_ROUTING_KEY] == "bucketlogs"
    assert again.headers["minio-bucket"] == "photos"
    assert again.remaining_delay() == 0.0
    assert settled == [Settlement.ACKED, Settlement.ACKED]


async def test_a_delay_longer_than_every_tier_comes_back_early_with_the_time_left(amqp_names):
    async with await AmqpClient.connect(settings_for(amqp_names, retry_tiers=(1,))) as client:
        await client.declare_topology()
        deliveries: asyncio.Queue[Delivery] = asyncio.Queue()

        async def handler(delivery: Delivery) -> None:
            await deliveries.put(delivery)
            if delivery.attempt == 0:
                await delivery.retry_later(30.0, "api-429")
            else:
                await delivery.ack()

        async with await client.consume(client.topology.ingress_queue, handler):
            await publish_as_minio(client, event_body())
            await next_item(deliveries)
            early = await next_item(deliveries)
    assert early.attempt == 1
    assert 20.0 < early.remaining_delay() <= 30.0  # the consumer parks it again for the rest


async def test_dead_letter_carries_reason_error_and_service(client, amqp_names):
    done: asyncio.Queue[Settlement] = asyncio.Queue()

    async def handler(delivery: Delivery) -> None:
        await done.put(
            await delivery.dead_letter("no-route", "no service takes photos/in/a.txt " * 100, "upper")
        )

    async with await client.consume(client.topology.ingress_queue, handler):
        await publish_as_minio(client, event_body())
        assert await next_item(done) is Settlement.ACKED
    dead = await read_dead_letter(client, amqp_names)
    assert dead.body == event_body()
    assert dead.headers[headers.REASON] == "no-route"
    assert dead.headers[headers.SERVICE] == "upper"
    error = dead.headers[headers.ERROR]
    assert error.startswith("no service takes photos/in/a.txt")
    assert len(error) == headers.MAX_ERROR_CHARS
    assert dead.headers[headers.QUEUE] == client.topology.ingress_queue
    assert dead.headers[headers.ORIGINAL_EXCHANGE] == client.topology.exchange
    assert dead.headers[headers.ORIGINAL_ROUTING_KEY] == "bucketlogs"
    assert dead.content_type == "application/json"


async def test_poison_message_is_dead_lettered_by_the_delivery_limit(client, amqp_names):
    calls: asyncio.Queue[int] = asyncio.Queue()

    async def crashing(delivery: Delivery) -> None:
        await calls.put(delivery.delivery_count)
        raise RuntimeError("handler bug")

    async with await client.consume(client.topology.ingress_queue, crashing):
        await publish_as_minio(client, b"\xff poison")
        dead = await read_dead_letter(client, amqp_names)
    counts = [calls.get_nowait() for _ in range(calls.qsize())]
    assert counts == [0, 1, 2, 3]  # delivery_limit=3 requeues, then the broker dead-letters it
    assert dead.body == b"\xff poison"
    assert dead.headers["x-first-death-reason"] == "delivery_limit"


async def test_unsettled_message_is_requeued_and_counted(client):
    deliveries: asyncio.Queue[Delivery] = asyncio.Queue()

    async def forgetful(delivery: Delivery) -> None:
        await deliveries.put(delivery)
        if delivery.delivery_count > 0:
            await delivery.ack()

    async with await client.consume(client.topology.ingress_queue, forgetful):
        await publish_as_minio(client, event_body())
        first = await next_item(deliveries)
        second = await next_item(deliveries)
    assert first.settlement is Settlement.REQUEUED
    assert (second.delivery_count, second.redelivered) == (1, True)
    assert second.settlement is Settlement.ACKED


async def test_service_queue_round_trip_and_retry_returns_to_it(client, amqp_names):
    queue = await upper_queue(client, amqp_names)
    assert queue == f"{amqp_names.prefix}.svc.upper"
    assert await client.declare_service_queue("upper") == queue  # idempotent
    deliveries: asyncio.Queue[Delivery] = asyncio.Queue()

    async def handler(delivery: Delivery) -> None:
        await deliveries.put(delivery)
        if delivery.attempt == 0:
            await delivery.retry_later(1.0, "cap-reached")
        else:
            await delivery.ack()

    async with await client.consume(queue, handler):
        await client.publish_to_service("upper", b"event for upper", {"x-test": "yes"})
        first = await next_item(deliveries)
        back = await next_item(deliveries)
    assert (first.queue, first.body, first.headers["x-test"]) == (queue, b"event for upper", "yes")
    assert (back.queue, back.attempt, back.body) == (queue, 1, b"event for upper")


async def test_a_split_message_comes_back_as_single_messages_with_its_headers(client, amqp_names):
    queue = await upper_queue(client, amqp_names)
    deliveries: asyncio.Queue[Delivery] = asyncio.Queue()

    async def handler(delivery: Delivery) -> None:
        await deliveries.put(delivery)
        if delivery.body == b"batch":
            await delivery.split([b"one", b"two"])
        else:
            await delivery.ack()

    async with await client.consume(queue, handler):
        await client.publish_to_service("upper", b"batch", headers.received_headers(1700000000.5))
        batch, *parts = [await next_item(deliveries) for _ in range(3)]
    assert batch.settlement is Settlement.ACKED
    assert sorted(part.body for part in parts) == [b"one", b"two"]
    for part in parts:
        assert (part.queue, part.delivery_count, part.attempt) == (queue, 0, 0)
        assert headers.received_at_of(part.headers) == 1700000000.5


async def test_a_part_is_dead_lettered_and_the_rest_retried_in_a_copy_of_their_own(client, amqp_names):
    queue = await upper_queue(client, amqp_names)
    deliveries: asyncio.Queue[Delivery] = asyncio.Queue()

    async def handler(delivery: Delivery) -> None:
        await deliveries.put(delivery)
        if delivery.attempt == 0:
            await delivery.dead_letter_part(b"refused record", "invalid-manifest", "too long", "upper")
            await delivery.retry_later(1.0, "api-5xx", body=b"records to retry")
        else:
            await delivery.ack()

    async with await client.consume(queue, handler):
        await client.publish_to_service("upper", b"refused record and records to retry")
        first = await next_item(deliveries)
        back = await next_item(deliveries)
    dead = await read_dead_letter(client, amqp_names)
    assert first.settlement is Settlement.ACKED
    assert (dead.body, dead.headers[headers.REASON], dead.headers[headers.SERVICE]) == (
        b"refused record",
        "invalid-manifest",
        "upper",
    )
    assert (back.queue, back.attempt, back.body) == (queue, 1, b"records to retry")


async def test_delivery_settles_once(client):
    outcome: asyncio.Queue[BaseException | None] = asyncio.Queue()

    async def handler(delivery: Delivery) -> None:
        await delivery.ack()
        try:
            await delivery.retry_later(1.0, "again")
        except AlreadySettledError as error:
            await outcome.put(error)
        else:
            await outcome.put(None)

    async with await client.consume(client.topology.ingress_queue, handler):
        await publish_as_minio(client, event_body())
        assert isinstance(await next_item(outcome), AlreadySettledError)


async def test_unroutable_publish_is_a_transient_error_and_the_publisher_recovers(client, amqp_names):
    with pytest.raises(TransientError) as unroutable:
        await client.publish_to_service("nobody-declared-this", b"x")
    assert unroutable.value.kind == "amqp-unroutable"
    with pytest.raises(TransientError):  # a missing exchange closes the channel ...
        await client.publisher.publish(f"{amqp_names.prefix}.missing", "k", b"x")
    deliveries: asyncio.Queue[Delivery] = asyncio.Queue()

    async def handler(delivery: Delivery) -> None:
        await deliveries.put(delivery)
        await delivery.ack()

    async with await client.consume(client.topology.ingress_queue, handler):
        await publish_as_minio(client, event_body("in/after.txt"))  # ... which the client reopens
        assert (await next_item(deliveries)).body == event_body("in/after.txt")


async def test_cancel_stops_new_deliveries_and_drain_waits_for_in_flight(client):
    release = asyncio.Event()
    started: asyncio.Queue[Delivery] = asyncio.Queue()

    async def slow(delivery: Delivery) -> None:
        await started.put(delivery)
        await release.wait()
        await delivery.ack()

    consumer = await client.consume(client.topology.ingress_queue, slow)
    async with consumer:
        await publish_as_minio(client, event_body("in/1.txt"))
        in_flight = await next_item(started)
        await consumer.cancel()
        assert not consumer.consuming
        await publish_as_minio(client, event_body("in/2.txt"))
        assert await consumer.drain(0.2) is False  # still blocked: cancelled, left unsettled
        assert in_flight.settlement is None
    assert started.empty()  # the message published after cancel() was not delivered here
    # Both messages are still in the queue for the next consumer (the cancelled one was never acked).
    seen: asyncio.Queue[bytes] = asyncio.Queue()

    async def collect(delivery: Delivery) -> None:
        await seen.put(delivery.body)
        await delivery.ack()

    async with await client.consume(client.topology.ingress_queue, collect) as second:
        bodies = {await next_item(seen), await next_item(seen)}
        await second.cancel()
        assert await second.drain(5.0) is True
    assert bodies == {event_body("in/1.txt"), event_body("in/2.txt")}


@pytest.mark.slow
async def test_consumption_resumes_after_a_broker_restart_without_losing_the_unacked_message(
    private_rabbitmq: PrivateRabbitNode, amqp_names: AmqpNames
):
    # The private node is discarded after the test, so the shared broker's names are only borrowed.
    settings = settings_for(amqp_names, url=private_rabbitmq.url)
    deliveries: asyncio.Queue[Delivery] = asyncio.Queue()
    release_first = asyncio.Event()
    first_settled = asyncio.Event()

    async def handler(delivery: Delivery) -> None:
        await deliveries.put(delivery)
        if delivery.body == event_body("in/before.txt") and not delivery.redelivered:
            await release_first.wait()  # in flight, unacked, when the broker goes away
            await delivery.ack()
            first_settled.set()
        else:
            await delivery.ack()

    async with await AmqpClient.connect(settings) as client:
        await client.declare_topology()
        async with await client.consume(client.topology.ingress_queue, handler):
            await publish_as_minio(client, event_body("in/before.txt"))
            first = await next_item(deliveries)
            await asyncio.to_thread(private_rabbitmq.restart)
            again = await next_item(deliveries, within=60.0)
            assert again.body == event_body("in/before.txt")
            assert again.redelivered
            release_first.set()
            async with asyncio.timeout(WITHIN):
                await first_settled.wait()
            assert first.settlement is Settlement.LOST  # its channel died with the old connection
            await publish_as_minio(client, event_body("in/after.txt"))  # waits for the reconnection
            assert client.connected
            after = await next_item(deliveries)
            assert after.body == event_body("in/after.txt")
            assert after.settlement in {None, Settlement.ACKED}
