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


def run(rate: float, cpu_s: float) -> dict[str, Any]:
    return {
        "rate": rate,
        "jobs": 100,
        "events": 100,
        "usage": {"bench_cpu_s": cpu_s, "kube-apiserver_cpu_s": 0.5},
    }


@pytest.mark.parametrize(("shipped", "verdict"), [(95.0, "PASS"), (80.0, "FAIL")])
def test_bucketrun_is_judged_against_the_bare_runs_on_either_side(
    pinned: ModuleType, shipped: float, verdict: str
) -> None:
    results = {
        "bare": [run(90.0, 0.2), run(110.0, 0.2), run(120.0, 0.2)],
        "shipped": run(shipped, 0.3),
        "direct": run(100.0, 0.25) | {"direct_creates": 64},
        "events": 100,
        "in_flight": 128,
        "machine": {"cpus": 2, "load_before": [1.0], "load_after": [2.0]},
        "command": ".venv/bin/python bench/pinned.py",
    }
    text = pinned.markdown(results)
    assert f"made {shipped / 100:.0%} of the bare rate beside it here, **{verdict}**" in text
    assert "| bucketrun, DIRECT_CREATES=64 | 100.0/s | 87% | 2.50 | 5.00 |" in text
    watched = pinned.markdown(results | {"watched": [run(100.0, 0.2) | {"watched": True}]})
    assert "| bare creates, a watch open | 100.0/s |  | 2.00 | 5.00 |" in watched
    assert "5.00 ms for the bare creates, 5.00 ms for the bare creates with a watch open" in watched
