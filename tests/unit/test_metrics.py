"""Metric definitions and the pure timing rules behind the stage histograms."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from prometheus_client import CollectorRegistry, Counter, generate_latest

from dispatcher.domain.constants import ANNOTATION_EVENT_TIME
from dispatcher.domain.events import EventErrorReason
from dispatcher.domain.timings import job_timings
from dispatcher.runtime.metrics import DispatcherMetrics, WatcherMetrics, new_registry, seconds_since
from tests.metric_labels import unbounded_labels

T0 = datetime(2026, 11, 25, 12, 0, 0, tzinfo=UTC)


def _job(**status: object) -> dict[str, object]:
    return {
        "metadata": {
            "name": "upper-abc",
            "creationTimestamp": "2026-11-25T12:00:02Z",
            "annotations": {ANNOTATION_EVENT_TIME: "2026-11-25T12:00:00.250Z"},
        },
        "status": status,
    }


def test_stage_durations_come_from_the_jobs_own_timestamps() -> None:
    job = _job(startTime="2026-11-25T12:00:05Z", completionTime="2026-11-25T12:01:05Z")
    timings = job_timings(job, T0 + timedelta(seconds=66))
    assert timings.created_to_started == 3.0
    assert timings.started_to_finished == 60.0
    assert timings.finished_to_recorded == 1.0
    assert timings.end_to_end == 65.75


def test_unknown_bounds_give_no_observation_rather_than_a_guess() -> None:
    never_started = _job(conditions=[{"type": "Failed", "status": "True"}])
    timings = job_timings(never_started, T0)
    assert (timings.created_to_started, timings.started_to_finished, timings.finished_to_recorded) == (
        None,
        None,
        None,
    )
    garbled = _job(startTime="yesterday-ish")
    assert job_timings(garbled, T0).created_to_started is None


def test_clock_skew_clamps_to_zero_but_a_far_future_event_time_is_refused() -> None:
    assert seconds_since(T0 + timedelta(seconds=2), now=T0.timestamp()) == 0.0
    assert seconds_since(T0 + timedelta(minutes=5), now=T0.timestamp()) is None
    assert seconds_since(T0.replace(tzinfo=None), now=T0.timestamp() + 1.5) == 1.5
    assert seconds_since(None) is None


def test_one_registry_holds_both_halves_and_scrape_time_gauges_follow_their_source() -> None:
    registry = new_registry("serve")
    dispatcher, watcher = DispatcherMetrics(registry), WatcherMetrics(registry)
    running = {"upper": 2}
    dispatcher.running_jobs(lambda: running)
    dispatcher.jobs_created.labels("upper", "created").inc()
    watcher.leader.set(1)
    first = generate_latest(registry).decode()
    running["upper"] = 0
    running["broken"] = 1
    second = generate_latest(registry).decode()
    assert 'bucketrun_build_info{component="serve"' in first
    assert 'bucketrun_jobs_created_total{result="created",service="upper"} 1.0' in first
    assert 'bucketrun_running_jobs{service="upper"} 2.0' in first
    assert 'bucketrun_running_jobs{service="upper"} 0.0' in second
    assert 'bucketrun_running_jobs{service="broken"} 1.0' in second
    assert "bucketrun_watcher_leader 1.0" in first


def test_running_jobs_take_the_highest_count_of_the_processes_counters_and_none_while_none_counts() -> None:
    registry = new_registry("serve")
    dispatcher, watcher = DispatcherMetrics(registry), WatcherMetrics(registry)
    counted: dict[str, int] = {}
    watched: dict[str, int] = {}
    dispatcher.running_jobs(lambda: counted)
    watcher.running_jobs(lambda: watched)
    assert "bucketrun_running_jobs{" not in generate_latest(registry).decode()
    watched.update(upper=1, lower=0)
    counted.update(upper=2)  # a Job just created, which the watch has not shown yet
    assert registry.get_sample_value("bucketrun_running_jobs", {"service": "upper"}) == 2
    assert registry.get_sample_value("bucketrun_running_jobs", {"service": "lower"}) == 0
    counted.clear()  # the dispatcher stopped counting: the watcher's figure stands
    assert registry.get_sample_value("bucketrun_running_jobs", {"service": "upper"}) == 1


def test_series_exist_at_zero_before_their_first_event_so_rate_sees_it() -> None:
    registry = new_registry("dispatcher")
    metrics = DispatcherMetrics(registry)
    metrics.prepare_services(["upper"])
    watcher = WatcherMetrics(registry)
    watcher.prepare(["upper"], ["succeeded", "failed"])
    text = generate_latest(registry).decode()
    for reason in EventErrorReason:
        assert f'bucketrun_dead_lettered_total{{reason="{reason}"}} 0.0' in text
    assert 'bucketrun_dead_lettered_total{reason="unknown-bucket"} 0.0' in text
    assert 'bucketrun_events_ignored_total{reason="filtered"} 0.0' in text
    assert 'bucketrun_retries_total{kind="api-429"} 0.0' in text
    assert 'bucketrun_jobs_created_total{result="exists",service="upper"} 0.0' in text
    assert 'bucketrun_received_to_created_seconds_count{service="upper"} 0.0' in text
    assert 'bucketrun_jobs_finished_total{outcome="failed",service="upper"} 0.0' in text
    assert 'bucketrun_end_to_end_seconds_count{service="upper"} 0.0' in text


def test_the_label_check_names_a_per_event_value_and_an_unknown_label() -> None:
    registry = CollectorRegistry()
    Counter("demo_by_key", "a metric labelled by key: what must never ship", ["key"], registry=registry)
    Counter("demo_by_reason", "a bounded one", ["reason"], registry=registry).labels("in/a.txt").inc()
    assert 'demo_by_reason_total{reason="in/a.txt"}' in unbounded_labels(registry, ["in/a.txt"])
    assert unbounded_labels(registry, ["in/b.txt"]) == []
    Counter("demo_by_object", "an unknown label", ["object"], registry=registry).labels("x").inc()
    assert 'demo_by_object_total{object="x"}' in unbounded_labels(registry, [])
