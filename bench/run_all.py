"""`make bench`: the performance report of issues #21 and #8, every figure from one run on one machine.

A measurement, not a test. From the repository root:
``.venv/bin/python bench/run_all.py [--quick] [--out bench/results] [--backend auto|real|emulator]``.

On the real stack (``--backend real``, or ``auto`` when ``make servers`` built it; ``real_stack.py``):
etcd with fsync, kube-apiserver, kube-controller-manager, kube-scheduler, the node agent, RabbitMQ and
two MinIOs (with and without ``queue_dir``), ``RealRun`` measures in order: raw limits (bare aio-pika,
bare creates of bucketrun's rendered Job at the best of several concurrencies and of a minimal Job, the
bare watch, bare PUT -> AMQP message); rounds of bucketrun's sustained rate, as shipped and with
``DIRECT_CREATES`` and ``PREFETCH`` at the bare runs' concurrency, every run between two bare create
runs of its Job (the throughput target's baseline, in the same cluster state; judged on the median
round); publish -> created at 10/50/90%, bare creates at 50%, the profile, the shipped run again
with CPython's default collector thresholds (the before of ``dispatcher.runtime.gc_tuning``) and with
one service-queue message per event (``HANDOFF_BATCH=1``, the before of the batched hand-off); upload ->
Job created through real MinIO notifications (a dispatcher process); the bare record loop and the
watcher; the naive baseline; scale at 1k, 10k and 50k tracked Jobs; then the 10,000-event burst. The
targets are issue #21's.

On the emulator (``--backend emulator``, or ``auto`` without the servers; ``--tiny`` unless ``--backend
real``), with a real RabbitMQ (the machine's, or ``$BUCKETRUN_BENCH_AMQP_URL``) and the instant kubelet,
it measures what issue #8 asked: raw limits, bucketrun's sustained rate and latency, the watcher, the
naive baseline (also with API latency added), the burst and scale at 1k, 10k and 50k tracked Jobs.

Writes ``latest.json``, ``latest.md`` (targets PASS/FAIL, ratios to the raw limits and the naive
baseline, CPU per process), ``latency.png`` / ``rss.png`` (and ``upload_cdf.png`` on the real stack) to
the output folder; prints the targets and progress lines. ``--quick`` runs every phase on small sizes
(a smoke run of several minutes, not a result).
"""

# ruff: noqa: T201 - a benchmark prints its figures

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import gc
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling bench modules
sys.path.insert(1, str(Path(__file__).resolve().parents[1]))  # the repository (the emulator lives in tests/)

import aio_pika  # noqa: TID251 - the bench fills the naive baseline's queue with the bare client
import bench_dispatch as dispatch
import completions
import real_stack
import report
import scale
import uploads

from dispatcher.domain.constants import ANNOTATION_KEY
from dispatcher.runtime.gc_tuning import tune_garbage_collector
from dispatcher.runtime.tls_buffers import limit_tls_read_buffers

REPO_ROOT = Path(__file__).resolve().parents[1]
MINIMAL_TEMPLATES = REPO_ROOT / "bench" / "minimal_template"
"""A template directory whose ``job.yaml.j2`` has the naive script's Job shape: one container, no stager."""
CPYTHON_GC_THRESHOLDS = (700, 10, 10)
"""CPython's own collector thresholds (what every process had before ``tune_garbage_collector``)."""
WATCH_JOBS = 1000
"""Jobs whose events the bare watch replays: few enough that their history fits the emulator's window."""
COMPLETION_SECONDS = 4.0
"""At most this long the real stack's watcher latency runs create Jobs: its Job controller finishes about
one Job a second here, and each run waits for all of them."""


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
    concurrencies: tuple[int, ...] = (16, 64, 128)
    """Requests in flight tried for the bare creates on the real stack (the best one is the raw limit)."""
    uploads: int = 1000
    """Uploads of the sustained upload -> Job created run and of the bare MinIO -> AMQP run (real stack)."""
    rounds: int = 5
    """Rounds of bucketrun's two saturation runs on the real stack, each run between two bare create runs;
    the throughput target is judged on the median round (the bare rate moves by tens of percent from one
    run to the next here, and one round of three fell 20 to 50 points away from the other two)."""


