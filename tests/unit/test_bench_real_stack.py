"""The real stack's bench: request counts from kube-apiserver's counters, and the CPU target's figures."""

from __future__ import annotations

import contextlib
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.script_modules import load_script

BENCH = Path(__file__).resolve().parents[2] / "bench"


def sample(verb: str, resource: str, subresource: str, code: int, value: int) -> str:
    """One line of kube-apiserver's ``/metrics`` as v1.37 writes it."""
    return (
        f'apiserver_request_total{{code="{code}",component="apiserver",dry_run="",group="batch",'
        f'resource="{resource}",scope="resource",subresource="{subresource}",verb="{verb}",'
        f'version="v1"}} {value}'
    )


METRICS = "\n".join(
    [
        "# HELP apiserver_request_total [STABLE] Counter of apiserver requests ...",
        "# TYPE apiserver_request_total counter",
        sample("POST", "jobs", "", 201, 1200),
        sample("POST", "jobs", "", 409, 3),
        sample("PUT", "jobs", "status", 200, 900),
        sample("POST", "pods", "", 201, 1200),
        sample("POST", "configmaps", "", 201, 4),
        sample("PATCH", "jobs", "", 200, 7),
        sample("LIST", "jobs", "", 200, 5),
        'apiserver_request_duration_seconds_count{verb="POST",resource="jobs"} 99',
    ]
)


@pytest.fixture(scope="module")
def real_stack() -> ModuleType:
    return load_script(BENCH / "real_stack.py", "bench_real_stack_under_test")


@pytest.fixture(scope="module")
def report() -> ModuleType:
    return load_script(BENCH / "report.py", "bench_report_real_under_test")


def test_request_totals_are_read_by_verb_resource_subresource_and_code(real_stack: ModuleType) -> None:
    totals = real_stack.parse_request_totals(METRICS)
    assert totals[("POST", "jobs", "", "201")] == 1200
    assert totals[("PUT", "jobs", "status", "200")] == 900
    assert sum(totals.values()) == 1200 + 3 + 900 + 1200 + 4 + 7 + 5  # the duration histogram is not counted


def test_counts_use_the_emulator_s_verb_names(real_stack: ModuleType) -> None:
    totals = real_stack.parse_request_totals(METRICS)
    count = real_stack.count_requests
    assert count(totals, verb="create", resource="jobs", subresource="", code=201) == 1200
    assert count(totals, verb="create", resource="jobs", code=409) == 3
    writes = ("create", "update", "patch", "delete", "deletecollection")
    # The Job controller's status updates are a subresource: not the client's writes of the Job itself.
    assert count(totals, verb=writes, resource="jobs", subresource="") == 1200 + 3 + 7
    assert count(totals, verb=writes, resource="jobs") == 1200 + 3 + 7 + 900
    assert count(totals, verb="create", resource="pods") == 1200


def usage(bench: float) -> dict[str, float]:
    return {"bench_cpu_s": bench, "kube-apiserver_cpu_s": 9.0, "etcd_cpu_s": 2.0}


def results(dispatcher_s: float, startup_s: float = 0.5) -> dict[str, Any]:
    consuming = (dispatcher_s - startup_s) * 1000 / 1000
    return {
        "saturation": {
            "events": 1000,
            "usage": usage(dispatcher_s),
            "startup_cpu_s": startup_s,
            "cpu_ms_per_event_consuming": consuming,
        },
        "raw_k8s_rendered": {"jobs": 1000, "rate": 200.0, "usage": usage(1.8)},
        "raw_amqp": {"messages": 1000, "usage": usage(0.2)},
    }


def test_the_cpu_target_is_the_dispatcher_s_own_cpu_against_the_two_bare_clients(report: ModuleType) -> None:
    # The dispatcher's start (connections, topology, its informer's list) is not per-event CPU.
    figures = report.dispatcher_cpu(results(dispatcher_s=3.5))
    assert figures == pytest.approx(
        {
            "dispatcher": 3.0,
            "dispatcher_with_start": 3.5,
            "bare_create": 1.8,
            "bare_consume_ack": 0.2,
            "bound": 1.5 * 2.0,
        }
    )
    assert report.dispatcher_cpu(results(dispatcher_s=3.6))["dispatcher"] > figures["bound"]


