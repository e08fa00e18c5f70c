"""The benchmark's code still runs: `bench/run_all.py --tiny` end to end (figures not judged, never timed).

It runs every phase on a few dozen events against the real broker and the emulator, and checks what
does not depend on the machine's speed: every output is written, every target has a verdict, and the
burst created exactly one Job per event.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_run_all_tiny_writes_a_complete_report(rabbitmq_url: str, tmp_path: Path) -> None:
    answer = subprocess.run(
        [sys.executable, "bench/run_all.py", "--tiny", "--no-plots", "--out", str(tmp_path)],
        cwd=REPO_ROOT,
        env={"PATH": "/usr/bin:/bin", "BUCKETRUN_BENCH_AMQP_URL": rabbitmq_url},
        capture_output=True,
        text=True,
        timeout=110,
        check=False,
    )
    assert answer.returncode == 0, answer.stderr[-4000:]
    results = json.loads((tmp_path / "latest.json").read_text())
    report = (tmp_path / "latest.md").read_text()
    assert "## Targets (issue #8)" in report
    assert "## With API latency (informational)" in report
    assert "## What the throughput targets ask of this machine" in report
    for phase in ("raw_k8s_small", "raw_k8s_rendered", "saturation"):
        assert results[phase]["usage"]["emulator_cpu_s"] > 0, phase
    assert "What the throughput targets ask of this machine:" in answer.stdout
    delayed = results["api_latency"]["5"]
    assert delayed["bucketrun"]["jobs_logged_created"] == delayed["bucketrun"]["events"]
    assert delayed["naive"]["rate"] > 0
    assert len(results["targets"]) == 7
    assert {row["verdict"] for row in results["targets"]} <= {"PASS", "FAIL"}
    burst = results["burst"]
    assert (burst["duplicates"], burst["losses"], burst["unexpected"]) == (0, 0, 0)
    assert burst["jobs_listed"] == burst["events"]
    assert set(results["latency"]) == set(results["completion_latency"]) == {"10", "50", "90"}
    assert results["scale"][0]["tracked_jobs"] == 20
    assert "PASS" in answer.stdout or "FAIL" in answer.stdout