FULL = Sizes(
    events=2000,
    latency_seconds=10,
    completions=2000,
    naive=500,
    burst=10_000,
    scale=(1_000, 10_000, 50_000),
    scale_events=300,
)
FULL_REAL = Sizes(
    events=800,
    latency_seconds=6,
    completions=200,
    naive=300,
    burst=10_000,
    scale=(1_000, 10_000, 50_000),
    scale_events=300,
    concurrencies=(16, 64, 128),
    uploads=400,
)
"""The full run on the real stack."""
QUICK_REAL = Sizes(
    events=200,
    latency_seconds=2,
    completions=60,
    naive=30,
    burst=300,
    scale=(100, 400),
    scale_events=50,
    concurrencies=(16, 64),
    uploads=200,
    rounds=1,
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
    rounds=1,
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
    stack: dispatch.Stack,
    count: int,
    progress: dispatch.Progress,
    namespace: str = "bench-naive",
    *,
    poll: bool = True,
) -> dict[str, Any]:
    """Fill a quorum queue with *count* MinIO messages; run ``naive_baseline.py`` on it as its own process
    (without *poll*, it stops once its Jobs are created: the real Job controller finishes them slowly)."""
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
            *(() if poll else ("--no-poll",)),
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


async def best_concurrency(
    bench: dispatch.Bench, sizes: Sizes, docs: list[dict[str, Any]], tag: str, progress: dispatch.Progress
) -> dict[str, Any]:
    """Bare creates of *docs* at each of ``sizes.concurrencies`` requests in flight (a namespace each):
    the fastest run, with every run's rate under ``sweep``."""
    runs = []
    for in_flight in sizes.concurrencies:
        namespace = f"bench-raw-{tag}-c{in_flight}"
        progress(f"raw (b): {len(docs)} {tag} Jobs, {in_flight} in flight")
        runs.append(await created_in(bench, namespace, docs, in_flight))
        await bench.settle(namespace)
    best = max(runs, key=lambda run: run["rate"])
    return best | {"sweep": {str(run["in_flight"]): run["rate"] for run in runs}}


