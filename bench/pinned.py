"""The dispatcher on a core of its own: is bucketrun the bottleneck once it does not share the API
server's cores? (issue #21)

On this 2-core machine every process shares both cores, so the dispatcher's CPU is taken from the API
server and etcd, and `make bench`'s throughput target fails for that reason (bench/results/latest.md).
A deployment runs the dispatcher on a worker node and the API server on the control plane's. This run
does the same on the real stack: it pins every thread of the control plane (etcd, kube-apiserver,
kube-controller-manager, kube-scheduler, the node agent) to core 0, and this process (the bare client,
or the dispatcher in it), RabbitMQ and MinIO to core 1. Then, in one run, bare creates of the same
rendered Jobs (``--in-flight`` requests at once), some of them with a watch open on their namespace as
the dispatcher's informer keeps one on its Jobs, and bucketrun's saturation runs:

    bare, bare + watch, bucketrun as shipped, bare, bare + watch, bucketrun with DIRECT_CREATES=64, bare

with the ratio of each bucketrun run to the mean of the plain bare runs on either side of it, and every
process's CPU per event (the API server's with and without a watch). Writes ``pinned.json`` and
``pinned.md`` into ``--out``.

    .venv/bin/python bench/pinned.py [--events 800] [--in-flight 128] [--out bench/results]

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

WATCHED = ", a watch on their namespace open (as the dispatcher's informer keeps one on its Jobs)"
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


def ratio(run: Mapping[str, Any], before: Mapping[str, Any], after: Mapping[str, Any]) -> float:
    """A saturation run's rate over the mean rate of the bare runs on either side of it."""
    return float(run["rate"]) / ((before["rate"] + after["rate"]) / 2)


async def measure(
    stack: dispatch.Stack, events: int, in_flight: int, progress: dispatch.Progress
) -> dict[str, Any]:
    """The five runs, pinned; the results dict."""
    bench = dispatch.Bench(stack, progress, stack.settings("bench").amqp.prefetch)
    results: dict[str, Any] = {"events": events, "in_flight": in_flight}
    bodies = [body for _, body in dispatch.corpus("pin", events)]
    rendered = dispatch.rendered_jobs(stack.settings("bench-pin-rendered"), bodies)
    with Path(os.devnull).open("w") as sink:  # noqa: ASYNC230 - opening /dev/null does not block
        dispatch.configure_dispatcher_logs(bench.log, sink)
        await asyncio.to_thread(stack.control.set_kubelet, "off")

        async def bare(tag: str, *, watched: bool = False) -> dict[str, Any]:
            namespace = f"bench-pin-{tag}"
            progress(
                f"bare creates: {events} rendered Jobs, {in_flight} in flight{WATCHED if watched else ''}"
            )
            placed = [{**doc, "metadata": {**doc["metadata"], "namespace": namespace}} for doc in rendered]
            watch: asyncio.Task[None] | None = None
            if watched:  # opened before the namespace and its first Job, read until the settle is over
                opened = asyncio.Event()
                watch = asyncio.create_task(
                    dispatch.watch_job_events(stack.kubeconfig, namespace, opened, lambda *_: None)
                )
                await asyncio.wait_for(opened.wait(), 30)
            try:
                run = await bench.raw_creates(namespace, placed, in_flight)
                if run["statuses"] != {"201": events}:
                    raise RuntimeError(f"bare creates in {namespace} were answered {run['statuses']}")
                await bench.settle(namespace)
            finally:
                if watch is not None:
                    watch.cancel()
                    await asyncio.gather(watch, return_exceptions=True)
            return run | {"watched": watched}

        async def bucketrun(tag: str, overrides: Mapping[str, Any] | None) -> dict[str, Any]:
            progress(
                f"bucketrun: {events} pre-published events -> dispatcher -> Jobs {dict(overrides or {})}"
            )
            run = await bench.saturation(tag, events, dispatch=overrides)
            await bench.settle(f"bench-{tag}")
            return run

        results["bare"] = [await bare("a")]
        results["watched"] = [await bare("aw", watched=True)]
        results["shipped"] = await bucketrun("pins", None)
        results["bare"].append(await bare("b"))
        results["watched"].append(await bare("bw", watched=True))
        results["direct"] = await bucketrun("pind", {"direct_creates": run_all.DIRECT_CREATES_TRIED})
        results["direct"]["direct_creates"] = run_all.DIRECT_CREATES_TRIED
        results["bare"].append(await bare("c"))
    return results


