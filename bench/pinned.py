"""The dispatcher on a core of its own: is bucketrun the bottleneck once it does not share the API
server's cores? (issue #21)

On this 2-core machine every process shares both cores, so the dispatcher's CPU is taken from the API
server and etcd, and `make bench`'s throughput target fails for that reason (bench/results/latest.md).
A deployment runs the dispatcher on a worker node and the API server on the control plane's. This run
does the same on the real stack: it pins every thread of the control plane (etcd, kube-apiserver,
kube-controller-manager, kube-scheduler, the node agent) to core 0, and this process (the bare client,
or the dispatcher in it), RabbitMQ and MinIO to core 1. Then, in one run, ``--rounds`` rounds of
bucketrun's two saturation runs (as shipped, and with ``DIRECT_CREATES`` and ``PREFETCH`` at the bare
runs' ``--in-flight``), every run between two runs of bare creates of the same rendered Jobs:

    bare, shipped, bare, raised, bare, shipped, bare, raised, bare, ...

with the ratio of each bucketrun run to the mean of the bare runs on either side of it, the verdict on
the median round, and every process's CPU per event. Writes ``pinned.json`` and ``pinned.md`` into
``--out``. ``--unpinned`` runs the same rounds with nothing pinned, as ``make bench`` runs them.

During every run's window (bare and bucketrun's alike) kube-controller-manager and kube-scheduler are
stopped (SIGSTOP) and resumed after it (``--controllers paused``, the default): the window then holds
the run's creates and nothing else. With them running (``--controllers running``), the Job controller
makes the pods of a run's Jobs on the same core as the API server, as fast as it can, and how much of
that falls inside the window depends on how long the window lasts: a run a little slower than the bare
one gets more of it, which slows it further. The pods' work is the same per Job whoever created it;
the settle after each run waits for it either way.

    .venv/bin/python bench/pinned.py [--events 800] [--in-flight 128] [--rounds 3]
        [--controllers paused|running] [--unpinned] [--out bench/results]

Needs ``make servers`` and at least 2 cores. A measurement, not a test.
"""

# ruff: noqa: T201 - a benchmark prints its figures

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shlex
import sys
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import bench_dispatch as dispatch  # the bench's own modules, found through the path set above
import real_stack
import report
import run_all

from dispatcher.runtime.gc_tuning import tune_garbage_collector
from dispatcher.runtime.tls_buffers import limit_tls_read_buffers

CONTROLLERS_SENTENCE = {
    "paused": "kube-controller-manager and kube-scheduler were stopped during every run's window, bare and "
    "bucketrun's alike, and resumed after it (`--controllers paused`): each window holds the run's creates, "
    "not the pods the Job controller makes for them, which it made during the settle after the run.",
    "running": "kube-controller-manager and kube-scheduler ran throughout (`--controllers running`): the "
    "pods the Job controller makes for a run's Jobs share core 0 with the API server in the run's window.",
}
CONTROL_CORE = 0
CLIENT_CORE = 1
TARGET = report.TARGET_RENDERED_RATIO


def pin_groups(groups: Iterable[int], cpus: set[int]) -> int:
    """Every thread of every process in the process *groups* to *cpus*; how many threads were pinned
    (a thread created later inherits its creator's mask)."""
    wanted, pinned = set(groups), 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry.name}/stat").read_bytes()
            if int(stat.rsplit(b")", 1)[1].split()[2]) not in wanted:
                continue
            for task in os.scandir(f"/proc/{entry.name}/task"):
                os.sched_setaffinity(int(task.name), cpus)
                pinned += 1
        except (OSError, IndexError, ValueError):
            continue  # a process or thread that ended meanwhile
    return pinned


def pin_self(cpus: set[int]) -> None:
    """Every thread of this process to *cpus*."""
    for task in os.scandir(f"/proc/{os.getpid()}/task"):
        os.sched_setaffinity(int(task.name), cpus)


async def measure(
    stack: dispatch.Stack,
    options: argparse.Namespace,
    progress: dispatch.Progress,
) -> dict[str, Any]:
    """The rounds, pinned; the results dict, in ``make bench``'s shape (``raw_k8s_paired``,
    ``saturation_rounds``, ``saturation_direct_rounds``, and the median rounds)."""
    events, in_flight = options.events, options.in_flight
    bench = dispatch.Bench(
        stack,
        progress,
        stack.settings("bench").amqp.prefetch,
        pause_controllers=options.controllers == "paused",
    )
    bodies = [body for _, body in dispatch.corpus("pin", events)]
    rendered = dispatch.rendered_jobs(stack.settings("bench-pin-rendered"), bodies)
    with Path(os.devnull).open("w") as sink:  # noqa: ASYNC230 - opening /dev/null does not block
        dispatch.configure_dispatcher_logs(bench.log, sink)
        await asyncio.to_thread(stack.control.set_kubelet, "off")
        rounds_run = await run_all.saturation_rounds(bench, progress, options.rounds, rendered, in_flight)
    return {
        "events": events,
        "in_flight": in_flight,
        "controllers": options.controllers,
        "pinned": not options.unpinned,
        **rounds_run,
    }


def per_event(usage: Mapping[str, Any], count: int) -> dict[str, float]:
    """ms of CPU per event of each process."""
    return {
        name.removesuffix("_cpu_s"): 1000 * float(value) / count
        for name, value in usage.items()
        if name.endswith("_cpu_s") and value
    }


