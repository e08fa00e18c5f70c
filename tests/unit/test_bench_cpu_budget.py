"""The benchmark's CPU budget: what the throughput targets ask of the machine, from a run's own figures."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.script_modules import load_script

REPORT = Path(__file__).resolve().parents[2] / "bench" / "report.py"


@pytest.fixture(scope="module")
def report() -> ModuleType:
    return load_script(REPORT, "bench_report_under_test")


def usage(bench: float, emulator: float, rabbitmq: float = 0.0) -> dict[str, float]:
    return {"bench_cpu_s": bench, "emulator_cpu_s": emulator, "rabbitmq_cpu_s": rabbitmq}


def results(
    *,
    cpus: int = 2,
    small: tuple[float, float, float] = (2225.0, 0.64, 0.85),
    rendered: tuple[float, float, float] = (700.0, 1.09, 2.71),
    naive: float = 956.0,
) -> dict[str, Any]:
    """A run's figures in the shape run_all.py writes them: (rate, client CPU s, emulator CPU s) per
    2,000 bare creates, and a bucketrun saturation run of 2,000 events."""
    return {
        "machine": {"cpus": cpus},
        "raw_amqp": {"consume_ack_rate": 9494.0},
        "raw_k8s_small": {"jobs": 2000, "rate": small[0], "usage": usage(small[1], small[2])},
        "raw_k8s_rendered": {"jobs": 2000, "rate": rendered[0], "usage": usage(rendered[1], rendered[2])},
        "saturation": {"events": 2000, "rate": 519.0, "usage": usage(2.82, 3.15, 1.04)},
        "naive": {"rate": naive},
    }


def test_per_event_cpu_and_ceilings_come_from_the_run(report: ModuleType) -> None:
    budget = report.cpu_budget(results())
    small, own, ours = budget["rows"]
    assert own["ms"] == pytest.approx({"bench": 0.545, "emulator": 1.355, "rabbitmq": 0.0, "total": 1.9})
    # The single-threaded emulator bounds the rendered Job before the two cores do (2000 / 1.9 = 1,053).
    assert own["ceiling"] == pytest.approx(1000 / 1.355)
    assert small["ceiling"] == pytest.approx(min(2000 / 0.745, 1000 / 0.425))
    assert ours["ms"]["total"] == pytest.approx((2.82 + 3.15 + 1.04) / 2)
    assert (budget["lower_name"], budget["lower"]) == ("bare Job create", 2225.0)
    assert budget["needed"] == pytest.approx(1780.0)
    assert budget["allowed_ms"] == pytest.approx(2000 / 1780)


def test_unreachable_targets_are_said_to_be_so(report: ModuleType) -> None:
    budget = report.cpu_budget(results())
    assert not budget["raw_target_reachable"]
    assert not budget["naive_target_reachable"]
    text = "\n".join(report.cpu_budget_lines(results()))
    assert "no dispatcher that creates these Jobs can reach the target on this machine" in text
    assert "9,560 events/s" in text
    assert "no dispatcher creates Jobs faster than the bare client" in text


def test_a_bigger_machine_with_cheap_jobs_leaves_the_gap_to_bucketrun(report: ModuleType) -> None:
    # 16 cores, a bucketrun Job as cheap to create as the small one, a slow naive script.
    figures = results(cpus=16, rendered=(2200.0, 0.64, 0.85), naive=200.0)
    budget = report.cpu_budget(figures)
    assert budget["raw_target_reachable"]
    assert budget["naive_target_reachable"]
    text = "\n".join(report.cpu_budget_lines(figures))
    assert "does not rule the target out: the gap is bucketrun's own work" in text
    assert "so the target is within reach" in text