def test_runs_are_judged_by_the_bare_creates_made_just_before_and_after_them(report: ModuleType) -> None:
    paired = [
        {"jobs": 1000, "rate": rate, "in_flight": 128, "usage": usage(cpu)}
        for rate, cpu in ((100.0, 1.0), (140.0, 1.4), (180.0, 2.0))
    ]
    figures = results(dispatcher_s=3.5) | {"raw_k8s_paired": paired}
    shipped = report.create_baseline(figures)
    assert (shipped["rate"], shipped["cpu_ms"]) == pytest.approx((120.0, 1.2))
    assert "100 and 140" in shipped["sentence"]
    direct = report.create_baseline(figures, "saturation_direct")
    assert (direct["rate"], direct["cpu_ms"]) == pytest.approx((160.0, 1.7))
    assert report.dispatcher_cpu(figures)["bound"] == pytest.approx(1.5 * (1.2 + 0.2))
    # Without them (older results, the emulator): the sweep's best run.
    assert report.create_baseline(results(dispatcher_s=3.5))["rate"] == 200.0


def test_each_round_is_judged_by_its_own_neighbours_and_the_target_by_the_median_round(
    report: ModuleType,
) -> None:
    # bare, shipped, bare, raised, bare, shipped, bare, raised, bare, shipped, bare, raised, bare
    bare_rates = (200.0, 300.0, 250.0, 150.0, 100.0, 240.0, 260.0)
    paired = [{"jobs": 1000, "rate": rate, "in_flight": 128, "usage": usage(1.0)} for rate in bare_rates]

    def run(rate: float, index: int, **extra: Any) -> dict[str, Any]:
        return {
            "events": 1000,
            "rate": rate,
            "round": index,
            "usage": usage(2.0),
            "cpu_ms_per_event_consuming": 2.0,
            **extra,
        }

    shipped = [run(rate, index) for index, rate in enumerate((200.0, 150.0, 153.0))]
    raised = [
        run(rate, index, direct_creates=128, prefetch=128) for index, rate in enumerate((220.0, 100.0, 120.0))
    ]
    figures = {"raw_k8s_paired": paired, "saturation_rounds": shipped, "saturation_direct_rounds": raised}
    # Shipped run k sits between bare runs 2k and 2k+1, raised run k between 2k+1 and 2k+2.
    assert report.round_ratios(figures, "saturation") == pytest.approx([0.8, 0.75, 0.9])
    assert report.round_ratios(figures, "saturation_direct") == pytest.approx([0.8, 0.8, 0.48])
    median = report.median_round(figures, "saturation")
    assert median is shipped[0]
    figures |= {"saturation": median, "saturation_direct": report.median_round(figures, "saturation_direct")}
    assert figures["saturation_direct"]["round"] in (0, 1)
    baseline = report.create_baseline(figures)
    assert baseline["rate"] == pytest.approx(250.0)
    assert baseline["pair"] == paired[0:2]
    assert report.create_baseline(figures, "saturation", shipped[2])["pair"] == paired[4:6]
    assert report.ratios_sentence(figures) == "the median of 3 rounds (80%, 75%, 90%)"
    table = "\n".join(report.rounds_lines(figures | {"machine": {"cpus": 2}}))
    assert "| 2 | 250/s | 150/s | 150/s | 100/s | 75% | 80% | 2.00, 2.00 |" in table
    assert "DIRECT_CREATES=128, PREFETCH=128" in table
    # An even count takes the lower median; a single run has no rounds sentence and no table.
    two = {**figures, "saturation_rounds": shipped[:2]}
    assert report.median_round(two, "saturation") is shipped[1]
    one = {"raw_k8s_paired": paired[:3], "saturation": shipped[0], "saturation_direct": raised[0]}
    assert report.ratios_sentence(one) == ""
    assert report.rounds_lines(one) == []


