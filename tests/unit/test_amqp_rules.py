"""The AMQP adapter's pure rules: queue arguments, tier routing, the headers of retries and dead letters."""

from __future__ import annotations

import pytest

from dispatcher.adapters.amqp import Topology, headers
from dispatcher.runtime.settings import AmqpSettings


@pytest.fixture
def topology() -> Topology:
    return Topology.from_settings(AmqpSettings(retry_tiers=(30, 5, 1), delivery_limit=4))


def test_work_queues_are_quorum_with_delivery_limit_and_safe_dead_lettering(topology):
    assert topology.work_queue_arguments() == {
        "x-queue-type": "quorum",
        "x-delivery-limit": 4,
        "x-dead-letter-exchange": "bucketrun.dead-letter",
        "x-dead-letter-strategy": "at-least-once",
        "x-overflow": "reject-publish",  # at-least-once dead-lettering requires it
    }


def test_tier_queues_have_a_fixed_ttl_and_return_through_the_default_exchange(topology):
    assert topology.retry_tiers == (1, 5, 30)
    assert topology.tier_queue(5) == "bucketrun.retry.5s"
    arguments = topology.tier_queue_arguments(5)
    assert arguments["x-message-ttl"] == 5000
    assert arguments["x-dead-letter-exchange"] == ""  # keeps the routing key: the queue it came from
    assert "x-dead-letter-routing-key" not in arguments
    assert topology.tier_binding(5) == {"x-match": "all", headers.RETRY_TIER: "5s"}


def test_queue_arguments_are_found_by_name(topology):
    assert topology.queue_arguments("bucketrun.ingress") == topology.work_queue_arguments()
    assert topology.queue_arguments(topology.service_queue("upper")) == topology.work_queue_arguments()
    assert topology.queue_arguments("bucketrun.retry.30s") == topology.tier_queue_arguments(30)
    assert topology.queue_arguments("bucketrun.dead-letter") == {"x-queue-type": "quorum"}
    assert topology.queue_arguments("somebody.elses") is None


def test_service_queue_needs_a_name(topology):
    assert topology.service_queue("upper") == "bucketrun.service.upper"
    with pytest.raises(ValueError, match="service name"):
        topology.service_queue("")


BROKER_HEADERS = {
    "x-death": [{"count": 1, "queue": "bucketrun.retry.1s"}],
    "x-delivery-count": 2,
    "x-first-death-queue": "bucketrun.retry.1s",
    "x-last-death-reason": "expired",
}


def retry(incoming, **overrides):
    values = {
        "tier_seconds": 5,
        "not_before": 1_700_000_000.0004,
        "reason": "api-5xx",
        "queue": "bucketrun.ingress",
        "exchange": "bucketrun.events",
        "routing_key": "bucketlogs",
    }
    return headers.retry_headers(incoming, **(values | overrides))


def test_first_retry_counts_one_and_records_the_origin():
    copy = retry({"minio-bucket": "photos"})
    assert copy == {
        "minio-bucket": "photos",
        headers.ATTEMPT: 1,
        headers.RETRY_TIER: "5s",
        headers.RETRY_REASON: "api-5xx",
        headers.NOT_BEFORE: 1_700_000_000_001,  # integer milliseconds, rounded up: never early
        headers.QUEUE: "bucketrun.ingress",
        headers.ORIGINAL_EXCHANGE: "bucketrun.events",
        headers.ORIGINAL_ROUTING_KEY: "bucketlogs",
    }
    assert headers.not_before_of(copy) == 1_700_000_000.001


def test_later_retries_increment_and_keep_the_first_origin_and_drop_broker_history():
    second = retry(
        {**retry({}), **BROKER_HEADERS}, exchange="", routing_key="bucketrun.ingress", tier_seconds=30
    )
    assert second[headers.ATTEMPT] == 2
    assert second[headers.RETRY_TIER] == "30s"
    assert second[headers.ORIGINAL_EXCHANGE] == "bucketrun.events"
    assert second[headers.ORIGINAL_ROUTING_KEY] == "bucketlogs"
    assert not set(BROKER_HEADERS) & set(second)


def test_dead_letter_headers():
    incoming = {**retry({"minio-bucket": "photos"}), **BROKER_HEADERS, headers.SERVICE: "stale"}
    dead = headers.dead_letter_headers(
        incoming,
        reason="api-4xx",
        error_text="x" * 5000,
        service=None,
        queue="bucketrun.service.upper",
        exchange="",
        routing_key="bucketrun.service.upper",
    )
    assert dead[headers.REASON] == "api-4xx"
    assert len(dead[headers.ERROR]) == headers.MAX_ERROR_CHARS
    assert dead[headers.ERROR].endswith("…")
    assert headers.SERVICE not in dead  # not carried over from an earlier hop
    assert headers.RETRY_TIER not in dead
    assert headers.NOT_BEFORE not in dead
    assert dead[headers.ATTEMPT] == 1  # how many retries it had
    assert dead[headers.ORIGINAL_EXCHANGE] == "bucketrun.events"
    assert not set(BROKER_HEADERS) & set(dead)
    named = headers.dead_letter_headers(
        {}, reason="r", error_text="e", service="upper", queue="q", exchange="x", routing_key="k"
    )
    assert named[headers.SERVICE] == "upper"


@pytest.mark.parametrize(
    ("value", "count"), [(None, 0), (3, 3), ("4", 4), (b"5", 5), (-2, 0), (True, 0), ("many", 0), ([1], 0)]
)
def test_counts_read_defensively(value, count):
    assert headers.attempt_of({headers.ATTEMPT: value}) == count
    assert headers.delivery_count_of({headers.DELIVERY_COUNT: value}) == count


@pytest.mark.parametrize("value", [None, "123", 1.5, True])
def test_unreadable_not_before_is_none(value):
    assert headers.not_before_of({headers.NOT_BEFORE: value}) is None


def test_settings_refuse_colliding_names():
    with pytest.raises(ValueError, match="must differ"):
        AmqpSettings(retry_exchange="bucketrun.events")
    with pytest.raises(ValueError, match="must not start with a queue prefix"):
        AmqpSettings(ingress_queue="bucketrun.retry.in")