@dataclass
class RealRun:
    """The phases of a run on the real stack (``measure_real``), sharing one ``Bench`` and its results.

    Dispatch phases run with the node agent holding pods (the Job controller and the scheduler still
    make and bind each Job's pod); the watcher's phases with pods finishing at once. Between phases the
    control plane is left to become quiet (``RealControl.reset_namespace``).
    """

    stack: dispatch.Stack
    sizes: Sizes
    work: Path
    progress: dispatch.Progress
    stores: tuple[uploads.Store, uploads.Store]
    bench: dispatch.Bench

    @property
    def results(self) -> dict[str, Any]:
        """The results so far."""
        return self.bench.results

    async def raw_limits(self) -> list[dict[str, Any]]:
        """Bare aio-pika, bare creates at the best concurrency, the bare watch, bare PUT -> message; the
        rendered Jobs (for the bare latency run)."""
        stack, sizes, bench, results, progress = (
            self.stack,
            self.sizes,
            self.bench,
            self.results,
            self.progress,
        )
        bodies = [body for _, body in dispatch.corpus("raw", sizes.events)]
        progress(f"raw (a): aio-pika, {sizes.events} messages through a fresh quorum queue")
        results["raw_amqp"] = await bench.raw_amqp(bodies)
        rendered = dispatch.rendered_jobs(stack.settings("bench-raw-rendered"), bodies)
        results["raw_k8s_rendered"] = await best_concurrency(bench, sizes, rendered, "rendered", progress)
        small = [dispatch.small_job(f"raw-{index:06d}") for index in range(sizes.events)]
        best = Sizes(**{**sizes.__dict__, "concurrencies": (results["raw_k8s_rendered"]["in_flight"],)})
        results["raw_k8s_small"] = await best_concurrency(bench, best, small, "small", progress)
        watched = min(sizes.events, WATCH_JOBS)
        progress(f"raw: bare watch replaying the events of {watched} Jobs")
        since = await completions.resource_version(stack.kubeconfig, "default")
        await dispatch.create_namespace(stack.kubeconfig, "bench-watch")
        await completions.create_jobs(
            stack.kubeconfig, "bench-watch", [f"w-{index:06d}" for index in range(watched)], None
        )
        results["raw_watch"] = await completions.raw_watch_rate(
            stack.kubeconfig, "bench-watch", since, watched
        )
        await bench.settle("bench-watch")
        results["raw_notify"] = {}
        for store in self.stores:
            name = "queue_dir" if store.queue_dir else "no_queue_dir"
            bench.meter.start()
            row = await uploads.bare_notifications(
                store,
                stack.amqp_url,
                f"{stack.prefix}.bare-{name}",
                sizes.uploads,
                rate=None,
                progress=progress,
            )
            row["usage"] = bench.meter.stop()
            results["raw_notify"][name] = row
        return rendered

    async def dispatching(self, rendered: list[dict[str, Any]]) -> None:
        """Rounds of saturation (as shipped, then at the bare runs' concurrency), every run between two
        bare create runs; publish -> created at 10/50/90%, the bare creates at 50%, the profile."""
        sizes, bench, results, progress = self.sizes, self.bench, self.results, self.progress
        # The bare creates again before, between and after each of bucketrun's saturation runs, at the
        # sweep's best in-flight count: the cluster's state (the Jobs and pods earlier phases left) moves
        # the API server's rate by tens of percent, so each run is compared with the bare runs on either
        # side, and the target with the median of several rounds (report.round_ratios).
        in_flight = results["raw_k8s_rendered"]["in_flight"]
        results |= await saturation_rounds(bench, progress, sizes.rounds, rendered, in_flight)
        results |= await to_running_runs(bench, progress, rendered, in_flight)
        maximum = report.publish_basis(results)
        results["latency"] = {}
        for share in (10, 50, 90):
            rate = maximum * share / 100
            progress(f"latency: {rate:,.0f} events/s ({share}% of max) for {sizes.latency_seconds:g} s")
            results["latency"][str(share)] = await bench.latency(rate, sizes.latency_seconds, f"lat{share}")
            await bench.settle(f"bench-lat{share}")
        results["raw_create_latency"] = await self.bare_latency(rendered, maximum / 2, "bench-raw-lat")
        if maximum < results["saturation"]["rate"]:
            # The reading before the sustained maximum, in the same run: half the create rate of the rounds.
            rate = results["saturation"]["rate"] / 2
            seconds = sizes.latency_seconds
            progress(f"latency: {rate:,.0f} events/s (50% of the rounds' create rate) for {seconds:g} s")
            results["latency_created_50"] = await bench.latency(rate, seconds, "latc50")
            await bench.settle("bench-latc50")
            results["raw_create_latency_created_50"] = await self.bare_latency(
                rendered, rate, "bench-raw-latc"
            )
        progress(f"profile: the saturation run again under cProfile ({sizes.events} events)")
        profiler = cProfile.Profile()
        results["profile_run"] = await bench.saturation("prof", sizes.events, profiler)
        await bench.settle("bench-prof")
        factor = (
            results["saturation"]["usage"]["bench_cpu_s"] / results["profile_run"]["usage"]["bench_cpu_s"]
        )
        results["profile"] = dispatch.profile_report(profiler, sizes.events, factor)
        results["json_costs"] = dispatch.json_costs(rendered)
        results["log_costs"] = dispatch.log_costs()
        progress(
            f"collector: the saturation run as shipped with CPython's default thresholds ({sizes.events})"
        )
        with cpython_default_collector():
            results["gc_default_run"] = await bench.saturation("gcdef", sizes.events)
        await bench.settle("bench-gcdef")
        progress(
            f"hand-off: the saturation run as shipped with BUCKETRUN_DISPATCH__HANDOFF_BATCH=1, one message "
            f"per event handed to a service queue ({sizes.events})"
        )
        single = {"handoff_batch": 1}
        results["handoff_single_run"] = await bench.saturation("hosingle", sizes.events, dispatch=single)
        await bench.settle("bench-hosingle")
        progress(
            f"template: the saturation run as shipped with the naive script's Job shape "
            f"(BUCKETRUN_CLUSTER__TEMPLATE_DIR=bench/minimal_template; {sizes.events} events)"
        )
        minimal = {"template_dir": MINIMAL_TEMPLATES}
        results["minimal_template_run"] = await bench.saturation("mintpl", sizes.events, cluster=minimal)
        await bench.settle("bench-mintpl")
        docs = dispatch.rendered_jobs(
            self.stack.settings("bench-mintpl", cluster=minimal),
            [body for _, body in dispatch.corpus("mintpl", min(sizes.events, 100))],
        )
        size = sum(len(json.dumps(doc)) for doc in docs) / len(docs)
        results["minimal_template_run"]["avg_body_bytes"] = size

    async def bare_latency(
        self, rendered: list[dict[str, Any]], rate: float, namespace: str
    ) -> dict[str, Any]:
        """Bare creates of bucketrun's Job open-loop at *rate* (``bare_create_latency``), then the settle."""
        seconds = self.sizes.latency_seconds
        self.progress(f"raw: bare creates of bucketrun's Job at {rate:,.0f}/s for {seconds:g} s")
        figures = await bare_create_latency(self.stack, rendered, rate, seconds, namespace)
        await self.bench.settle(namespace)
        return figures

    async def uploading(self) -> None:
        """Per MinIO: sustained upload -> Job created, bare PUT -> message at 50%, latency at 10/50/90%."""
        stack, sizes, bench, progress = self.stack, self.sizes, self.bench, self.progress
        self.results["upload"] = {}
        for store in self.stores:
            name = "queue_dir" if store.queue_dir else "no_queue_dir"
            tag = "upq" if store.queue_dir else "upn"
            bench.meter.start()
            sustained = await uploads.upload_to_created(
                stack,
                store,
                count=sizes.uploads,
                rate=None,
                tag=f"{tag}-max",
                work=self.work,
                progress=progress,
                running=True,
                meter=bench.meter,
            )
            await bench.settle(f"bench-{tag}-max")
            row: dict[str, Any] = {"sustained": sustained, "latency": {}}
            maximum = report.upload_basis(sustained)
            rate = maximum / 2
            row["bare_at_50"] = await uploads.bare_notifications(
                store,
                stack.amqp_url,
                f"{stack.prefix}.bare50-{name}",
                max(2, round(rate * sizes.latency_seconds)),
                rate=rate,
                progress=progress,
            )
            for share in (10, 50, 90):
                rate = maximum * share / 100
                row["latency"][str(share)] = await uploads.upload_to_created(
                    stack,
                    store,
                    count=max(2, round(rate * sizes.latency_seconds)),
                    rate=rate,
                    tag=f"{tag}{share}",
                    work=self.work,
                    progress=progress,
                )
                await bench.settle(f"bench-{tag}{share}")
            self.results["upload"][name] = row

    async def recording(self) -> None:
        """The bare record loop and the watcher's completions/s, then finished -> recorded at 10/50/90%."""
        stack, sizes, bench, results, progress = (
            self.stack,
            self.sizes,
            self.bench,
            self.results,
            self.progress,
        )
        progress(
            f"watcher: {sizes.completions} finished Jobs, the bare client's reads and writes, the watcher"
        )
        results["completions"] = await completions.watcher_completions(
            stack.kubeconfig, "bench-done", sizes.completions, bare=True, meter=bench.meter
        )
        await bench.settle("bench-done")
        progress(f"watcher: {sizes.completions} Jobs created at once, to the last one recorded")
        results["completions"]["to_recorded"] = await completions.created_to_recorded(
            stack.kubeconfig, "bench-e2e", sizes.completions
        )
        await bench.settle("bench-e2e")
        results["completion_latency"] = {}
        seconds = min(sizes.latency_seconds, COMPLETION_SECONDS)
        maximum = report.record_basis(results["completions"])
        for share in (10, 50, 90):
            rate = maximum * share / 100
            progress(f"watcher latency: {rate:,.1f} Jobs/s ({share}% of max) for {seconds:g} s")
            results["completion_latency"][str(share)] = await completions.completion_latency(
                stack.kubeconfig, f"bench-rec{share}", rate, seconds, meter=bench.meter
            )
            await bench.settle(f"bench-rec{share}")
            if share == 50:  # the same load recorded by the bare client: the floor at that load
                progress(f"bare record loop: {rate:,.1f} Jobs/s for {seconds:g} s")
                results["completion_latency_bare"] = await completions.completion_latency(
                    stack.kubeconfig, "bench-recbare", rate, seconds, bare=True, meter=bench.meter
                )
                await bench.settle("bench-recbare")


