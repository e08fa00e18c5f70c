"""`make bench`: the performance report of issue #8, every figure from one run on one machine.

A measurement, not a test. From the repository root:
``.venv/bin/python bench/run_all.py [--quick] [--out bench/results]``.

With a real RabbitMQ (the machine's, or ``$BUCKETRUN_BENCH_AMQP_URL``) and the Kubernetes API emulator
with the instant kubelet (pods finish at once), it measures in order:

1. raw limits: bare aio-pika publish and consume+ack, bare kubernetes-asyncio Job creates (small and
   rendered Jobs), the bare watch-event rate (``bench_dispatch.py``, ``completions.py``);
2. bucketrun: sustained events/s publish -> Job created (dispatcher in this process); p50/p95/p99 of
   publish -> created at 10%, 50% and 90% of that rate; the watcher's completions/s and finished ->
   recorded latency at 10/50/90% of its rate; a 10,000-event burst drained by a dispatcher process (time,
   API writes per Job, peak RSS, duplicates and losses) (``completions.py``, ``scale.py``);
3. the naive baseline against the same broker and emulator (``naive_baseline.py``);
4. scale: dispatcher and watcher processes with 1k, 10k and 50k tracked Jobs (``scale.py``).

Writes ``latest.json``, ``latest.md`` (targets PASS/FAIL, ratios to the raw limits and the naive
baseline) and ``latency.png`` / ``rss.png`` to the output folder; prints the targets and progress lines.
``--quick`` runs every phase on small sizes (a smoke run of a minute or two, not a result).
"""

# ruff: noqa: T201 - a benchmark prints its figures

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shlex
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling bench modules
sys.path.insert(1, str(Path(__file__).resolve().parents[1]))  # the repository (the emulator lives in tests/)

import aio_pika  # noqa: TID251 - the bench fills the naive baseline's queue with the bare client
import bench_dispatch as dispatch
import completions
import report
import scale

REPO_ROOT = Path(__file__).resolve().parents[1]
WATCH_JOBS = 1000
"""Jobs whose events the bare watch replays: few enough that their history fits the emulator's window."""


@dataclass(frozen=True)
class Sizes:
    """How much each phase does."""

    events: int
    latency_seconds: float
    completions: int
    naive: int
    burst: int
    scale: tuple[int, ...]
    scale_events: int
    api_latency_ms: tuple[int, ...] = (5, 20)
    """Latencies added to every emulator answer for the second comparison with the naive baseline."""


FULL = Sizes(
    events=2000,
    latency_seconds=10,
    completions=2000,
    naive=500,
    burst=10_000,
    scale=(1_000, 10_000, 50_000),
    scale_events=300,
)
TINY = Sizes(
    events=30,
    latency_seconds=1,
    completions=20,
    naive=10,
    burst=30,
    scale=(20,),
    scale_events=10,
    api_latency_ms=(5,),
)
"""For the test that keeps this code from rotting (tests/integration/test_bench_smoke.py)."""
QUICK = Sizes(
    events=200,
    latency_seconds=2,
    completions=100,
    naive=50,
    burst=300,
    scale=(100, 400),
    scale_events=50,
    api_latency_ms=(5,),
)


