"""bench/pinned.py: the pinning of whole process groups, and the verdict against the bare runs beside."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.script_modules import load_script

BENCH = Path(__file__).resolve().parents[2] / "bench"
THREADED = (
    "import threading, time; threading.Thread(target=time.sleep, args=(60,)).start(); "
    "print(1, flush=True); time.sleep(60)"
)


@pytest.fixture(scope="module")
def pinned() -> ModuleType:
    return load_script(BENCH / "pinned.py", "bench_pinned_under_test")


def test_every_thread_of_a_process_group_is_pinned(pinned: ModuleType) -> None:
    child = subprocess.Popen([sys.executable, "-c", THREADED], stdout=subprocess.PIPE, start_new_session=True)
    try:
        assert child.stdout is not None
        assert child.stdout.readline()  # both threads are running
        assert pinned.pin_groups([child.pid], {0}) == 2
        tasks = [int(task.name) for task in os.scandir(f"/proc/{child.pid}/task")]
        assert [os.sched_getaffinity(task) for task in tasks] == [{0}, {0}]
        assert pinned.pin_groups([child.pid + 10_000_000], {0}) == 0  # no such group: nothing pinned
    finally:
        child.kill()
        child.wait()
        if child.stdout is not None:
            child.stdout.close()


def run(rate: float, cpu_s: float, index: int | None = None, **extra: Any) -> dict[str, Any]:
    return {
        "rate": rate,
        "jobs": 100,
        "events": 100,
        "in_flight": 128,
        "cpu_ms_per_event_consuming": 10 * cpu_s,
        "usage": {"bench_cpu_s": cpu_s, "kube-apiserver_cpu_s": 0.5},
        **({} if index is None else {"round": index}),
        **extra,
    }


@pytest.mark.parametrize(("middle", "verdict"), [(95.0, "PASS"), (80.0, "FAIL")])
def test_bucketrun_is_judged_on_the_median_round_against_the_bare_runs_beside_each(
    pinned: ModuleType, report: ModuleType, middle: float, verdict: str
) -> None:
    # Bare runs of 100/s throughout: shipped runs of 70/s, *middle*, 99/s; the raised runs 100/s.
    results: dict[str, Any] = {
        "raw_k8s_paired": [run(100.0, 0.2) for _ in range(7)],
        "saturation_rounds": [run(rate, 0.3, index) for index, rate in enumerate((70.0, middle, 99.0))],
        "saturation_direct_rounds": [
            run(100.0, 0.25, index, direct_creates=128, prefetch=128) for index in range(3)
        ],
        "events": 100,
        "in_flight": 128,
        "machine": {"cpus": 2, "load_before": [1.0], "load_after": [2.0]},
        "command": ".venv/bin/python bench/pinned.py",
    }
    for kind in ("saturation", "saturation_direct"):
        results[kind] = report.median_round(results, kind)
    text = pinned.markdown(results)
    assert (
        f"bucketrun as shipped: {middle / 100:.0%} in the median round (every round: 70%, "
        f"{middle / 100:.0%}, 99%), **{verdict}**"
    ) in text
    assert "bucketrun DIRECT_CREATES=128, PREFETCH=128: 100% in the median round" in text
    # CPU per event, all rounds together: 0.3 s of the bench's CPU per 100 events.
    assert "| bucketrun as shipped | 3.00 | 5.00 |" in text
    assert "| bare creates | 2.00 | 5.00 |" in text


@pytest.fixture(scope="module")
def report() -> ModuleType:
    return load_script(BENCH / "report.py", "bench_report_for_pinned")


@pytest.mark.parametrize(
    ("controllers", "pinned_layout", "says"),
    [
        ("paused", True, "were stopped during every run's window, bare and bucketrun's alike"),
        ("running", True, "ran throughout (`--controllers running`)"),
        ("paused", False, "Nothing is pinned (`--unpinned`)"),
    ],
)
def test_the_report_says_how_the_controllers_and_the_cores_were_set(
    pinned: ModuleType, report: ModuleType, controllers: str, pinned_layout: bool, says: str
) -> None:
    results: dict[str, Any] = {
        "raw_k8s_paired": [run(100.0, 0.2) for _ in range(3)],
        "saturation_rounds": [run(95.0, 0.3, 0)],
        "saturation_direct_rounds": [run(100.0, 0.25, 0, direct_creates=128, prefetch=128)],
        "events": 100,
        "in_flight": 128,
        "controllers": controllers,
        "pinned": pinned_layout,
        "machine": {"cpus": 2, "load_before": [1.0], "load_after": [2.0]},
        "command": ".venv/bin/python bench/pinned.py",
    }
    for kind in ("saturation", "saturation_direct"):
        results[kind] = report.median_round(results, kind)
    text = pinned.markdown(results)
    assert says in text
    where = "the dispatcher on a core of its own" if pinned_layout else "every process on both cores"
    assert f"**PASS** with {where}." in text