@contextlib.contextmanager
def cpython_default_collector() -> Iterator[None]:
    """CPython's own collector settings for the block (nothing frozen, thresholds 700, 10, 10), the
    shipped ones (``tune_garbage_collector``) again after it: the before of the collector's before/after."""
    tuned = gc.get_threshold()
    gc.unfreeze()
    gc.set_threshold(*CPYTHON_GC_THRESHOLDS)
    try:
        yield
    finally:
        tune_garbage_collector(tuned[0])


async def bare_creates(
    bench: dispatch.Bench, progress: dispatch.Progress, tag: str, docs: list[dict[str, Any]], in_flight: int
) -> dict[str, Any]:
    """Bare creates of *docs* at *in_flight* in a namespace of their own, then the settle."""
    namespace = f"bench-raw-{tag}"
    progress(f"raw (b): {len(docs)} rendered Jobs, {in_flight} in flight, beside bucketrun's run")
    run = await created_in(bench, namespace, docs, in_flight)
    run["tail_usage"] = await bench.settle(namespace)
    return run


async def created_in(
    bench: dispatch.Bench,
    namespace: str,
    docs: list[dict[str, Any]],
    in_flight: int,
    *,
    running: bool = False,
) -> dict[str, Any]:
    """Bare creates of *docs*, placed in *namespace*, at *in_flight*: the run (with ``in_flight``);
    ``RuntimeError`` unless every create was answered 201. With *running*, until every pod is taken up."""
    placed = [{**doc, "metadata": {**doc["metadata"], "namespace": namespace}} for doc in docs]
    run = await bench.raw_creates(namespace, placed, in_flight, running=running)
    if run["statuses"] != {"201": len(docs)}:
        raise RuntimeError(f"bare creates in {namespace} were answered {run['statuses']}, not all 201")
    return run | {"in_flight": in_flight}