async def naive_baseline(
    stack: dispatch.Stack, count: int, progress: dispatch.Progress, namespace: str = "bench-naive"
) -> dict[str, Any]:
    """Fill a quorum queue with *count* MinIO messages; run ``naive_baseline.py`` on it as its own process."""
    queue = f"{stack.prefix}.naive"
    await dispatch.create_namespace(stack.kubeconfig, namespace)
    connection = await aio_pika.connect(stack.amqp_url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        await channel.declare_queue(queue, durable=True, arguments={"x-queue-type": "quorum"})
        await dispatch.publish_all(
            channel.default_exchange, queue, [body for _, body in dispatch.corpus("naive", count)]
        )
    progress(f"naive baseline: {count} events, one pika consumer, synchronous creates, then polling")
    answer = await asyncio.to_thread(
        subprocess.run,
        [
            sys.executable,
            str(REPO_ROOT / "bench" / "naive_baseline.py"),
            "--amqp-url",
            stack.amqp_url,
            "--queue",
            queue,
            "--kubeconfig",
            str(stack.kubeconfig),
            "--namespace",
            namespace,
            "--count",
            str(count),
        ],
        capture_output=True,
        text=True,
        timeout=60 + count * 0.5,
        check=False,
    )
    if answer.returncode != 0:
        raise RuntimeError(f"naive_baseline.py failed ({answer.returncode}): {answer.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(answer.stdout.strip().splitlines()[-1])
    return result


async def with_api_latency(
    stack: dispatch.Stack, bench: dispatch.Bench, sizes: Sizes, progress: dispatch.Progress
) -> dict[str, Any]:
    """bucketrun's sustained rate and the naive baseline's again, with every emulator answer delayed.

    The emulator answers a create in well under a millisecond; a real API server commits each write
    to etcd before it answers, so a client that waits for each request in turn is bound by that round
    trip and one that keeps many in flight is not. Informational: the targets are judged on the
    emulator as it is.
    """
    figures: dict[str, Any] = {}
    for millis in sizes.api_latency_ms:
        stack.control.set_faults(latency=millis / 1000)
        try:
            progress(f"API latency {millis} ms: bucketrun, {sizes.events} events")
            bucketrun = await bench.saturation(f"al{millis}", sizes.events)
            await bench.settle(f"bench-al{millis}")
            naive = await naive_baseline(stack, sizes.naive, progress, namespace=f"bench-naive-al{millis}")
        finally:
            stack.control.clear_faults()
        await bench.settle(f"bench-naive-al{millis}")
        figures[str(millis)] = {"bucketrun": bucketrun, "naive": naive}
    return figures


async def measure(
    stack: dispatch.Stack, sizes: Sizes, work: Path, progress: dispatch.Progress
) -> dict[str, Any]:
    """Every phase in order; the results dict (without the verdicts)."""
    settings = stack.settings("bench")
    bench = dispatch.Bench(stack, progress, settings.amqp.prefetch)
    results = bench.results
    results["problems"] = bench.log.problems
    queues, exchanges = dispatch.broker_objects(settings, stack.raw_queue)
    queues.append(f"{stack.prefix}.naive")
    with Path(os.devnull).open("w") as sink:  # noqa: ASYNC230 - opening /dev/null does not block
        dispatch.configure_dispatcher_logs(bench.log, sink)
        try:
            await bench.raw_limits(sizes.events)
            await bench.settle("bench-raw-small", "bench-raw-rendered")
            watched = min(sizes.events, WATCH_JOBS)
            progress(f"raw: bare watch replaying the events of {watched} finished Jobs")
            since = await completions.resource_version(stack.kubeconfig, "default")
            await dispatch.create_namespace(stack.kubeconfig, "bench-watch")
            await completions.create_jobs(
                stack.kubeconfig, "bench-watch", [f"w-{index:06d}" for index in range(watched)], None
            )
            results["raw_watch"] = await completions.raw_watch_rate(
                stack.kubeconfig, "bench-watch", since, watched
            )
            await bench.settle("bench-watch")
            progress(f"bucketrun: {sizes.events} pre-published events -> dispatcher -> Jobs")
            results["saturation"] = await bench.saturation("sat", sizes.events)
            await bench.settle("bench-sat")
            results["latency"] = {}
            for share in (10, 50, 90):
                rate = results["saturation"]["rate"] * share / 100
                progress(f"latency: {rate:,.0f} events/s ({share}% of max) for {sizes.latency_seconds:g} s")
                results["latency"][str(share)] = await bench.latency(
                    rate, sizes.latency_seconds, f"lat{share}"
                )
                await bench.settle(f"bench-lat{share}")
            progress(f"watcher: recording {sizes.completions} finished Jobs")
            results["completions"] = await completions.watcher_completions(
                stack.kubeconfig, "bench-done", sizes.completions
            )
            await bench.settle("bench-done")
            results["completion_latency"] = {}
            for share in (10, 50, 90):
                rate = results["completions"]["rate"] * share / 100
                progress(
                    f"watcher latency: {rate:,.0f} Jobs/s ({share}% of max) for {sizes.latency_seconds:g} s"
                )
                results["completion_latency"][str(share)] = await completions.completion_latency(
                    stack.kubeconfig, f"bench-rec{share}", rate, sizes.latency_seconds
                )
                await bench.settle(f"bench-rec{share}")
            results["naive"] = await naive_baseline(stack, sizes.naive, progress)
            await bench.settle("bench-naive")
            results["api_latency"] = await with_api_latency(stack, bench, sizes, progress)
            results["burst"] = await scale.burst(stack, sizes.burst, work, progress)
            # Not emptied: deleting 10,000 Jobs and their pods outlasts the control API's timeout, and the
            # scale phase measures processes of its own in a namespace of its own.
            results["scale"] = await scale.scale(
                stack,
                sizes=sizes.scale,
                events=sizes.scale_events,
                work=work,
                progress=progress,
                set_kubelet=stack.control.set_kubelet,
            )
        finally:
            progress("deleting the bench's queues and exchanges")
            await dispatch.delete_broker_objects(stack.amqp_url, queues, exchanges)
    raw_a = results["raw_amqp"]
    results["amqp_work_per_event_rate"] = 1 / (2 / raw_a["consume_ack_rate"] + 1 / raw_a["publish_rate"])
    return results


def summary(results: dict[str, Any]) -> str:
    """The targets, one line each, and what the throughput targets ask of this machine, for the terminal."""
    width = max(len(row["target"]) for row in results["targets"])
    verdicts = [
        f"{row['verdict']:<4}  {row['target']:<{width}}  {row['measured']}" for row in results["targets"]
    ]
    budget = [f"- {title} {text}" for title, text in report.budget_conclusions(report.cpu_budget(results))]
    return "\n".join([*verdicts, "", "What the throughput targets ask of this machine:", *budget])


def main(argv: list[str]) -> int:
    """Start the servers, measure, judge, write the outputs, print the targets."""
    parser = argparse.ArgumentParser(
        prog="bench/run_all.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run, not a result")
    parser.add_argument("--tiny", action="store_true", help="the smallest sizes: for the bench's own test")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "bench" / "results", help="output folder")
    parser.add_argument("--no-plots", action="store_true", help="skip the PNG plots (no matplotlib needed)")
    options = parser.parse_args(argv)
    sizes = TINY if options.tiny else QUICK if options.quick else FULL
    progress = dispatch.Progress()
    machine = dispatch.machine_facts()
    with (
        tempfile.TemporaryDirectory(prefix="bucketrun-bench-all-") as scratch,
        dispatch.started_stack(progress, kubelet="instant") as stack,
    ):
        results = asyncio.run(measure(stack, sizes, Path(scratch), progress))
        broker = stack.amqp_url.rsplit("@", 1)[-1]
    machine["load_after"] = [round(value, 2) for value in os.getloadavg()]
    results.update(
        machine=machine,
        quick=options.quick or options.tiny,
        sizes=sizes.__dict__,
        services=len(dispatch.SERVICES),
        broker=broker,
        command=shlex.join([".venv/bin/python", "bench/run_all.py", *argv]),
    )
    results["targets"] = report.targets(results)
    for path in report.write_outputs(results, options.out, plots=not options.no_plots):
        progress(f"wrote {path}")
    print(summary(results))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
