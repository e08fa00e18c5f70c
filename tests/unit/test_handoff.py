"""The hand-off to service queues: events gathered while a publish awaits its confirm go together.

The publish here is a recording coroutine that holds each confirm until the test releases it, so what
travels together is decided by the order of events, not by timing.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from typing import Any

import pytest

from dispatcher.adapters.amqp.headers import received_at_of
from dispatcher.domain.errors import TransientError
from dispatcher.domain.events import ObjectEvent, build_message, parse_message
from dispatcher.domain.ingress import parse_tasks
from dispatcher.process.handoff import HandOff


def event(index: int) -> ObjectEvent:
    body = build_message(
        event_name="s3:ObjectCreated:Put",
        bucket="media",
        key=f"in/{index}.jpg",
        etag="e",
        sequencer=f"{index}",
    )
    return parse_message(body)[0]


class Broker:
    """Records each publish; a publish is confirmed when the test sets its gate (or at once, when open)."""

    def __init__(self, *, open_: bool = False, fail: set[int] | None = None) -> None:
        self.messages: list[tuple[str, list[str], Mapping[str, Any]]] = []
        self.bodies: list[bytes] = []
        self.gates: list[asyncio.Event] = []
        self.arrived = asyncio.Condition()
        self.open = open_
        self.fail = fail or set()

    async def publish(self, service: str, body: bytes, headers: Mapping[str, Any]) -> None:
        number = len(self.messages)
        self.messages.append((service, [e.key for e in parse_tasks(body)], headers))
        self.bodies.append(body)
        gate = asyncio.Event()
        self.gates.append(gate)
        async with self.arrived:
            self.arrived.notify_all()
        if not self.open:
            await gate.wait()
        if number in self.fail:
            raise TransientError("the broker did not confirm", kind="amqp")

    async def published(self, count: int) -> None:
        async with asyncio.timeout(5), self.arrived:
            await self.arrived.wait_for(lambda: len(self.messages) >= count)


async def test_the_first_event_goes_alone_and_those_sent_meanwhile_go_together() -> None:
    broker = Broker()
    handoff = HandOff(broker.publish, max_events=64, max_bytes=1 << 20)
    first = asyncio.create_task(handoff.send("thumbs", event(0), 100.0))
    await broker.published(1)
    rest = [asyncio.create_task(handoff.send("thumbs", event(i), 100.0 + i)) for i in range(1, 5)]
    await asyncio.sleep(0)
    assert not first.done()
    broker.gates[0].set()
    await first
    await broker.published(2)
    assert not any(task.done() for task in rest)  # each returns only once its own message is confirmed
    broker.gates[1].set()
    await asyncio.gather(*rest)
    assert [(service, keys) for service, keys, _ in broker.messages] == [
        ("thumbs", ["in/0.jpg"]),
        ("thumbs", ["in/1.jpg", "in/2.jpg", "in/3.jpg", "in/4.jpg"]),
    ]
    assert received_at_of(broker.messages[1][2]) == 101.0  # the batch's earliest receipt


async def test_each_service_has_its_own_publish_and_batches_are_capped() -> None:
    broker = Broker(open_=True)
    handoff = HandOff(broker.publish, max_events=2, max_bytes=1 << 20)
    await asyncio.gather(
        *(handoff.send("thumbs", event(i), 1.0) for i in range(5)),
        *(handoff.send("archive", event(i), 1.0) for i in range(10, 12)),
    )
    by_service: dict[str, list[list[str]]] = {}
    for service, keys, _ in broker.messages:
        by_service.setdefault(service, []).append(keys)
    # Sent in the same loop turn: nothing is published before all five are waiting.
    assert by_service["thumbs"] == [["in/0.jpg", "in/1.jpg"], ["in/2.jpg", "in/3.jpg"], ["in/4.jpg"]]
    assert by_service["archive"] == [["in/10.jpg", "in/11.jpg"]]


async def test_a_batch_the_broker_does_not_take_fails_every_event_in_it_and_only_those() -> None:
    broker = Broker(open_=True, fail={0})
    handoff = HandOff(broker.publish, max_events=3, max_bytes=1 << 20)
    outcomes = await asyncio.gather(
        *(handoff.send("thumbs", event(i), 1.0) for i in range(5)), return_exceptions=True
    )
    assert [type(outcome).__name__ for outcome in outcomes] == [
        "TransientError",
        "TransientError",
        "TransientError",
        "NoneType",
        "NoneType",
    ]


@pytest.mark.parametrize(("alone", "max_events"), [(True, 64), (False, 1)])
async def test_events_sent_alone_or_with_batching_off_are_one_message_each(
    alone: bool, max_events: int
) -> None:
    broker = Broker(open_=True)
    counted: list[tuple[str, int]] = []
    handoff = HandOff(
        broker.publish,
        max_events=max_events,
        max_bytes=1 << 20,
        published=lambda service, events: counted.append((service, events)),
    )
    await asyncio.gather(*(handoff.send("capped", event(i), 1.0, alone=alone) for i in range(3)))
    assert [keys for _, keys, _ in broker.messages] == [["in/0.jpg"], ["in/1.jpg"], ["in/2.jpg"]]
    assert counted == [("capped", 1)] * 3
    # Alone: MinIO's single-record envelope, as before batching.
    assert all(set(json.loads(body)) == {"EventName", "Key", "Records"} for body in broker.bodies)


async def test_close_cancels_the_publish_under_way_and_its_waiting_events() -> None:
    broker = Broker()
    handoff = HandOff(broker.publish, max_events=64, max_bytes=1 << 20)
    first = asyncio.create_task(handoff.send("thumbs", event(0), 1.0))
    await broker.published(1)
    second = asyncio.create_task(handoff.send("thumbs", event(1), 1.0))
    await asyncio.sleep(0)
    await handoff.close()
    for task in (first, second):
        with pytest.raises(asyncio.CancelledError):
            await task
    assert len(broker.messages) == 1


async def test_a_caller_cancelled_while_waiting_leaves_the_rest_of_its_batch_alone() -> None:
    broker = Broker()
    handoff = HandOff(broker.publish, max_events=64, max_bytes=1 << 20)
    first = asyncio.create_task(handoff.send("thumbs", event(0), 1.0))
    await broker.published(1)
    gone, kept = (asyncio.create_task(handoff.send("thumbs", event(i), 1.0)) for i in (1, 2))
    await asyncio.sleep(0)
    gone.cancel()
    broker.gates[0].set()
    await first
    await broker.published(2)
    broker.gates[1].set()
    await asyncio.wait_for(kept, 5)
    assert gone.cancelled()
    assert broker.messages[1][1] == ["in/1.jpg", "in/2.jpg"]  # published all the same: at least once