async def saturation_rounds(
    bench: dispatch.Bench,
    progress: dispatch.Progress,
    rounds: int,
    docs: list[dict[str, Any]],
    in_flight: int,
) -> dict[str, Any]:
    """*rounds* rounds of bucketrun's two saturation runs of ``len(docs)`` events (as shipped, then with
    ``DIRECT_CREATES`` and ``PREFETCH`` at *in_flight*), every run between two bare create runs of *docs*:
    ``raw_k8s_paired``, ``saturation_rounds``, ``saturation_direct_rounds`` and the median round of each
    (``saturation``, ``saturation_direct``; report.median_round)."""
    events = len(docs)
    paired = [await bare_creates(bench, progress, "pair-0", docs, in_flight)]
    shipped_runs: list[dict[str, Any]] = []
    raised_runs: list[dict[str, Any]] = []
    for index in range(rounds):
        where = f"round {index + 1} of {rounds}"
        progress(f"bucketrun ({where}): {events} pre-published events -> dispatcher -> Jobs")
        shipped = await bench.saturation(f"sat{index}", events)
        shipped["tail_usage"] = await bench.settle(f"bench-sat{index}")
        shipped_runs.append(shipped | {"round": index})
        paired.append(await bare_creates(bench, progress, f"pair-{2 * index + 1}", docs, in_flight))
        progress(
            f"bucketrun ({where}) with BUCKETRUN_DISPATCH__DIRECT_CREATES={in_flight} and "
            f"BUCKETRUN_AMQP__PREFETCH={in_flight}, the bare runs' concurrency"
        )
        raised = await bench.saturation(
            f"satd{index}", events, dispatch={"direct_creates": in_flight}, amqp={"prefetch": in_flight}
        )
        raised["tail_usage"] = await bench.settle(f"bench-satd{index}")
        raised_runs.append(raised | {"round": index, "direct_creates": in_flight, "prefetch": in_flight})
        paired.append(await bare_creates(bench, progress, f"pair-{2 * index + 2}", docs, in_flight))
    results: dict[str, Any] = {
        "raw_k8s_paired": paired,
        "saturation_rounds": shipped_runs,
        "saturation_direct_rounds": raised_runs,
    }
    for run in ("saturation", "saturation_direct"):
        results[run] = report.median_round(results, run)
    return results