def test_the_rss_targets_need_50_000_tracked_jobs_and_every_row_within_the_bound(report: ModuleType) -> None:
    def row(tracked: int, dispatcher_mib: float, idle_mib: float) -> dict[str, Any]:
        return {
            "tracked_jobs": tracked,
            "backend": "real",
            "dispatcher": {"peak_rss_mib": dispatcher_mib, "idle_rss_mib": idle_mib},
            "watcher": {"peak_rss_mib": 150.0},
        }

    mib_of_151_mb = 151 * report.MIB_PER_MB
    figures = {
        "scale": [row(50_000, 138.0, 137.0), row(1_000, mib_of_151_mb, 120.0), row(10_000, 135.0, 130.0)]
    }
    dispatcher, watcher = report.rss_targets(figures)
    assert not dispatcher["passed"]  # the 50,000 row's 145 MB alone would pass
    assert dispatcher["measured"] == "peak 151 MB at 1,000; 142 MB at 10,000; 145 MB at 50,000 (real stack)"
    assert watcher["passed"]
    target = "dispatcher RSS <= 150 MB at 50,000 tracked Jobs"
    text = report.rss_sentence(figures, target)
    assert text.startswith(
        "the dispatcher process with 1,000 tracked Jobs had 126 MB before its events and 151 MB"
    )
    assert "from 1,000 to 50,000 tracked Jobs its peak went from 151 to 145 MB" in text
    assert "TLS receive buffer" in text  # the real API server's connections; not the emulator's
    emulator = {"scale": [{**row, "backend": "emulator"} for row in figures["scale"]]}
    assert "TLS" not in report.rss_sentence(emulator, target)
    # Every row within the bound: passed, and the sentence names the highest peak.
    within = {"scale": [row(1_000, 130.0, 120.0), row(10_000, 135.0, 130.0), row(50_000, 138.0, 137.0)]}
    assert report.rss_targets(within)[0]["passed"]
    assert "with 50,000 tracked Jobs had 144 MB before its events and 145 MB" in report.rss_sentence(
        within, target
    )
    # Fewer than 50,000 tracked Jobs fails both, whatever the peaks.
    short = {"scale": within["scale"][:2]}
    assert [target["passed"] for target in report.rss_targets(short)] == [False, False]
    assert report.rss_targets(short)[0]["measured"].endswith("(real stack) (only 10,000 in this run)")
    assert (
        report.rss_sentence(short, target)
        == "this run tracked 10,000 Jobs at most (the full run measures 50,000)."
    )
    assert report.rss_targets({"scale": []}) == []


def test_finished_to_recorded_is_explained_by_the_bare_loop_at_the_same_load(report: ModuleType) -> None:
    def run(p50: float, p99: float, busy_pct: float) -> dict[str, Any]:
        summary = {"p50_ms": p50, "p95_ms": p99, "p99_ms": p99}
        return {"target_rate": 39.0, "finished_to_recorded": summary, "usage": {"bench_pct": busy_pct}}

    figures: dict[str, Any] = {
        "completions": {"bare": {"per_job": {"p50_ms": 100.0, "p99_ms": 170.0}}},
        "completion_latency": {"50": run(380.0, 700.0, 180.0)},
        "completion_latency_bare": run(300.0, 650.0, 170.0),
    }
    text = report._why_recorded(figures)
    assert text.startswith("p50 / p99 380 / 700 ms; at the same rate without the watcher")
    assert "300 / 650 ms, with 1.70 to 1.80 of the 2 cores busy in the two runs" in text
    assert text.endswith("no change to the watcher reaches it on this machine.")
    figures["completion_latency_bare"] = run(40.0, 90.0, 120.0)
    assert report._why_recorded(figures).endswith(
        "The floor is within the target: the rest is the watcher's."
    )
    # Runs from before the bare loop at the same load: the loop's own requests, 8 Jobs at once.
    del figures["completion_latency_bare"]
    assert "took 100 / 170 ms in this run" in report._why_recorded(figures)