def per_event(usage: Mapping[str, Any], count: int) -> dict[str, float]:
    """ms of CPU per event of each process."""
    return {
        name.removesuffix("_cpu_s"): 1000 * float(value) / count
        for name, value in usage.items()
        if name.endswith("_cpu_s") and value
    }


def markdown(results: Mapping[str, Any]) -> str:
    """The runs as a table, with the verdict against the throughput target's ratio."""
    bare, watched = results["bare"], results.get("watched") or []
    rows = [("bare creates", bare[0], None)]
    rows += [("bare creates, a watch open", run, None) for run in watched[:1]]
    rows.append(("bucketrun as shipped", results["shipped"], ratio(results["shipped"], bare[0], bare[1])))
    rows.append(("bare creates", bare[1], None))
    rows += [("bare creates, a watch open", run, None) for run in watched[1:]]
    label = f"bucketrun, DIRECT_CREATES={results['direct']['direct_creates']}"
    rows.append((label, results["direct"], ratio(results["direct"], bare[1], bare[2])))
    rows.append(("bare creates", bare[2], None))
    names = sorted({name for _, run, _ in rows for name in per_event(run["usage"], 1)})
    machine = results["machine"]
    lines = [
        "# The dispatcher on a core of its own (issue #21)",
        "",
        f"`{results['command']}` — {machine['cpus']} CPUs, load average before {machine['load_before']}, "
        f"after {machine['load_after']}; the real stack (etcd fsync on), {results['events']:,} events or "
        f"Jobs per run, bare creates {results['in_flight']} in flight. The control plane (etcd, "
        f"kube-apiserver, kube-controller-manager, kube-scheduler, the node agent) is pinned to core "
        f"{CONTROL_CORE}; this process (the bare client, or the dispatcher in it), RabbitMQ and MinIO to "
        f"core {CLIENT_CORE}, as a deployment keeps the dispatcher off the control plane's nodes. All "
        "figures from this one run, in the order shown.",
        "",
        "| run | rate | / bare on either side | " + " | ".join(f"{name} ms/event" for name in names) + " |",
        "|---|---:|---:|" + "---:|" * len(names),
    ]
    for label, run, share in rows:
        cost = per_event(run["usage"], run.get("jobs", run.get("events", 1)))
        lines.append(
            f"| {label} | {run['rate']:,.1f}/s | {'' if share is None else f'{share:.0%}'} | "
            + " | ".join(f"{cost.get(name, 0.0):.2f}" for name in names)
            + " |"
        )
    shipped = ratio(results["shipped"], bare[0], bare[1])
    lines += [
        "",
        f"Throughput target (>= {TARGET:.0%} of the bare create rate of the same Job): bucketrun as shipped "
        f"made {shipped:.0%} of the bare rate beside it here, **{report.verdict(shipped >= TARGET)}** with "
        "the dispatcher on a core of its own.",
    ]
    if watched:

        def api(run: Mapping[str, Any]) -> float:
            return per_event(run["usage"], run.get("jobs", run.get("events", 1))).get("kube-apiserver", 0.0)

        lines += [
            "",
            f"The API server's CPU per Job: {sum(map(api, bare)) / len(bare):.2f} ms for the bare creates, "
            f"{sum(map(api, watched)) / len(watched):.2f} ms for the bare creates with a watch open on "
            f"them, {api(results['shipped']):.2f} ms in bucketrun's run as shipped and "
            f"{api(results['direct']):.2f} ms with DIRECT_CREATES raised (the dispatcher's informer watches "
            "its Jobs).",
        ]
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
    parser.add_argument(
        "--out", type=Path, default=run_all.REPO_ROOT / "bench" / "results", help="output folder"
    )
    options = parser.parse_args(argv)
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
            results = asyncio.run(measure(stack, options.events, options.in_flight, progress))
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