async def to_running_runs(
    bench: dispatch.Bench, progress: dispatch.Progress, docs: list[dict[str, Any]], in_flight: int
) -> dict[str, Any]:
    """bucketrun as shipped on ``len(docs)`` pre-published events, then bare creates of *docs* at
    *in_flight*, each until every Job's pod is taken up by the node (``running``, ``running_bare``): the
    rates this machine sustains, the pods' work counted, which the latency runs take their loads from."""
    events = len(docs)
    progress(f"to running: bucketrun as shipped, {events} events, until every Job's pod is taken up")
    shipped = await bench.saturation("run", events, running=True)
    shipped["tail_usage"] = await bench.settle("bench-run")
    progress(f"to running: {events} bare creates, {in_flight} in flight, until every pod is taken up")
    bare = await created_in(bench, "bench-raw-run", docs, in_flight, running=True)
    bare["tail_usage"] = await bench.settle("bench-raw-run")
    return {"running": shipped, "running_bare": bare}


async def measure_real(
    stack: dispatch.Stack,
    sizes: Sizes,
    work: Path,
    progress: dispatch.Progress,
    stores: tuple[uploads.Store, uploads.Store],
) -> dict[str, Any]:
    """Every phase on the real stack, in order (see ``RealRun``); the results dict (without verdicts)."""
    control = stack.control
    bench = dispatch.Bench(stack, progress, stack.settings("bench").amqp.prefetch)
    run = RealRun(stack, sizes, work, progress, stores, bench)
    results = bench.results
    results["problems"] = bench.log.problems
    with Path(os.devnull).open("w") as sink:  # noqa: ASYNC230 - opening /dev/null does not block
        dispatch.configure_dispatcher_logs(bench.log, sink)
        # First, while the Job controller has nothing else to do: later phases leave it thousands of
        # held Jobs to make pods for, and it then finishes new Jobs minutes late (a full run timed out).
        await asyncio.to_thread(control.set_kubelet, "instant")
        await run.recording()
        await asyncio.to_thread(control.set_kubelet, "off")
        rendered = await run.raw_limits()
        await run.dispatching(rendered)
        await run.uploading()
        results["naive"] = await naive_baseline(stack, sizes.naive, progress, poll=False)
        await bench.settle("bench-naive")
        results["scale"] = await scale.scale(
            stack,
            sizes=sizes.scale,
            events=sizes.scale_events,
            work=work,
            progress=progress,
            set_kubelet=control.set_kubelet,
            suspend=True,
        )
        await bench.settle("bench-scale")
        # Last: the control plane's work on its 10,000 Jobs (pods made and bound) outlasts the run.
        results["burst"] = await scale.burst(stack, sizes.burst, work, progress)
    raw_a = results["raw_amqp"]
    results["amqp_work_per_event_rate"] = 1 / (2 / raw_a["consume_ack_rate"] + 1 / raw_a["publish_rate"])
    results["settles"] = control.settles
    return results