def markdown(results: Mapping[str, Any]) -> str:
    """The rounds as a table, every process's CPU per event, and the verdict on the median round."""
    bare = results["raw_k8s_paired"]
    shipped, raised = results["saturation_rounds"], results["saturation_direct_rounds"]
    groups = (
        ("bare creates", bare, "jobs"),
        ("bucketrun as shipped", shipped, "events"),
        (f"bucketrun, {report.direct_label(raised[0])}", raised, "events"),
    )
    costs = {
        label: per_event(report.merged_usage(runs), sum(run[unit] for run in runs))
        for label, runs, unit in groups
    }
    names = sorted({name for cost in costs.values() for name in cost})
    machine = results["machine"]
    median = {run: report.round_ratios(results, run) for run in ("saturation", "saturation_direct")}
    pinned = results.get("pinned", True)
    layout = (
        "The control plane (etcd, kube-apiserver, kube-controller-manager, kube-scheduler, the node "
        f"agent) is pinned to core {CONTROL_CORE}; this process (the bare client, or the dispatcher in it), "
        f"RabbitMQ and MinIO to core {CLIENT_CORE}, as a deployment keeps the dispatcher off the control "
        "plane's nodes."
        if pinned
        else "Nothing is pinned (`--unpinned`): every process may run on every core, as in `make bench`."
    )
    lines = [
        "# The dispatcher on a core of its own (issue #21)"
        if pinned
        else "# The throughput rounds, unpinned (issue #21)",
        "",
        f"`{results['command']}` — {machine['cpus']} CPUs, load average before {machine['load_before']}, "
        f"after {machine['load_after']}; the real stack (etcd fsync on), {results['events']:,} events or "
        f"Jobs per run, bare creates {results['in_flight']} in flight. {layout} "
        + CONTROLLERS_SENTENCE[results.get("controllers", "running")]
        + " All figures from this one run.",
        *report.rounds_lines(results),
        "",
        "CPU per event (or bare Job) of each process, all rounds together (ms):",
        "",
        "| runs | " + " | ".join(names) + " |",
        "|---|" + "---:|" * len(names),
        *(
            f"| {label} | " + " | ".join(f"{costs[label].get(name, 0.0):.2f}" for name in names) + " |"
            for label, _, _ in groups
        ),
        "",
    ]
    for run, label in (("saturation", "as shipped"), ("saturation_direct", report.direct_label(raised[0]))):
        ratio = float(results[run]["rate"]) / report.create_baseline(results, run)["rate"]
        lines.append(
            f"- Throughput target (>= {TARGET:.0%} of the bare create rate of the same Job), bucketrun "
            f"{label}: {ratio:.0%} in the median round (every round: "
            f"{', '.join(f'{value:.0%}' for value in median[run])}), "
            f"**{report.verdict(ratio >= TARGET)}** "
            + ("with the dispatcher on a core of its own." if pinned else "with every process on both cores.")
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    """Start the real stack, pin, measure, write the outputs."""
    parser = argparse.ArgumentParser(
        prog="bench/pinned.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=800, help="events (or bare Jobs) per run")
    parser.add_argument(
        "--in-flight", type=int, default=128, help="bare creates in flight (make bench's best)"
    )
    parser.add_argument("--rounds", type=int, default=3, help="rounds of bucketrun's two runs")
    parser.add_argument(
        "--controllers",
        choices=("paused", "running"),
        default="paused",
        help="paused (default): stop kube-controller-manager and kube-scheduler during each run's window; "
        "running: leave them running",
    )
    parser.add_argument(
        "--unpinned",
        action="store_true",
        help="pin nothing (every process on every core, as make bench runs): the same rounds, to compare",
    )
    parser.add_argument(
        "--out", type=Path, default=run_all.REPO_ROOT / "bench" / "results", help="output folder"
    )
    options = parser.parse_args(argv)
    limit_tls_read_buffers()  # as every bucketrun process does: the dispatcher here uses the shipped buffers
    tune_garbage_collector()  # likewise the shipped collector thresholds (bare runs share this process)
    missing = real_stack.unavailable()
    if missing is not None:
        raise SystemExit(f"bench/pinned.py needs the real stack: {missing}")
    if len(os.sched_getaffinity(0)) < 2:
        raise SystemExit("bench/pinned.py needs 2 cores")
    progress = dispatch.Progress()
    machine = dispatch.machine_facts()
    with (
        tempfile.TemporaryDirectory(prefix="bucketrun-bench-pinned-") as scratch,
        run_all.real_stack_for_bench(Path(scratch), True, 60.0, progress) as (stack, _),
    ):
        if not options.unpinned:
            groups = stack.control.stack.process_groups()
            control = [group for name, group in groups.items() if name in real_stack.CONTROL_PLANE]
            others = [group for name, group in groups.items() if name not in real_stack.CONTROL_PLANE]
            threads = pin_groups(control, {CONTROL_CORE}) + pin_groups(others, {CLIENT_CORE})
            pin_self({CLIENT_CORE})
            progress(
                f"pinned {threads} server threads: the control plane to core {CONTROL_CORE}, "
                f"the rest to {CLIENT_CORE}"
            )
        try:
            results = asyncio.run(measure(stack, options, progress))
        finally:
            pin_self(set(range(os.cpu_count() or 1)))
    machine["load_after"] = [round(value, 2) for value in os.getloadavg()]
    results |= {"machine": machine, "command": shlex.join([".venv/bin/python", "bench/pinned.py", *argv])}
    options.out.mkdir(parents=True, exist_ok=True)
    (options.out / "pinned.json").write_text(json.dumps(results, indent=2, default=str))
    text = markdown(results)
    (options.out / "pinned.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