def process_state(pid: int) -> str:
    """The one-letter state of process *pid* (``T`` when stopped)."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]


def wait_for_state(pid: int, wanted: str, within: float = 5.0) -> str:
    """The state of *pid* once it is *wanted*, or whatever it is after *within* seconds."""
    deadline = time.monotonic() + within
    state = process_state(pid)
    while state != wanted and time.monotonic() < deadline:
        time.sleep(0.01)
        state = process_state(pid)
    return state


@dataclass
class Groups:
    """A stand-in for the stack object: only ``process_groups``, over real process groups."""

    groups: dict[str, int]

    def process_groups(self) -> dict[str, int]:
        return self.groups


@pytest.mark.parametrize("fails", [False, True])
def test_the_controllers_are_stopped_in_the_window_and_resumed_after_it_even_on_an_error(
    real_stack: ModuleType, fails: bool
) -> None:
    controllers = [subprocess.Popen(["sleep", "60"], start_new_session=True) for _ in real_stack.PAUSABLE]
    api_server = subprocess.Popen(["sleep", "60"], start_new_session=True)
    groups = {name: child.pid for name, child in zip(real_stack.PAUSABLE, controllers, strict=True)}
    control = real_stack.RealControl(Groups({**groups, "kube-apiserver": api_server.pid}), settle_cap=1.0)
    try:
        with contextlib.suppress(RuntimeError), control.controllers_paused():
            assert [wait_for_state(child.pid, "T") for child in controllers] == ["T", "T"]
            assert process_state(api_server.pid) != "T"  # only the controllers are paused
            if fails:
                raise RuntimeError("the run failed")
        assert [wait_for_state(child.pid, "S") for child in controllers] == ["S", "S"]
    finally:
        for child in (*controllers, api_server):
            child.kill()
            child.wait()


def test_the_collector_s_before_and_after_come_from_the_run_s_two_shipped_runs(report: ModuleType) -> None:
    def shipped(pauses_ms: float, longest_ms: float, full: int, cpu_ms: float) -> dict[str, Any]:
        usage = {"gc_pause_total_ms": pauses_ms, "gc_pause_max_ms": longest_ms, "gc_full_collections": full}
        return {"events": 800, "rate": 200.0, "cpu_ms_per_event_consuming": cpu_ms, "usage": usage}

    assert report.gc_lines({"saturation": shipped(16.0, 2.0, 0, 2.4)}) == []
    runs = {"gc_default_run": shipped(120.0, 12.5, 1, 2.6), "saturation": shipped(16.0, 2.0, 0, 2.4)}
    text = "".join(report.gc_lines(runs))
    before, after = text.split("With `gc.freeze()`")
    assert "120 ms of pauses for 800 events (150 µs per event), the longest 12.5 ms, 1 full" in before
    assert "2.60 ms of dispatcher CPU per event" in before
    assert "16 ms of pauses for 800 events (20 µs per event), the longest 2.0 ms, 0 full" in after
    assert "2.40 ms of dispatcher CPU per event" in after


def test_publish_to_created_names_the_rate_the_cores_sustain_with_the_pods_work(report: ModuleType) -> None:
    def paired(window_s: float, tail_s: float) -> dict[str, Any]:
        return {
            "jobs": 1000,
            "usage": {"bench_cpu_s": window_s / 2, "kube-apiserver_cpu_s": window_s / 2},
            "tail_usage": {"kube-apiserver_cpu_s": tail_s * 0.75, "etcd_cpu_s": tail_s * 0.25},
        }

    def latency(rate: float, p99: float) -> dict[str, Any]:
        return {"target_rate": rate, "due_to_watch": {"p50_ms": p99 / 2, "p99_ms": p99}}

    figures: dict[str, Any] = {
        "machine": {"cpus": 2},
        "fsync": True,
        "raw_k8s_paired": [paired(8.0, 32.0), paired(12.0, 28.0)],  # 10 + 30 ms per Job: 50/s on 2 cores
        "saturation": {"events": 800, "rate": 200.0},
        "latency": {"10": latency(20.0, 21.5), "50": latency(100.0, 900.0)},
        "raw_create_latency": {"due_to_watch": {"p50_ms": 200.0, "p99_ms": 600.0}},
    }
    assert report.sustained_creates(figures) == {"window_ms": 10.0, "tail_ms": 30.0, "rate": 50.0}
    text = report._why_publish(figures)
    assert "costs all processes 10.0 ms in its run and 30.0 ms after it" in text
    assert "these cores sustain about 50 creates/s: 100/s is 2.0x that" in text
    assert text.endswith(
        "At 10% of the maximum (20/s, under what the cores sustain) bucketrun's p99 was 21.5 ms."
    )
    # Under what the cores sustain, or without the paired runs' tails, the floor alone explains it.
    figures["latency"]["50"] = latency(40.0, 900.0)
    assert report._why_publish(figures).endswith("no dispatcher change reaches it on this machine.")
    figures["latency"]["50"] = latency(100.0, 900.0)
    figures["raw_k8s_paired"] = [{**run, "tail_usage": None} for run in figures["raw_k8s_paired"]]
    assert report.sustained_creates(figures) is None
    assert "sustain" not in report._why_publish(figures)


def test_the_log_line_costs_are_measured_and_logging_is_left_as_it_was() -> None:
    import structlog  # noqa: PLC0415 - only this test configures it

    dispatch = load_script(BENCH / "bench_dispatch.py", "bench_dispatch_log_costs_under_test")
    before = structlog.get_config()
    costs = dispatch.log_costs(lines=200)
    assert structlog.get_config() == before
    assert costs["every_pattern_us"] > 0
    assert costs["guarded_us"] > 0


def test_the_log_line_before_and_after_is_reported(report: ModuleType) -> None:
    lines = report.log_lines({"every_pattern_us": 46.2, "guarded_us": 21.4})
    assert "46 µs with every redaction pattern searched on every value (before) and 21 µs" in lines[-1]
    assert report.log_lines(None) == []


def test_the_latency_loads_take_the_lower_of_the_measured_and_the_sustained_rate(report: ModuleType) -> None:
    assert report.load_basis(182.0, 47.5) == 47.5
    assert report.load_basis(40.0, 47.5) == 40.0
    assert report.load_basis(182.0, None, float("nan")) == 182.0  # a run without the pods' figures
    results = {"saturation": {"rate": 182.0}}
    assert report.publish_basis(results) == 182.0
    results["running"] = {"rate": 170.0, "to_running": {"rate": 47.5, "seconds": 16.8, "jobs": 800}}
    assert report.publish_basis(results) == 47.5
    assert report.upload_basis({"rate": 119.7, "to_running": {"rate": 39.0}}) == 39.0
    assert report.upload_basis({"rate": 119.7}) == 119.7
    assert report.record_basis({"rate": 77.7, "to_recorded": {"rate": 31.0}}) == 31.0
    assert report.record_basis({"rate": 77.7}) == 77.7
    to_running = ("created", "to the last pod taken up")
    assert report.basis_sentence(182.0, 47.5, "/s", *to_running) == (
        "of 47.5/s, the rate to the last pod taken up; 182.0/s created"
    )
    assert report.basis_sentence(40.0, 47.5, "/s", *to_running) == "of 40.0/s, the rate created"


def test_the_sustained_runs_are_reported_with_the_reading_before(report: ModuleType) -> None:
    def run(created: float, running: float, seconds: float) -> dict[str, Any]:
        return {"rate": created, "to_running": {"rate": running, "seconds": seconds, "jobs": 800}}

    def latency(rate: float, p50: float, p99: float) -> dict[str, Any]:
        return {"target_rate": rate, "due_to_watch": {"p50_ms": p50, "p99_ms": p99}}

    results: dict[str, Any] = {
        "saturation": {"rate": 180.0},
        "running": run(180.0, 47.0, 17.0),
        "running_bare": run(200.0, 48.0, 16.7) | {"in_flight": 128},
        "upload": {"no_queue_dir": {"sustained": run(119.7, 40.0, 10.0)}, "queue_dir": {"sustained": {}}},
        "completions": {"rate": 77.7, "finish_rate": 52.0, "to_recorded": {"jobs": 200, "rate": 31.0}},
        "latency_created_50": latency(90.0, 160.0, 530.0),
        "raw_create_latency_created_50": latency(90.0, 370.0, 765.0),
    }
    text = "\n".join(report.sustained_lines(results))
    assert "| bucketrun as shipped, pre-published events | 180.0 | 47.0 | 17.0 s |" in text
    assert "| bare creates of bucketrun's Job (128 in flight) | 200.0 | 48.0 | 16.7 s |" in text
    assert "| bucketrun, uploads (no queue dir) | 119.7 | 40.0 | 10.0 s |" in text
    assert "uploads (queue dir)" not in text  # no row for a run without its pods' figures
    assert "200 Jobs created at once while it ran were recorded at 31.0 per s" in text
    assert "finished the first batch at 52.0 per s" in text
    assert "bucketrun made 98% of the bare client's rate" in text
    assert "160.0 / 530.0 ms (p50 / p99)" in text
    assert "370.0 / 765.0 ms: a queue behind the pods' work" in text
    assert "(90 events/s, above what the machine sustains)" in text
    results["running"]["to_running"]["rate"] = 120.0  # half the create rate is then within it
    assert "(90 events/s)" in "\n".join(report.sustained_lines(results))
    assert report.sustained_lines({"running": {"rate": 1.0}}) == []  # the emulator's run: no such section


def test_a_pod_counts_as_taken_up_once_bound_and_given_a_start_time_by_the_node() -> None:
    dispatch = load_script(BENCH / "bench_dispatch.py", "bench_dispatch_pods_under_test")
    pods = dispatch.PodsTakenUp(expected=2)

    def event(job: str, node: str | None, start: str | None) -> dict[str, Any]:
        labels = {"batch.kubernetes.io/job-name": job}
        return {
            "type": "MODIFIED",
            "object": {
                "metadata": {"labels": labels},
                "spec": {"nodeName": node} if node else {},
                "status": {"startTime": start} if start else {},
            },
        }

    pods._note(event("a", None, None), 1.0)  # made by the Job controller
    pods._note(event("a", "node", None), 2.0)  # bound by the scheduler
    assert pods.seen == {}
    pods._note(event("a", "node", "2026-12-05T00:00:00Z"), 3.0)  # its first status, by the node
    pods._note(event("a", "node", "2026-12-05T00:00:00Z"), 4.0)  # later events change nothing
    assert pods.seen == {"a": 3.0}
    assert not pods.complete.is_set()
    pods._note(event("b", "node", "2026-12-05T00:00:01Z"), 5.0)
    assert pods.complete.is_set()
    assert pods.rate_since(1.0) == 2 / 4.0


def naive_results(minimal_rate: float | None) -> dict[str, Any]:
    """A run's figures for the naive target: the naive script at 70/s, bucketrun's Job created at 200/s,
    a small one at 500/s; with *minimal_rate*, bucketrun's run with the naive script's Job shape."""
    results: dict[str, Any] = {
        "naive": {"rate": 70.0},
        "raw_k8s_small": {"rate": 500.0},
        "raw_k8s_rendered": {"rate": 200.0, "avg_body_bytes": 7500},
    }
    if minimal_rate is not None:
        results["minimal_template_run"] = {
            "rate": minimal_rate,
            "avg_body_bytes": 1024,
            "cpu_ms_per_event_consuming": 1.9,
        }
    return results


@pytest.mark.parametrize(("minimal", "met"), [(None, False), (330.0, False), (380.0, True)])
def test_the_naive_target_names_the_measured_template_run_and_whether_it_meets_it(
    report: ModuleType, minimal: float | None, met: bool
) -> None:
    text = report._why_naive(naive_results(minimal))
    assert "5x would need 350/s, 1.8x what the bare client gets" in text
    assert ("made 380 events/s, x5.4 the naive baseline" in text) == met
    assert ("That template is the change that meets the target" in text) == met
    assert ("made 330 events/s, x4.7 the naive baseline" in text) == (minimal == 330.0)
    assert "as shipped this target fails on this machine" in text