async def bare_create_latency(
    stack: dispatch.Stack, docs: list[dict[str, Any]], rate: float, duration: float, namespace: str
) -> dict[str, Any]:
    """Bare creates of *docs* (cycled) open-loop at *rate* for *duration*: due instant -> the Job's ADDED
    event on a watch, as the publish -> created latency is measured, without bucketrun in between."""
    count = max(2, round(rate * duration))
    await dispatch.create_namespace(stack.kubeconfig, namespace)
    placed = []
    for index in range(count):
        doc = docs[index % len(docs)]
        metadata = {**doc["metadata"], "namespace": namespace, "name": f"bare-{index:06d}"}
        metadata["annotations"] = {**metadata.get("annotations", {}), ANNOTATION_KEY: f"bare/{index}"}
        placed.append({**doc, "metadata": metadata})
    watch = dispatch.JobWatch(count)
    observer = asyncio.create_task(watch.run(stack.kubeconfig, namespace))
    due: dict[str, float] = {}
    try:
        await dispatch.until(watch.opened, observer, 30, "the Job watch to open")
        async with await dispatch.api_client_for(stack.kubeconfig) as api:
            batch: Any = dispatch.client.BatchV1Api(api)

            async def create(doc: dict[str, Any]) -> None:
                response = await batch.create_namespaced_job(namespace, doc, _preload_content=False)
                response.release()

            tasks = []
            start = time.perf_counter()
            for index, doc in enumerate(placed):
                instant = start + index / rate
                # A schedule, not a wait for a condition: the creates must arrive at a steady rate.
                await asyncio.sleep(max(0.0, instant - time.perf_counter()))
                due[f"bare/{index}"] = instant
                tasks.append(asyncio.create_task(create(doc)))
            await asyncio.gather(*tasks)
        await dispatch.until(watch.complete, observer, 60, "every bare Job on the watch")
    finally:
        observer.cancel()
        await asyncio.gather(observer, return_exceptions=True)
    return {
        "jobs": count,
        "target_rate": rate,
        "due_to_watch": dispatch.latency_summary([watch.seen[key] - instant for key, instant in due.items()]),
    }


def summary(results: dict[str, Any]) -> str:
    """The targets, one line each, and what the throughput targets ask of this machine, for the terminal."""
    width = max(len(row["target"]) for row in results["targets"])
    verdicts = [
        f"{row['verdict']:<4}  {row['target']:<{width}}  {row['measured']}" for row in results["targets"]
    ]
    if results.get("backend") == "real":
        return "\n".join([*verdicts, "", *report.why_lines(results)])
    budget = [f"- {title} {text}" for title, text in report.budget_conclusions(report.cpu_budget(results))]
    return "\n".join([*verdicts, "", "What the throughput targets ask of this machine:", *budget])


def choose_backend(requested: str, tiny: bool) -> tuple[str, str]:
    """(backend, why): ``real`` when asked or when ``auto`` finds the stack built (``--tiny`` stays on the
    emulator unless ``--backend real``: its test must be quick), else ``emulator``."""
    missing = real_stack.unavailable()
    if requested == "real":
        if missing is not None:
            raise SystemExit(f"--backend real: {missing}")
        return "real", "asked for"
    if requested == "emulator":
        return "emulator", "asked for"
    if tiny:
        return "emulator", "--tiny runs on the emulator unless --backend real"
    if missing is not None:
        return "emulator", f"the real stack is not built ({missing})"
    return "real", "the real stack is built (`make servers`)"


@contextlib.contextmanager
def real_stack_for_bench(
    scratch: Path, fsync: bool, settle_cap: float, progress: dispatch.Progress
) -> Iterator[tuple[dispatch.Stack, tuple[uploads.Store, uploads.Store]]]:
    """The real stack, a second MinIO without queue_dir, and the bench's Stack on them; stopped on exit."""
    progress(
        f"starting the real stack (etcd fsync {'on' if fsync else 'off'}): RabbitMQ, MinIO, the control "
        "plane, the node agent"
    )
    with real_stack.started_real_stack(scratch / "stack", fsync=fsync, settle_cap=settle_cap) as (
        devstack,
        control,
    ):
        dispatch.NAMESPACE_HOOKS.append(control.namespace_created)
        root = devstack.minio.root
        fdl = scratch / "services.yaml"
        fdl.write_text(dispatch.fdl_text())
        with real_stack.started_minio_without_queue_dir(devstack.rabbit.url, "bench.minio-direct") as second:
            second_root = second.server.root
            stores = (
                uploads.Store(
                    devstack.minio.endpoint, root.user, root.password, real_stack.EXCHANGE, queue_dir=True
                ),
                uploads.Store(
                    second.server.endpoint,
                    second_root.user,
                    second_root.password,
                    second.exchange,
                    queue_dir=False,
                ),
            )
            groups = devstack.process_groups() | {"minio-direct": second.server.process.pid}
            stack = dispatch.Stack(
                amqp_url=devstack.rabbit.url,
                kubeconfig=devstack.plane.kubeconfig,
                control=control,
                emulator_pid=None,
                s3_endpoint=devstack.minio.endpoint,
                fdl=fdl,
                prefix=f"bench-{uuid.uuid4().hex[:10]}",
                backend="real",
                cpu=lambda: real_stack.groups_cpu_seconds(groups),
                s3_access_key=root.user,
                s3_secret_key=root.password,
                versions=real_stack.versions(devstack),
            )
            try:
                yield stack, stores
            finally:
                dispatch.NAMESPACE_HOOKS.remove(control.namespace_created)
                progress("stopping the real stack")


def main(argv: list[str]) -> int:
    """Start the servers, measure, judge, write the outputs, print the targets."""
    parser = argparse.ArgumentParser(
        prog="bench/run_all.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run, not a result")
    parser.add_argument("--tiny", action="store_true", help="the smallest sizes: for the bench's own test")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "bench" / "results", help="output folder")
    parser.add_argument("--no-plots", action="store_true", help="skip the PNG plots (no matplotlib needed)")
    parser.add_argument(
        "--backend",
        choices=("auto", "real", "emulator"),
        default="auto",
        help="real: the local stack (`make servers`); auto (default): real when built, else the emulator",
    )
    parser.add_argument(
        "--no-fsync", action="store_true", help="real stack: etcd without fsync (test-only; production syncs)"
    )
    options = parser.parse_args(argv)
    limit_tls_read_buffers()  # as every bucketrun process does: the in-process runs use the shipped buffers
    tune_garbage_collector()  # likewise the shipped collector thresholds (bare runs share this process)
    backend, why = choose_backend(options.backend, options.tiny)
    progress = dispatch.Progress()
    progress(f"backend: {backend} ({why})")
    machine = dispatch.machine_facts()
    if backend == "real":
        sizes = TINY if options.tiny else QUICK_REAL if options.quick else FULL_REAL
        with tempfile.TemporaryDirectory(prefix="bucketrun-bench-all-") as scratch:
            settle_cap = 20.0 if options.quick or options.tiny else 60.0
            with real_stack_for_bench(Path(scratch), not options.no_fsync, settle_cap, progress) as (
                stack,
                stores,
            ):
                results = asyncio.run(measure_real(stack, sizes, Path(scratch), progress, stores))
                broker = stack.amqp_url.rsplit("@", 1)[-1]
                results["versions"] = stack.versions
        results["fsync"] = not options.no_fsync
    else:
        sizes = TINY if options.tiny else QUICK if options.quick else FULL
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
        backend=backend,
        backend_reason=why,
        command=shlex.join([".venv/bin/python", "bench/run_all.py", *argv]),
    )
    results["targets"] = report.targets(results)
    for path in report.write_outputs(results, options.out, plots=not options.no_plots):
        progress(f"wrote {path}")
    print(summary(results))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
