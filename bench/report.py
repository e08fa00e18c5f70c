"""Targets of issue #8 judged on one run's figures, and the run written as JSON, a markdown table and plots.

Pure functions over the results dict that ``run_all.py`` builds, except ``write_outputs`` (files) and
``plot`` (matplotlib, imported only there so the rest works without the bench extra).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

TARGET_RAW_RATIO = 0.80
TARGET_NAIVE_RATIO = 10.0
TARGET_P99_MS = 50.0
TARGET_WRITES_PER_JOB = 1.0
TARGET_DISPATCHER_RSS_MB = 150.0
TARGET_WATCHER_RSS_MB = 250.0
RSS_BOUNDS = {"dispatcher": TARGET_DISPATCHER_RSS_MB, "watcher": TARGET_WATCHER_RSS_MB}
"""Each process's RSS bound (MB) at TARGET_SCALE_JOBS tracked Jobs."""
TARGET_SCALE_JOBS = 50_000
MIB_PER_MB = 1_000_000 / 1_048_576


def verdict(passed: bool) -> str:
    """PASS or FAIL."""
    return "PASS" if passed else "FAIL"


def targets(results: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Each target of issue #8 (emulator) or issue #21 (real stack): what was measured, PASS/FAIL."""
    if results.get("backend") == "real":
        return targets_real(results)
    lower_name, lower = lower_raw_limit(results)
    sustained = results["saturation"]["rate"]
    naive = results["naive"]["rate"]
    half = results["latency"]["50"]
    sat_api = results["saturation"]["api"]
    job_writes = (sat_api["writes"] - sat_api["config_map_writes"]) / max(sat_api["jobs_created_201"], 1)
    burst = results["burst"]
    rows = [
        {
            "target": f"sustained dispatch >= {TARGET_RAW_RATIO:.0%} of the lower raw limit",
            "measured": (
                f"{sustained:,.0f} events/s = {sustained / lower:.0%} of {lower_name} ({lower:,.0f}/s)"
            ),
            "passed": sustained / lower >= TARGET_RAW_RATIO,
        },
        {
            "target": f"sustained dispatch >= {TARGET_NAIVE_RATIO:.0f}x the naive baseline",
            "measured": f"{sustained:,.0f} vs {naive:,.0f} events/s = x{sustained / naive:.1f}"
            + "".join(
                f"; x{row['bucketrun']['rate'] / row['naive']['rate']:.1f} at {millis} ms API latency"
                for millis, row in results.get("api_latency", {}).items()
            )
            + (" (informational, see below)" if results.get("api_latency") else ""),
            "passed": sustained / naive >= TARGET_NAIVE_RATIO,
        },
        {
            "target": f"p99 publish -> Job created <= {TARGET_P99_MS:.0f} ms at 50% of max rate",
            "measured": f"{half['due_to_watch']['p99_ms']:.1f} ms at {half['achieved_rate']:.0f} events/s",
            "passed": half["due_to_watch"]["p99_ms"] <= TARGET_P99_MS,
        },
        {
            "target": "<= 1 API write per Job created (ConfigMaps amortised per service version)",
            "measured": (
                f"{job_writes:.3f} Job writes per Job + {sat_api['config_map_writes']} ConfigMap writes "
                f"for {sat_api['jobs_created_201']:,} Jobs "
                f"({sat_api['writes'] / max(sat_api['jobs_created_201'], 1):.4f} all writes)"
            ),
            "passed": job_writes <= TARGET_WRITES_PER_JOB
            and sat_api["config_map_writes"] <= results["services"],
        },
        {
            "target": f"{burst['events']:,}-event burst drained with 0 duplicates and 0 losses",
            "measured": (
                f"{burst['seconds']:.1f} s ({burst['rate']:,.0f}/s), {burst['duplicates']} duplicates, "
                f"{burst['losses']} lost, {burst['dead_lettered']} dead-lettered"
            ),
            "passed": burst["duplicates"] == 0 and burst["losses"] == 0 and burst["unexpected"] == 0,
        },
    ]
    rows += rss_targets(results)
    for row in rows:
        row["verdict"] = verdict(row["passed"])
    return rows


def lower_raw_limit(results: Mapping[str, Any]) -> tuple[str, float]:
    """The lower of the two raw limits the first target is measured against: (name, rate)."""
    raw_a = results["raw_amqp"]["consume_ack_rate"]
    raw_b = results["raw_k8s_small"]["rate"]
    return ("bare aio-pika consume+ack", raw_a) if raw_a < raw_b else ("bare Job create", raw_b)


def cpu_per_unit(phase: Mapping[str, Any], count: int) -> dict[str, float]:
    """Milliseconds of CPU per event (or Job) of each process over one measured phase, and their total."""
    usage = phase["usage"]
    figures = {
        side: 1000 * usage[f"{side}_cpu_s"] / max(count, 1) for side in ("bench", "emulator", "rabbitmq")
    }
    figures["total"] = sum(figures.values())
    return figures


def cpu_budget(results: Mapping[str, Any]) -> dict[str, Any]:
    """Why the throughput targets pass or fail on this machine, from the CPU that the same run measured.

    Every process (RabbitMQ, the emulator, the client or dispatcher) shares the machine's cores, so a rate
    of R events/s can last only while the CPU per event of all of them together stays within
    ``cores / R``. The ceiling of each workload is the lower of that bound and one core over its busiest
    single-threaded Python process (client or emulator).
    """
    cores = results["machine"]["cpus"] or 1
    lower_name, lower = lower_raw_limit(results)
    needed = TARGET_RAW_RATIO * lower

    def row(label: str, phase: Mapping[str, Any], count: int, rate: float) -> dict[str, Any]:
        cost = cpu_per_unit(phase, count)
        busiest = max(cost["bench"], cost["emulator"])
        ceiling = min(cores * 1000 / cost["total"], 1000 / busiest) if busiest > 0 else math.inf
        return {"what": label, "ms": cost, "ceiling": ceiling, "measured": rate}

    raw_small, raw_rendered = results["raw_k8s_small"], results["raw_k8s_rendered"]
    sat = results["saturation"]
    rows = [
        row("bare create, small Job", raw_small, raw_small["jobs"], raw_small["rate"]),
        row("bare create, bucketrun's Job", raw_rendered, raw_rendered["jobs"], raw_rendered["rate"]),
        row("bucketrun: consume, route, render, create, ack", sat, sat["events"], sat["rate"]),
    ]
    bare_own_job = rows[1]
    naive_needed = TARGET_NAIVE_RATIO * results["naive"]["rate"]
    fastest_create = max(raw_small["rate"], raw_rendered["rate"])
    return {
        "cores": cores,
        "lower_name": lower_name,
        "lower": lower,
        "needed": needed,
        "allowed_ms": cores * 1000 / needed,
        "rows": rows,
        "raw_target_reachable": bare_own_job["ceiling"] >= needed,
        "naive_needed": naive_needed,
        "fastest_create": fastest_create,
        "naive_target_reachable": fastest_create >= naive_needed,
    }


def cpu_budget_lines(results: Mapping[str, Any]) -> list[str]:
    """The CPU budget as a markdown section: the figures, then what they imply for the two targets."""
    budget = cpu_budget(results)
    lines = [
        "",
        "## What the throughput targets ask of this machine",
        "",
        f"Every process shares the {budget['cores']} cores. CPU per event, from the same run (the bucketrun "
        "row's window includes the dispatcher's start); a ceiling is the lower of cores / total and one "
        "core / the busiest Python process:",
        "",
        "| workload | client or dispatcher | emulator | RabbitMQ | total | ceiling | measured |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in budget["rows"]:
        ms = row["ms"]
        lines.append(
            f"| {row['what']} | {ms['bench']:.2f} ms | {ms['emulator']:.2f} ms | {ms['rabbitmq']:.2f} ms | "
            f"{ms['total']:.2f} ms | {row['ceiling']:,.0f}/s | {row['measured']:,.0f}/s |"
        )
    lines.append("")
    lines += [f"- **{title}** {text}" for title, text in budget_conclusions(budget)]
    return lines


def budget_conclusions(budget: Mapping[str, Any]) -> list[tuple[str, str]]:
    """What the CPU budget says of each throughput target: (the target, the sentence), plain text."""
    own = budget["rows"][1]
    return [
        (
            f"{TARGET_RAW_RATIO:.0%} of the lower raw limit",
            f"({budget['lower_name']}, {budget['lower']:,.0f}/s) is {budget['needed']:,.0f} events/s: at "
            f"most {budget['allowed_ms']:.2f} ms of CPU per event for all processes together. "
            "Creating bucketrun's own Job the bare way, with no queue, rendering or bookkeeping, "
            f"costs {own['ms']['total']:.2f} ms ({own['ms']['total'] / budget['allowed_ms']:.1f}x that) "
            f"and tops out at {own['ceiling']:,.0f}/s, "
            + (
                "so the Job's own cost does not rule the target out: the gap is bucketrun's own work."
                if budget["raw_target_reachable"]
                else "so no dispatcher that creates these Jobs can reach the target on this machine."
            ),
        ),
        (
            f"{TARGET_NAIVE_RATIO:.0f}x the naive baseline",
            f"is {budget['naive_needed']:,.0f} events/s; the "
            f"fastest bare create in this run made {budget['fastest_create']:,.0f} Jobs/s"
            + (
                ", so the target is within reach."
                if budget["naive_target_reachable"]
                else " on this emulator, and no dispatcher creates Jobs faster than the bare client "
                "does: the target needs an API server slow enough that the naive script waits on it (see "
                "the API latency table)."
            ),
        ),
    ]


def markdown(results: Mapping[str, Any]) -> str:
    """The run as markdown: targets, raw limits and ratios, latency table, scale table."""
    machine = results["machine"]
    lines = [
        f"# bucketrun performance report ({'quick smoke run' if results['quick'] else 'full run'})",
        "",
        f"`{results['command']}` — {machine['cpus']} CPUs, Python {machine['python']}, load average before "
        f"{machine['load_before']}, after {machine['load_after']}; RabbitMQ {results['broker']}, "
        "Kubernetes API "
        "emulator with the instant kubelet (kubelet off for the scale phase). All figures from this one run.",
        "",
        "## Targets (issue #8)",
        "",
        "| target | measured | verdict |",
        "|---|---|---|",
    ]
    lines += [f"| {row['target']} | {row['measured']} | **{row['verdict']}** |" for row in results["targets"]]
    sustained = results["saturation"]["rate"]
    lines += ["", "## Throughput beside the raw limits and the naive baseline", ""]
    lines += ["| what | rate | bucketrun sustained / this |", "|---|---:|---:|"]
    rows = [
        ("raw: bare aio-pika publish with confirms", results["raw_amqp"]["publish_rate"], "msg/s"),
        ("raw: bare aio-pika consume + ack", results["raw_amqp"]["consume_ack_rate"], "msg/s"),
        (
            "raw: AMQP work per event through a service queue (2 consume+ack + 1 publish)",
            results["amqp_work_per_event_rate"],
            "events/s",
        ),
        ("raw: bare kubernetes-asyncio Job create (small Job)", results["raw_k8s_small"]["rate"], "Jobs/s"),
        ("raw: same, bucketrun's rendered Jobs", results["raw_k8s_rendered"]["rate"], "Jobs/s"),
        *(
            (
                f"raw: the same at {paired[0]['in_flight']} in flight, just before, between and after "
                "bucketrun's two saturation runs ("
                + ", ".join(f"{bare['rate']:,.0f}/s" for bare in paired)
                + ")",
                sum(bare["rate"] for bare in paired) / len(paired),
                "Jobs/s",
            )
            for paired in ([results["raw_k8s_paired"]] if results.get("raw_k8s_paired") else [])
        ),
        ("raw: bare watch events", results["raw_watch"]["rate"], "events/s"),
        (
            "naive baseline: pika + sync kubernetes, one create per message",
            results["naive"]["rate"],
            "events/s",
        ),
        ("**bucketrun: sustained events -> Jobs created**", sustained, "events/s"),
        ("bucketrun: 10k-style burst, dispatcher process", results["burst"]["rate"], "events/s"),
        ("naive baseline: completions noticed by polling", results["naive"]["completion_rate"], "Jobs/s"),
        ("**bucketrun watcher: completions recorded**", results["completions"]["rate"], "Jobs/s"),
    ]
    for label, rate, unit in rows:
        ratio = sustained / rate if "completion" not in label else results["completions"]["rate"] / rate
        lines.append(f"| {label} | {rate:,.0f} {unit} | {ratio:.2f} |")
    sat = results["saturation"]
    lines += [
        "",
        f"Dispatcher CPU: {sat['cpu_ms_per_event']:.2f} ms per event in-process "
        f"(naive: {results['naive']['cpu_ms_per_event']:.2f} ms; burst process: "
        f"{results['burst']['cpu_ms_per_event']:.2f} ms). Watcher CPU: "
        f"{results['completions']['cpu_ms_per_completion']:.2f} ms per completion.",
        *api_latency_lines(results.get("api_latency", {})),
        *cpu_budget_lines(results),
        "",
        "## Latency at 10%, 50%, 90% of the measured maximum",
        "",
        "| load | rate | publish -> created p50 / p95 / p99 | finished -> recorded p50 / p95 / p99 |",
        "|---|---:|---|---|",
    ]
    for share in ("10", "50", "90"):
        created = results["latency"][share]
        recorded = results["completion_latency"][share]
        a, b = created["due_to_watch"], recorded["finished_to_recorded"]
        lines.append(
            f"| {share}% | {created['achieved_rate']:,.0f} ev/s; {recorded['target_rate']:,.0f} Jobs/s | "
            f"{a['p50_ms']:.1f} / {a['p95_ms']:.1f} / {a['p99_ms']:.1f} ms | "
            f"{b['p50_ms']:.1f} / {b['p95_ms']:.1f} / {b['p99_ms']:.1f} ms |"
        )
    burst = results["burst"]
    lines += [
        "",
        burst_line(burst),
        "",
        "## Scale: separate processes with N tracked Jobs",
        "",
        "| tracked Jobs | dispatcher RSS / peak (MiB) | dispatcher CPU per event "
        "| dispatcher start+sync CPU | watcher RSS / peak (MiB) | watcher start+list CPU |",
        "|---:|---|---:|---:|---|---:|",
    ]
    for row in results["scale"]:
        d, w = row["dispatcher"], row["watcher"]
        lines.append(
            f"| {row['tracked_jobs']:,} | {d['rss_mib']:.0f} / {d['peak_rss_mib']:.0f} | "
            f"{d['cpu_ms_per_event']:.2f} ms | {d['startup_cpu_s']:.1f} s | "
            f"{w['rss_mib']:.0f} / {w['peak_rss_mib']:.0f} | {w['startup_cpu_s']:.1f} s |"
        )
    lines += ["", "Plots: `latency.png` (percentiles vs load), `rss.png` (RSS vs tracked Jobs).", ""]
    return "\n".join(lines)


def api_latency_lines(figures: Mapping[str, Any]) -> list[str]:
    """The comparison with the naive baseline again, every emulator answer delayed (informational)."""
    if not figures:
        return []
    lines = [
        "",
        "## With API latency (informational)",
        "",
        "The emulator answers in well under a millisecond; a real API server commits each write to etcd "
        "before answering. The same two runs with every emulator answer delayed (the verdicts above "
        "stay on the emulator as it is):",
        "",
        "| added latency | naive baseline | bucketrun sustained | bucketrun / naive |",
        "|---:|---:|---:|---:|",
    ]
    for millis, row in figures.items():
        naive, ours = row["naive"]["rate"], row["bucketrun"]["rate"]
        lines.append(f"| {millis} ms | {naive:,.0f} events/s | {ours:,.0f} events/s | x{ours / naive:.1f} |")
    return lines


def plot(results: Mapping[str, Any], folder: Path) -> list[Path]:
    """latency.png and rss.png in *folder*; the paths written."""
    import matplotlib  # noqa: PLC0415 - the bench extra; only the plots need it

    matplotlib.use("Agg")
    from matplotlib import pyplot  # noqa: PLC0415

    shares = ("10", "50", "90")
    figure, (left, right) = pyplot.subplots(1, 2, figsize=(10, 4))
    for axis, key, inner, title in (
        (left, "latency", "due_to_watch", "publish -> Job created"),
        (right, "completion_latency", "finished_to_recorded", "Job finished -> record written"),
    ):
        rates = [
            results[key][share].get("achieved_rate", results[key][share]["target_rate"]) for share in shares
        ]
        for percentile in ("p50_ms", "p95_ms", "p99_ms"):
            axis.plot(
                rates, [results[key][s][inner][percentile] for s in shares], marker="o", label=percentile[:3]
            )
        axis.set_title(title)
        axis.set_xlabel("load (per second)")
        axis.set_ylabel("ms")
        axis.legend()
    left.axhline(TARGET_P99_MS, linestyle="--", color="grey", linewidth=0.8)
    figure.tight_layout()
    latency_png = folder / "latency.png"
    figure.savefig(latency_png, dpi=80)
    pyplot.close(figure)

    figure, axis = pyplot.subplots(figsize=(6, 4))
    rows = scale_rows(results)
    sizes = [row["tracked_jobs"] for row in rows]
    for side, bound in RSS_BOUNDS.items():
        line = axis.plot(
            sizes,
            [row[side]["peak_rss_mib"] / MIB_PER_MB for row in rows],
            marker="o",
            label=f"{side} peak RSS",
        )
        axis.axhline(bound, linestyle="--", color=line[0].get_color(), linewidth=0.8)
    axis.set_xscale("log")
    axis.set_xlabel("tracked Jobs")
    axis.set_ylabel("MB")
    axis.set_title("RSS vs tracked Jobs (dashed: targets)")
    axis.legend()
    figure.tight_layout()
    rss_png = folder / "rss.png"
    figure.savefig(rss_png, dpi=80)
    pyplot.close(figure)
    return [latency_png, rss_png]


def write_outputs(results: dict[str, Any], folder: Path, *, plots: bool = True) -> list[Path]:
    """latest.json, latest.md and the plots in *folder*; the paths written."""
    folder.mkdir(parents=True, exist_ok=True)
    json_path, md_path = folder / "latest.json", folder / "latest.md"
    json_path.write_text(json.dumps(results, indent=2, default=_json_default, allow_nan=True) + "\n")
    real = results.get("backend") == "real"
    md_path.write_text(markdown_real(results) if real else markdown(results))
    written = [json_path, md_path]
    if plots:
        written += plot(results, folder)
        if real:
            written.append(plot_upload_cdf(results, folder))
    return written


def _json_default(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    return str(value)


# -- the real stack (issue #21) ---------------------------------------------------------------------------

TARGET_RENDERED_RATIO = 0.90
TARGET_CPU_RATIO = 1.5
TARGET_NAIVE_RATIO_REAL = 5.0
TARGET_UPLOAD_P99_MS = 100.0
TARGET_RECORDED_P99_MS = 100.0
TARGET_WATCHER_RATIO = 0.90
KEDA_POLLING_SECONDS = 30.0
"""KEDA's documented default ``pollingInterval`` of a ScaledObject/ScaledJob (seconds)."""
SERVERS = (
    "rabbitmq",
    "minio",
    "minio-direct",
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "node-agent",
)
"""The real stack's processes in the CPU table (``minio-direct``: the second MinIO, without queue_dir)."""


def ms_per(usage: Mapping[str, Any], name: str, count: int) -> float:
    """Milliseconds of CPU per unit of process *name* over a window of *count* units."""
    return 1000 * float(usage.get(f"{name}_cpu_s", 0.0)) / max(count, 1)


def create_baseline(
    results: Mapping[str, Any], run: str = "saturation", which: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The bare creates of bucketrun's Job that a saturation run (*which*, by default ``results[run]``;
    *run* is ``saturation`` or ``saturation_direct``) is judged by: the mean rate and client CPU of the
    bare runs made just before and just after it, at the sweep's best in-flight count (``raw_k8s_paired``,
    in the order bare, shipped, bare, direct, bare, shipped, ...: the cluster in the same state); the
    sweep's best run for results without them (the emulator's, older runs). ``sentence`` says which."""
    paired = results.get("raw_k8s_paired") or []
    which = results.get(run) if which is None else which
    first = 2 * int((which or {}).get("round", 0)) + (0 if run == "saturation" else 1)
    pair = paired[first : first + 2]
    if len(pair) == 2:
        rates = [bare["rate"] for bare in pair]
        return {
            "rate": sum(rates) / 2,
            "cpu_ms": sum(ms_per(bare["usage"], "bench", bare["jobs"]) for bare in pair) / 2,
            "in_flight": pair[0]["in_flight"],
            "pair": pair,
            "sentence": f"bare, {pair[0]['in_flight']} in flight, the mean of the runs just before and "
            f"after it: {rates[0]:,.0f} and {rates[1]:,.0f}",
        }
    rendered = results["raw_k8s_rendered"]
    sweep = rendered.get("sweep")
    return {
        "rate": rendered["rate"],
        "cpu_ms": ms_per(rendered["usage"], "bench", rendered["jobs"]),
        "in_flight": rendered.get("in_flight"),
        "pair": [rendered],
        "sentence": f"bare, {rendered.get('in_flight')} in flight"
        + (f", the best of {', '.join(sweep)}" if sweep else ""),
    }


def merged_usage(runs: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """The CPU seconds of several runs added up (``<name>_cpu_s``), for their figures per Job together."""
    total: dict[str, float] = {}
    for run in runs:
        for name, value in run["usage"].items():
            if name.endswith("_cpu_s"):
                total[name] = total.get(name, 0.0) + float(value)
    return total


def rounds_of(results: Mapping[str, Any], run: str) -> list[Mapping[str, Any]]:
    """Every round's saturation run of kind *run* (``<run>_rounds``), or the one run of older results."""
    return list(results.get(f"{run}_rounds") or ([results[run]] if results.get(run) else []))


def round_ratios(results: Mapping[str, Any], run: str = "saturation") -> list[float]:
    """Each round's rate over the mean of the bare runs on either side of it, in round order."""
    return [
        float(which["rate"]) / create_baseline(results, run, which)["rate"]
        for which in rounds_of(results, run)
    ]


def load_basis(measured: float, *sustained: float | None) -> float:
    """The maximum the latency runs take 10/50/90% of: the *measured* rate of the path (events to Jobs
    created, or completions recorded), or the rate the whole stack *sustained* for the same work when that
    is lower (every Job's pod taken up by the node, or every Job finished, counted over the run and the
    control plane's work after it). A create run of a few seconds ends long before the pods it causes
    are made and bound; a load above what the machine sustains with that work only builds a queue."""
    return min([measured, *(rate for rate in sustained if rate is not None and math.isfinite(rate))])


def running_rate(run: Mapping[str, Any] | None) -> float | None:
    """A run's rate to the last pod taken up (``to_running``), None for a run timed without it."""
    return ((run or {}).get("to_running") or {}).get("rate")


def publish_basis(results: Mapping[str, Any]) -> float:
    """``load_basis`` of publish -> created: the median round's rate, or bucketrun's rate to running."""
    return load_basis(results["saturation"]["rate"], running_rate(results.get("running")))


def upload_basis(sustained: Mapping[str, Any]) -> float:
    """``load_basis`` of upload -> created: the upload run's created rate, or its rate to running."""
    return load_basis(sustained["rate"], running_rate(sustained))


def record_basis(done: Mapping[str, Any]) -> float:
    """``load_basis`` of finished -> recorded: the watcher's completions/s on Jobs already finished, or the
    rate from Jobs created all at once to the last one recorded (the control plane finishing them and the
    watcher recording them on the same cores)."""
    return load_basis(done["rate"], (done.get("to_recorded") or {}).get("rate"))


def basis_sentence(
    measured: float, sustained: float | None, unit: str, measured_as: str, sustained_as: str
) -> str:
    """How ``load_basis`` chose, for a target's 'measured' cell: 'of 47.5/s, the rate to the last pod taken
    up; 182.0/s created', or 'of 40.0/s, the rate created' when the measured rate is the lower."""
    basis = load_basis(measured, sustained)
    if sustained is None or basis == measured:
        return f"of {measured:,.1f}{unit}, the rate {measured_as}"
    return f"of {basis:,.1f}{unit}, the rate {sustained_as}; {measured:,.1f}{unit} {measured_as}"


def sustained_lines(results: Mapping[str, Any]) -> list[str]:
    """The runs measured to the end of the work their events cause, and the loads the latency runs took
    from them; [] for a run without them (the emulator)."""
    running, bare = results.get("running"), results.get("running_bare")
    if not running or "to_running" not in running:
        return []
    lines = [
        "",
        "## The maximum the latency loads take",
        "",
        "A create run of a few hundred Jobs ends before the control plane has made and bound their pods and "
        "the node agent has taken them up (its first status, as a kubelet writes `startTime`): that work "
        "runs on the same cores after the run's window. Each run below is timed from its start to the last "
        "pod taken up, so its rate is one this machine sustains with all the work an event causes. The "
        "latency runs take 10%, 50% and 90% of the lower of the two rates of their path.",
        "",
        "| run | Jobs created per s | pods taken up per s, to the last | last pod taken up after |",
        "|---|---:|---:|---:|",
    ]
    rows = [("bucketrun as shipped, pre-published events", running)]
    if bare and "to_running" in bare:
        rows.append((f"bare creates of bucketrun's Job ({bare.get('in_flight', '?')} in flight)", bare))
    rows += [
        (f"bucketrun, uploads ({name.replace('_', ' ')})", row["sustained"])
        for name, row in results["upload"].items()
        if "to_running" in row["sustained"]
    ]
    for label, run in rows:
        lines.append(
            f"| {label} | {run['rate']:,.1f} | {run['to_running']['rate']:,.1f} | "
            f"{run['to_running']['seconds']:,.1f} s |"
        )
    done = results["completions"]
    if "to_recorded" in done:
        lines += [
            "",
            f"The watcher: {done['rate']:,.1f} completions recorded per s on Jobs already finished. "
            f"{done['to_recorded']['jobs']:,} Jobs created at once while it ran were recorded at "
            f"{done['to_recorded']['rate']:,.1f} per s, from the first create to the last record (the "
            "control plane alone had finished the first batch at "
            f"{done.get('finish_rate', math.nan):,.1f} per s, to the last finish on a watch). Its latency "
            "runs take the lower.",
        ]
    if bare and "to_running" in bare:
        ratio = running["to_running"]["rate"] / bare["to_running"]["rate"]
        lines += [
            "",
            f"To running, bucketrun made {ratio:.0%} of the bare client's rate: the pods' work is the same "
            "for both and dominates, the dispatcher's own CPU per event is the difference.",
        ]
    before, before_bare = results.get("latency_created_50"), results.get("raw_create_latency_created_50")
    if before and before_bare:
        ours, floor = before["due_to_watch"], before_bare["due_to_watch"]
        above = before["target_rate"] > publish_basis(results)
        lines += [
            "",
            f"The reading before, in this run: at half the rounds' create rate ({before['target_rate']:,.0f}"
            f" events/s{', above what the machine sustains' if above else ''}), publish -> created took "
            f"{ours['p50_ms']:,.1f} / {ours['p99_ms']:,.1f} ms (p50 / p99) and bare creates of the same Job "
            f"at the same rate {floor['p50_ms']:,.1f} / {floor['p99_ms']:,.1f} ms"
            + (
                ": a queue behind the pods' work, the bare client's as much as bucketrun's." if above else "."
            ),
        ]
    return lines


def median_round(results: Mapping[str, Any], run: str) -> Mapping[str, Any]:
    """The round whose ratio (``round_ratios``) is the median (the lower one of an even count): the run
    the targets, the CPU table and the latency phases' rates take."""
    runs, ratios = rounds_of(results, run), round_ratios(results, run)
    order = sorted(range(len(runs)), key=ratios.__getitem__)
    return runs[order[(len(order) - 1) // 2]]


def ratios_sentence(results: Mapping[str, Any], run: str = "saturation") -> str:
    """'the median of 3 rounds (71%, 64%, 69%)', or '' for a single run."""
    ratios = round_ratios(results, run)
    if len(ratios) < 2:
        return ""
    return f"the median of {len(ratios)} rounds ({', '.join(f'{ratio:.0%}' for ratio in ratios)})"


def direct_settings(run: Mapping[str, Any]) -> str:
    """The second saturation run's overrides as environment variables, in backquotes."""
    text = f"`BUCKETRUN_DISPATCH__DIRECT_CREATES={run['direct_creates']}`"
    return text + (f" and `BUCKETRUN_AMQP__PREFETCH={run['prefetch']}`" if run.get("prefetch") else "")


def direct_label(run: Mapping[str, Any]) -> str:
    """``DIRECT_CREATES=128, PREFETCH=128`` (the overrides of the second saturation run)."""
    label = f"DIRECT_CREATES={run['direct_creates']}"
    return label + (f", PREFETCH={run['prefetch']}" if run.get("prefetch") else "")


def own_ms_per_event(run: Mapping[str, Any]) -> float:
    """A saturation run's dispatcher CPU per event from its first consume (its whole window for runs
    without that figure)."""
    return float(run.get("cpu_ms_per_event_consuming", ms_per(run["usage"], "bench", run["events"])))


def scale_rows(results: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The run's scale rows, fewest tracked Jobs first."""
    return sorted(results.get("scale", []), key=lambda row: row["tracked_jobs"])


def dispatcher_cpu(results: Mapping[str, Any]) -> dict[str, float]:
    """The CPU target's figures (ms per event): bucketrun's dispatcher, the bare create of its own Job
    (``create_baseline``), the bare consume+ack, and the bound (TARGET_CPU_RATIO x the two together)."""
    sat, amqp = results["saturation"], results["raw_amqp"]
    create = create_baseline(results)["cpu_ms"]
    consume = ms_per(amqp["usage"], "bench", amqp["messages"])
    whole = ms_per(sat["usage"], "bench", sat["events"])
    return {
        "dispatcher": sat.get("cpu_ms_per_event_consuming", whole),
        "dispatcher_with_start": whole,
        "bare_create": create,
        "bare_consume_ack": consume,
        "bound": TARGET_CPU_RATIO * (create + consume),
    }


_TO_RUNNING = ("created", "to the last pod taken up")
"""How ``basis_sentence`` names the two rates of a create path."""


def targets_real(results: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Each target of issue #21: what was measured and PASS/FAIL (``why_lines`` says why a failure fails)."""
    sat, baseline = results["saturation"], create_baseline(results)
    naive = results["naive"]["rate"]
    cpu = dispatcher_cpu(results)
    half = results["latency"]["50"]["due_to_watch"]
    sat_api = sat["api"]
    job_writes = (sat_api["writes"] - sat_api["config_map_writes"]) / max(sat_api["jobs_created_201"], 1)
    burst = results["burst"]
    done = results["completions"]
    recorded = results["completion_latency"]["50"]["finished_to_recorded"]
    rows: list[dict[str, Any]] = [
        {
            "target": f"sustained dispatch >= {TARGET_RENDERED_RATIO:.0%} of the bare create rate of the "
            "same rendered Job",
            "measured": f"{sat['rate']:,.0f} events/s = {sat['rate'] / baseline['rate']:.0%} of "
            f"{baseline['rate']:,.0f} Jobs/s ({baseline['sentence']})"
            + (f"; {ratios}, this one the median" if (ratios := ratios_sentence(results)) else ""),
            "passed": sat["rate"] / baseline["rate"] >= TARGET_RENDERED_RATIO,
        },
        {
            "target": f"dispatcher CPU per event <= {TARGET_CPU_RATIO}x (bare create of the same Job + "
            "bare consume+ack)",
            "measured": f"{cpu['dispatcher']:.2f} ms vs {TARGET_CPU_RATIO} x ({cpu['bare_create']:.2f} + "
            f"{cpu['bare_consume_ack']:.2f}) = {cpu['bound']:.2f} ms (from its first consume; "
            f"{cpu['dispatcher_with_start']:.2f} ms with its start)",
            "passed": cpu["dispatcher"] <= cpu["bound"],
        },
        {
            "target": f">= {TARGET_NAIVE_RATIO_REAL:.0f}x the naive baseline's sustained rate on the real "
            "API server",
            "measured": f"{sat['rate']:,.0f} vs {naive:,.0f} events/s = x{sat['rate'] / naive:.1f}",
            "passed": sat["rate"] / naive >= TARGET_NAIVE_RATIO_REAL,
        },
    ]
    for name, label in (
        ("queue_dir", "MinIO with queue_dir, as deployed"),
        ("no_queue_dir", "MinIO without queue_dir"),
    ):
        upload = results["upload"][name]
        at_half = upload["latency"]["50"]
        sustained = upload["sustained"]
        basis = basis_sentence(sustained["rate"], running_rate(sustained), "/s", *_TO_RUNNING)
        rows.append(
            {
                "target": f"upload -> Job created p99 <= {TARGET_UPLOAD_P99_MS:.0f} ms at 50% of max "
                f"({label})",
                "measured": f"{at_half['upload_to_created']['p99_ms']:,.0f} ms at "
                f"{at_half['achieved_rate']:,.1f} uploads/s (50% {basis}); p50 "
                f"{at_half['upload_to_created']['p50_ms']:,.0f} ms",
                "passed": at_half["upload_to_created"]["p99_ms"] <= TARGET_UPLOAD_P99_MS,
            }
        )
    rows += [
        {
            "target": f"publish -> Job created p99 <= {TARGET_P99_MS:.0f} ms at 50% of max",
            "measured": f"{half['p99_ms']:.1f} ms at {results['latency']['50']['achieved_rate']:,.1f} "
            "events/s (50% "
            + basis_sentence(sat["rate"], running_rate(results.get("running")), "/s", *_TO_RUNNING)
            + ")",
            "passed": half["p99_ms"] <= TARGET_P99_MS,
        },
        {
            "target": f"watcher completions >= {TARGET_WATCHER_RATIO:.0%} of the bare watch+read+write rate "
            "(three log reads, one record)",
            "measured": f"{done['rate']:,.1f} vs {done['bare']['rate']:,.1f} Jobs/s = "
            f"{done['rate'] / done['bare']['rate']:.0%}",
            "passed": done["rate"] / done["bare"]["rate"] >= TARGET_WATCHER_RATIO,
        },
        {
            "target": f"finished -> recorded p99 <= {TARGET_RECORDED_P99_MS:.0f} ms at 50% load",
            "measured": f"{recorded['p99_ms']:.1f} ms at "
            f"{results['completion_latency']['50']['target_rate']:,.1f} Jobs/s (50% "
            + basis_sentence(
                done["rate"],
                (done.get("to_recorded") or {}).get("rate"),
                " Jobs/s",
                "recorded when already finished",
                "from created to recorded",
            )
            + ")",
            "passed": recorded["p99_ms"] <= TARGET_RECORDED_P99_MS,
        },
        {
            "target": "<= 1 API write per Job created (ConfigMaps amortised per service version)",
            "measured": f"{job_writes:.3f} Job writes per Job + {sat_api['config_map_writes']} ConfigMap "
            "writes for "
            f"{sat_api['jobs_created_201']:,} Jobs (kube-apiserver's request counters)",
            "passed": job_writes <= TARGET_WRITES_PER_JOB
            and sat_api["config_map_writes"] <= results["services"],
        },
        {
            "target": f"{burst['events']:,}-event burst: 0 duplicates, 0 lost",
            "measured": f"{burst['seconds']:.1f} s ({burst['rate']:,.0f}/s), "
            f"{burst['duplicates']} duplicates, "
            f"{burst['losses']} lost, {burst['dead_lettered']} dead-lettered",
            "passed": burst["duplicates"] == 0 and burst["losses"] == 0 and burst["unexpected"] == 0,
        },
    ]
    rows += rss_targets(results)
    for row in rows:
        row["verdict"] = verdict(row["passed"])
    return rows


def rss_targets(results: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The two RSS targets on the run's scale rows: the largest must track 50,000 Jobs, and no row may
    peak above the bound (RSS does not fall as tracked Jobs grow, so any row above it fails)."""
    rows = scale_rows(results)
    if not rows:
        return []
    largest = rows[-1]
    short = largest["tracked_jobs"] < TARGET_SCALE_JOBS
    where = "real stack" if largest.get("backend") == "real" else "emulator"
    targets = []
    for side, bound in RSS_BOUNDS.items():
        peaks = "; ".join(
            f"{row[side]['peak_rss_mib'] / MIB_PER_MB:.0f} MB at {row['tracked_jobs']:,}" for row in rows
        )
        targets.append(
            {
                "target": f"{side} RSS <= {bound:.0f} MB at {TARGET_SCALE_JOBS:,} tracked Jobs",
                "measured": f"peak {peaks} ({where})"
                + (f" (only {largest['tracked_jobs']:,} in this run)" if short else ""),
                "passed": not short and not _over_bound(rows, side),
            }
        )
    return targets


def _over_bound(rows: list[dict[str, Any]], side: str) -> list[dict[str, Any]]:
    """The rows whose *side* process peaked above its RSS bound."""
    return [row for row in rows if row[side]["peak_rss_mib"] / MIB_PER_MB > RSS_BOUNDS[side]]


def cpu_rows_real(results: Mapping[str, Any]) -> list[dict[str, Any]]:
    """CPU per event (or Job) of every process, per measured workload of the real stack's run."""
    rows = []

    def add(
        label: str,
        usage: Mapping[str, Any],
        count: int,
        rate: float,
        child_ms: float | None = None,
    ) -> None:
        cost = {name: ms_per(usage, name, count) for name in ("bench", *SERVERS)}
        if child_ms is not None:
            cost["dispatcher"] = child_ms
        total = sum(cost.values())
        cores = results["machine"]["cpus"] or 1
        rows.append(
            {
                "what": label,
                "ms": cost,
                "total": total,
                "ceiling": cores * 1000 / total if total else math.inf,
                "measured": rate,
            }
        )

    amqp = results["raw_amqp"]
    add("bare consume+ack", amqp["usage"], amqp["messages"], amqp["consume_ack_rate"])
    for key, label in (
        ("raw_k8s_small", "bare create, small Job"),
        ("raw_k8s_rendered", "bare create, bucketrun's Job"),
    ):
        run = results[key]
        add(
            f"{label} ({run['in_flight']} in flight)",
            run["usage"],
            run["jobs"],
            run["rate"],
        )
    if results.get("raw_k8s_paired"):
        for run, which in (
            ("saturation", "as shipped"),
            ("saturation_direct", "with its concurrency raised"),
        ):
            if not results.get(run):
                continue
            pair = create_baseline(results, run)["pair"]
            add(
                f"bare create, bucketrun's Job ({pair[0]['in_flight']} in flight), the two runs beside "
                f"bucketrun's {which}",
                merged_usage(pair),
                sum(bare["jobs"] for bare in pair),
                sum(bare["rate"] for bare in pair) / len(pair),
            )
    sat = results["saturation"]
    add(
        "bucketrun: consume, route, render, create, ack (in the bench process)",
        sat["usage"],
        sat["events"],
        sat["rate"],
    )
    direct = results.get("saturation_direct")
    if direct:
        add(
            f"the same, {direct_label(direct)}",
            direct["usage"],
            direct["events"],
            direct["rate"],
        )
    for name, row in results["raw_notify"].items():
        add(
            f"bare PUT -> AMQP message ({name.replace('_', ' ')})",
            row["usage"],
            row["uploads"],
            row["message_rate"],
        )
    for name, row in results["upload"].items():
        sustained = row["sustained"]
        add(
            f"bucketrun: upload -> Job created ({name.replace('_', ' ')}; PUTs in the bench process)",
            sustained["usage"],
            sustained["uploads"],
            sustained["rate"],
            sustained["dispatcher_cpu_ms_per_event"],
        )
    done = results["completions"]
    add(
        "watcher: finished -> recorded (bare reads first, then the watcher, in the bench process)",
        done["usage"],
        2 * done["jobs"],
        done["rate"],
    )
    return rows


def cpu_table_real(results: Mapping[str, Any]) -> list[str]:
    """The CPU-per-event table as markdown lines."""
    names = ("bench", "dispatcher", *SERVERS)
    rows = cpu_rows_real(results)
    shown = [name for name in names if any(row["ms"].get(name, 0.0) > 0 for row in rows)]
    lines = [
        "| workload | " + " | ".join(shown) + " | total | cores / total | measured |",
        "|---|" + "---:|" * (len(shown) + 3),
    ]
    for row in rows:
        cells = " | ".join(f"{row['ms'].get(name, 0.0):.2f}" for name in shown)
        lines.append(
            f"| {row['what']} | {cells} | {row['total']:.2f} | {row['ceiling']:,.0f}/s | "
            f"{row['measured']:,.1f}/s |"
        )
    return lines


def busy_cores(usage: Mapping[str, Any]) -> float:
    """How many cores a window kept busy, all measured processes together."""
    return sum(float(value) for name, value in usage.items() if name.endswith("_pct")) / 100


def _floor_sentence(results: Mapping[str, Any], allowed: float) -> str:
    """How much of what 90% allows a consumer that only takes each event and acks it would spend (the
    bare consume+ack of the same run, client and RabbitMQ): what is left for bucketrun's own work."""
    amqp = results["raw_amqp"]
    floor = ms_per(amqp["usage"], "bench", amqp["messages"]) + ms_per(
        amqp["usage"], "rabbitmq", amqp["messages"]
    )
    if floor >= allowed:
        return (
            "A consumer that only took each event from the broker and acked it would already spend "
            f"{floor:.2f} ms (the bare consume+ack, client and RabbitMQ): on cores shared with the API "
            "server no change to the dispatcher's own work reaches 90%."
        )
    return (
        f"A consumer that only took each event from the broker and acked it would spend {floor:.2f} ms of "
        f"that (the bare consume+ack, client and RabbitMQ), leaving {allowed - floor:.2f} ms per event for "
        "parsing, routing, presigning, rendering and checking together (the profile below has each)."
    )


def _why_sustained(results: Mapping[str, Any]) -> str:
    sat, cores = results["saturation"], results["machine"]["cpus"] or 1
    baseline = create_baseline(results)
    bares = baseline["pair"]
    own = ms_per(sat["usage"], "bench", sat["events"]) + ms_per(sat["usage"], "rabbitmq", sat["events"])
    bare = sum(
        ms_per(run["usage"], "bench", run["jobs"]) + ms_per(run["usage"], "rabbitmq", run["jobs"])
        for run in bares
    ) / len(bares)
    busy = min([busy_cores(sat["usage"]), *(busy_cores(run["usage"]) for run in bares)])
    per_event = 1000 * cores / baseline["rate"]
    predicted = 1000 * cores / (per_event + own - bare)
    allowed = (1 / TARGET_RENDERED_RATIO - 1) * per_event
    return (
        f"the runs are CPU-bound: bucketrun's and the bare runs beside it kept at least {busy:.2f} of the "
        f"{cores} cores busy. At the bare runs' {baseline['rate']:,.0f} Jobs/s, a Job costs all processes "
        f"together {per_event:.1f} ms of CPU; each event costs the dispatcher and RabbitMQ {own:.2f} ms "
        f"where the bare client and RabbitMQ spent {bare:.2f} ms, and those {own - bare:.2f} ms more, taken "
        f"from the cores the API server and etcd need, predict {predicted:,.0f} events/s "
        f"({predicted / baseline['rate']:.0%}; measured {sat['rate']:,.0f}). 90% allows {allowed:.2f} ms "
        f"more per event on these cores. {_floor_sentence(results, allowed)} "
        + direct_sentence(results)
        + " Where the dispatcher does not "
        "share the API server's cores (a deployment's dispatcher runs on a worker node, the API server on "
        "the control plane's), its own CPU no longer competes with the creates: `bench/pinned.py` runs the "
        "same rounds that way, the control plane on a core of its own (bench/README.md has its latest "
        "figures)."
    )


def tail_ms(run: Mapping[str, Any], count: int) -> float:
    """The servers' CPU per unit (of *count*) in the settle after a create run (its ``tail_usage``)."""
    return sum(ms_per(run["tail_usage"], name, count) for name in SERVERS)


def tail_lines(results: Mapping[str, Any]) -> list[str]:
    """What each create run left the control plane to do after it ended (``Bench.settle``'s tail)."""
    parts = []
    paired = [run for run in results.get("raw_k8s_paired") or [] if run.get("tail_usage")]
    if paired:
        mean = sum(tail_ms(run, run["jobs"]) for run in paired) / len(paired)
        parts.append(f"{mean:.1f} ms per Job after the bare runs beside bucketrun's")
    named = (
        ("saturation", "bucketrun's run (the median round)"),
        ("saturation_direct", "the run with its concurrency raised (the median round)"),
    )
    for key, label in named:
        run = results.get(key)
        if run and run.get("tail_usage"):
            parts.append(f"{tail_ms(run, run['events']):.1f} ms after {label}")
    if not parts:
        return []
    return [
        "",
        "Not in the table: after a create run ends, the Job controller and the scheduler still make and "
        "bind its Jobs' pods. The servers' CPU from the end of each run until the control plane was quiet "
        f"again: {'; '.join(parts)}. That work is the same per Job whoever created it, and more of it falls "
        "inside a slower run's window, which makes the servers' figures of bucketrun's runs above look "
        "higher than the bare runs'.",
    ]


def _why_cpu(results: Mapping[str, Any]) -> str:
    cpu = dispatcher_cpu(results)
    direct = results.get("saturation_direct")
    own = own_ms_per_event(direct) if direct else None
    path = (
        " At saturation the ingress holds its prefetch of events at once and the direct path takes only "
        "`DIRECT_CREATES` of them (16 by default with several services, as here): the rest go through their "
        "service queues, one confirmed "
        "publish, one consume and one ack more each."
    )
    if own is not None and own <= cpu["bound"]:
        path += (
            f" With {direct_settings(direct)} (every event created by the ingress consumer) the same run "
            f"spent {own:.2f} ms: raising the direct path's bound is the configuration change that meets "
            "the CPU bound. "
            "The default keeps it lower on purpose: past it, a flood of one service waits in that service's "
            "queue instead of holding the ingress, so other services' events are not stuck behind it "
            '(bench/README.md, "The direct path").'
        )
    else:
        path += " " + direct_sentence(results)
    return (
        f"{cpu['dispatcher']:.2f} ms against a bound of {cpu['bound']:.2f} ms, counted from the dispatcher's "
        "first consume." + path
    )


def _why_naive(results: Mapping[str, Any]) -> str:
    rendered, small, naive = results["raw_k8s_rendered"], results["raw_k8s_small"], results["naive"]["rate"]
    needed = TARGET_NAIVE_RATIO_REAL * naive
    text = (
        f"bucketrun is bounded by the API server's create rate ({rendered['rate']:,.0f} bare creates/s of "
        f"its Job), and the naive script made {naive:,.0f} creates/s of a 0.3 KB Job, one at a time. "
        f"{TARGET_NAIVE_RATIO_REAL:.0f}x would need {needed:,.0f}/s, {needed / rendered['rate']:.1f}x what "
        "the bare client gets from this API server: no dispatcher change reaches it with bucketrun's Job "
        f"({rendered['avg_body_bytes'] / 1024:.1f} KB, three containers). The only change with room is a "
        f"Job as small as the naive one (bare creates of a small Job ran at {small['rate']:,.0f}/s)"
    )
    minimal = results.get("minimal_template_run")
    if minimal:
        text += (
            f". Measured in this run: bucketrun with a template of that shape (`bench/minimal_template`, "
            f"{minimal['avg_body_bytes'] / 1024:.1f} KB, set with `BUCKETRUN_CLUSTER__TEMPLATE_DIR`) made "
            f"{minimal['rate']:,.0f} events/s, x{minimal['rate'] / naive:.1f} the naive baseline, at "
            f"{minimal.get('cpu_ms_per_event_consuming', 0.0):.2f} ms of dispatcher CPU per event"
        )
    reached = minimal is not None and minimal["rate"] >= needed
    return text + (
        (". That template is the change that meets the target, a configuration. " if reached else ". ")
        + "A Job that small has no stage-in or stage-out container: the in-container contract (the input "
        "staged in, the outputs uploaded, the exit status recorded) goes with them, so bucketrun ships its "
        "own Job, and as shipped this target fails on this machine."
    )


def _why_upload_queued(results: Mapping[str, Any]) -> str:
    queued = results["upload"]["queue_dir"]["bare_at_50"]["upload_to_message"]
    direct = results["upload"]["no_queue_dir"]["bare_at_50"]["upload_to_message"]
    return (
        "at the same rate without bucketrun, MinIO's PUT -> message alone took "
        f"{queued['p50_ms']:,.0f} / {queued['p99_ms']:,.0f} ms (p50 / p99) through its queue store, "
        f"{direct['p50_ms']:,.0f} / {direct['p99_ms']:,.0f} ms without one: MinIO delivers a target with "
        "`queue_dir` from its store in a loop of its own, not as the PUT completes, and that loop lists "
        "the store every 3 s (`retryInterval` in MinIO's `internal/store/store.go`, a constant). No change "
        "to the dispatcher reaches the target. The change that does is in bucketrun's deployment of MinIO "
        "(deploy/ and `bucketrun.devtools.minio_server`): its target without `queue_dir` (the next row), at "
        "the price of the events MinIO cannot deliver while the broker is away, which `bucketrun poll` then "
        "has to find. The change that keeps both, not built: two targets on every input path, one without "
        "`queue_dir` for the latency and one with it for the outages, and a dispatcher that drops the second "
        "copy of an object version it has just created (a bounded set of recent Job names, so the copy "
        "costs no API request: a create answered 409 still costs the API server about half a create). Its "
        "price is a second delivery per upload, MinIO's and RabbitMQ's CPU per message in the bare PUT -> "
        "message rows of the CPU table, plus the dispatcher's parse."
    )


def _why_upload_direct(results: Mapping[str, Any]) -> str:
    upload = results["upload"]["no_queue_dir"]
    ours, put = upload["latency"]["50"]["upload_to_created"], upload["bare_at_50"]["upload_to_message"]
    created = results["raw_create_latency"]["due_to_watch"]
    floor = put["p99_ms"] + created["p99_ms"]
    text = (
        f"p50 / p99 {ours['p50_ms']:,.0f} / {ours['p99_ms']:,.0f} ms; at the same rate without bucketrun, "
        f"MinIO's PUT -> message alone took {put['p50_ms']:,.0f} / {put['p99_ms']:,.0f} ms and the bare "
        f"create of bucketrun's Job {created['p50_ms']:,.0f} / {created['p99_ms']:,.0f} ms (at half the "
        "dispatch maximum). "
    )
    if floor > TARGET_UPLOAD_P99_MS:
        return text + (
            "Those two steps alone take the budget at p99, so no change to the dispatcher reaches the target "
            "on this machine."
        )
    return text + (
        f"Those two steps take about {floor:,.0f} ms of the {TARGET_UPLOAD_P99_MS:.0f} ms at p99; the rest, "
        f"about {ours['p99_ms'] - floor:,.0f} ms, is the dispatcher process's share, on 2 cores it shares "
        "with the uploads, MinIO, RabbitMQ, the API server and etcd (CPU table): the direct-create bound "
        "above, which cut its CPU per event in the saturation runs, is the change to try first."
    )


def sustained_creates(results: Mapping[str, Any]) -> dict[str, float] | None:
    """What a bare create of bucketrun's Job costs all processes once its pod is made, bound and taken up
    by the node agent too (the paired bare runs' window plus their tail), and the rate the machine's cores
    sustain at that cost; None without paired runs that have a tail."""
    paired = [run for run in results.get("raw_k8s_paired") or [] if run.get("tail_usage")]
    if not paired:
        return None
    names = ("bench", *SERVERS)
    window = sum(ms_per(run["usage"], name, run["jobs"]) for run in paired for name in names) / len(paired)
    tail = sum(tail_ms(run, run["jobs"]) for run in paired) / len(paired)
    cores = results["machine"]["cpus"] or 1
    return {"window_ms": window, "tail_ms": tail, "rate": cores * 1000 / (window + tail)}


def _why_publish(results: Mapping[str, Any]) -> str:
    created = results["raw_create_latency"]["due_to_watch"]
    ours = results["latency"]["50"]["due_to_watch"]
    text = (
        f"p50 / p99 {ours['p50_ms']:,.1f} / {ours['p99_ms']:,.1f} ms; bare creates of the same Job at the "
        f"same rate, with nothing in between, took {created['p50_ms']:,.1f} / {created['p99_ms']:,.1f} ms "
        "from their due instant to the watch: the API server and etcd (fsync "
        f"{'on' if results.get('fsync') else 'off'}) set the floor, "
        + (
            "and it is above the target: no dispatcher change reaches it on this machine."
            if created["p99_ms"] > TARGET_P99_MS
            else "and bucketrun's share is the rest."
        )
    )
    sustained = sustained_creates(results)
    rate = results["latency"]["50"]["target_rate"]
    if sustained is None or rate <= sustained["rate"]:
        return text
    low = results["latency"]["10"]
    return text + (
        " Why the floor is so high at half the maximum: the maximum is a run of "
        f"{results['saturation']['events']} creates, whose pods the control plane makes and binds, and "
        "the node agent takes up, mostly after it ends. Counting that work, a bare create costs all "
        f"processes {sustained['window_ms']:.1f} ms in its run and "
        f"{sustained['tail_ms']:.1f} ms after it (the paired bare runs), so these cores sustain about "
        f"{sustained['rate']:,.0f} creates/s: {rate:,.0f}/s is {rate / sustained['rate']:.1f}x that, and "
        "every create queues behind the pods of those before it, bucketrun's with its own CPU per event "
        f"on the same cores. At 10% of the maximum ({low['target_rate']:,.0f}/s, under what the cores "
        f"sustain) bucketrun's p99 was {low['due_to_watch']['p99_ms']:,.1f} ms."
    )


def _why_watcher(results: Mapping[str, Any]) -> str:
    done = results["completions"]
    bare = done["bare"]
    busy = done["cpu_ms_per_completion"] * done["rate"] / 1000
    answers = ", ".join(f"{key}: {n}" for key, n in sorted(bare.get("statuses", {}).items()))
    return (
        f"the watcher took {done['seconds']:.1f} s for {done['jobs']} Jobs at "
        f"{done['cpu_ms_per_completion']:.2f} ms of CPU each ({busy:.0%} of a core), the bare loop "
        f"{bare['seconds']:.1f} s at {bare['cpu_ms_per_job']:.2f} ms (answers: {answers}). "
        + (
            "The watcher was mostly waiting on the API server's answers, not computing."
            if busy < 0.5
            else "The watcher's own CPU per completion is the gap (record building, its informer)."
        )
    )


def _why_recorded(results: Mapping[str, Any]) -> str:
    bare = results["completions"]["bare"].get("per_job")
    measured = results["completion_latency"]["50"]
    ours = measured["finished_to_recorded"]
    text = f"p50 / p99 {ours['p50_ms']:,.0f} / {ours['p99_ms']:,.0f} ms"
    same_load = results.get("completion_latency_bare")
    if same_load:
        floor = same_load["finished_to_recorded"]
        busy = [busy_cores(run["usage"]) for run in (measured, same_load) if run.get("usage")]
        text += (
            f"; at the same rate without the watcher (Jobs created and finished alike, each recorded by the "
            f"bare client as its watch saw it finish, 8 at once) {floor['p50_ms']:,.0f} / "
            f"{floor['p99_ms']:,.0f} ms"
            + (
                f", with {min(busy):.2f} to {max(busy):.2f} of the 2 cores busy in the two runs (the Job "
                "controller, the scheduler and the node agent finish the Jobs as they come, on the same "
                "cores)"
                if len(busy) == 2
                else ""
            )
            + ". "
            + (
                "That floor is above the target already: no change to the watcher reaches it on this machine."
                if floor["p99_ms"] > TARGET_RECORDED_P99_MS
                else "The floor is within the target: the rest is the watcher's."
            )
        )
        return text
    if not bare:
        return text + "."
    return text + (
        f"; the bare loop's own requests for one Job (its pods, three logs read together, one PATCH; 8 Jobs "
        f"at once) took {bare['p50_ms']:,.0f} / {bare['p99_ms']:,.0f} ms in this run. "
        + (
            "That floor is above the target already: the API server's answers (each log read is proxied "
            "to the node agent) take the budget, and no change to the watcher reaches it on this machine."
            if bare["p99_ms"] > TARGET_RECORDED_P99_MS
            else "The rest is the watcher's: the finish reaching its watch, and its queue of 8 workers when "
            "Jobs finish together (the Job controller completes them in batches)."
        )
    )


_WHY = (
    ("sustained dispatch", _why_sustained),
    ("dispatcher CPU", _why_cpu),
    (">=", _why_naive),
    ("upload -> Job created p99 <= 100 ms at 50% of max (MinIO with queue_dir", _why_upload_queued),
    ("upload -> Job created", _why_upload_direct),
    ("publish -> Job created", _why_publish),
    ("watcher completions", _why_watcher),
    ("finished -> recorded", _why_recorded),
)


def why_lines(results: Mapping[str, Any]) -> list[str]:
    """For each failing target: why, from this run's figures, and what change to bucketrun would meet it."""
    lines = []
    for row in results["targets"]:
        if row["passed"]:
            continue
        target = row["target"]
        if "RSS" in target:
            lines.append(f"- **{target}**: {rss_sentence(results, target)}")
            continue
        explain = next((why for prefix, why in _WHY if target.startswith(prefix)), None)
        lines.append(f"- **{target}**: {explain(results) if explain else 'see the figures above.'}")
    return lines


def rss_sentence(results: Mapping[str, Any], target: str) -> str:
    """Why an RSS target fails: too few tracked Jobs in the run, or a row above the bound (and what the
    process is made of)."""
    side = "dispatcher" if target.startswith("dispatcher") else "watcher"
    rows = scale_rows(results)
    if not rows or rows[-1]["tracked_jobs"] < TARGET_SCALE_JOBS:
        most = rows[-1]["tracked_jobs"] if rows else 0
        return f"this run tracked {most:,} Jobs at most (the full run measures 50,000)."
    smallest, largest = rows[0], rows[-1]
    row = max(_over_bound(rows, side) or rows, key=lambda row: row[side]["peak_rss_mib"])
    peak = row[side]["peak_rss_mib"] / MIB_PER_MB
    idle = row[side].get("idle_rss_mib")
    before = "" if idle is None else f"{idle / MIB_PER_MB:.0f} MB before its events and "
    low, high = (one[side]["peak_rss_mib"] / MIB_PER_MB for one in (smallest, largest))
    tls = (
        "; against the real API server each connection the creates keep open also holds a TLS receive "
        "buffer (16 KiB since `dispatcher.runtime.tls_buffers`, asyncio's default 256 KiB: "
        'bench/README.md, "Memory on the real stack")'
        if largest.get("backend") == "real"
        else ""
    )
    return (
        f"the {side} process with {row['tracked_jobs']:,} tracked Jobs had {before}{peak:.0f} MB at its "
        f"peak; from {smallest['tracked_jobs']:,} to {largest['tracked_jobs']:,} tracked Jobs its peak "
        f"went from {low:.0f} to {high:.0f} MB. Most of it is the process itself (interpreter, clients, "
        f"imports), which a leaner import set would shrink{tls}."
    )


def direct_sentence(results: Mapping[str, Any]) -> str:
    """What the same run measured with the direct path's bound raised (the change the throughput and CPU
    targets point at), against the targets."""
    direct = results.get("saturation_direct")
    if not direct:
        return ""
    baseline = create_baseline(results, "saturation_direct")
    cpu = dispatcher_cpu(results)
    own = own_ms_per_event(direct)
    rate_ok = direct["rate"] / baseline["rate"] >= TARGET_RENDERED_RATIO
    cpu_ok = own <= cpu["bound"]
    return (
        f"The same run with {direct_settings(direct)} (every event of a one-service message created by the "
        "ingress consumer, no service queue's publish, consume and ack"
        + (", as many creates in flight as the bare runs'" if direct.get("prefetch") else "")
        + f"): {direct['rate']:,.0f} events/s = {direct['rate'] / baseline['rate']:.0%} of the bare create "
        f"rate ({baseline['sentence']} Jobs/s"
        + (f"; {ratios}" if (ratios := ratios_sentence(results, "saturation_direct")) else "")
        + f"; {'meets' if rate_ok else 'misses'} the throughput target) at "
        f"{own:.2f} ms of dispatcher CPU per event ({'meets' if cpu_ok else 'misses'} the CPU bound). "
        + (
            "Raising the defaults is the change to bucketrun that meets them; the default keeps a "
            "flood of one service from delaying another's events behind it (bench/README.md, \"The direct "
            'path"); what the overflow costs it, handed over in batches, is measured below ("The hand-off '
            'to the service queues").'
            if rate_ok and cpu_ok
            else "What remains is the dispatcher's own CPU per event on the cores it shares with the API "
            "server (the profile below shows where it goes)."
        )
    )


def rounds_lines(results: Mapping[str, Any]) -> list[str]:
    """The throughput rounds in the order they ran: bare creates between bucketrun's runs, each of
    bucketrun's runs over the mean of the two bare runs beside it."""
    paired = results.get("raw_k8s_paired") or []
    shipped, raised = rounds_of(results, "saturation"), rounds_of(results, "saturation_direct")
    if len(shipped) < 2 or len(paired) != 2 * len(shipped) + 1 or len(raised) != len(shipped):
        return []
    in_flight = paired[0]["in_flight"]
    lines = [
        "",
        "## The throughput rounds, in the order they ran",
        "",
        f"Each of bucketrun's runs ({shipped[0]['events']:,} pre-published events) sits between two runs of "
        f"bare creates of the same rendered Jobs ({in_flight} in flight) and is judged by their mean: the "
        "bare rate moves by tens of percent from one run to the next here, so the targets take the median "
        "round.",
        "",
        f"| round | bare | as shipped | bare | {direct_label(raised[0])} | as shipped / bare beside | "
        f"{direct_label(raised[0])} / bare beside | dispatcher ms per event (shipped, raised) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    ship_ratios, raised_ratios = (
        round_ratios(results, "saturation"),
        round_ratios(results, "saturation_direct"),
    )
    for index, (one, two) in enumerate(zip(shipped, raised, strict=True)):
        lines.append(
            f"| {index + 1} | {paired[2 * index]['rate']:,.0f}/s | {one['rate']:,.0f}/s | "
            f"{paired[2 * index + 1]['rate']:,.0f}/s | {two['rate']:,.0f}/s | {ship_ratios[index]:.0%} | "
            f"{raised_ratios[index]:.0%} | {one['cpu_ms_per_event_consuming']:.2f}, "
            f"{two['cpu_ms_per_event_consuming']:.2f} |"
        )
    lines.append(f"| (last) | {paired[-1]['rate']:,.0f}/s | | | | | | |")
    return lines


def markdown_real(results: Mapping[str, Any]) -> str:
    """The real stack's run as markdown (issue #21)."""
    machine = results["machine"]
    versions = ", ".join(f"{name} {version}" for name, version in sorted(results.get("versions", {}).items()))
    sat = results["saturation"]
    lines = [
        f"# bucketrun performance report on the real stack "
        f"({'quick smoke run' if results['quick'] else 'full run'})",
        "",
        f"`{results['command']}` — {machine['cpus']} CPUs, Python {machine['python']}, load average before "
        f"{machine['load_before']}, after {machine['load_after']}. Backend: **the real stack** "
        f"({results['backend_reason']}): {versions}; etcd fsync "
        f"{'on (as production)' if results['fsync'] else 'off (test-only)'}; "
        "the node agent holds pods in the dispatch phases and finishes them at once in the watcher's. "
        "All figures from this one run.",
        "",
        "## Targets (issue #21)",
        "",
        "| target | measured | verdict |",
        "|---|---|---|",
    ]
    lines += [f"| {row['target']} | {row['measured']} | **{row['verdict']}** |" for row in results["targets"]]
    why = why_lines(results)
    if why:
        lines += ["", "## Why the failing targets fail, and what would meet them", "", *why]
    amqp = results["raw_amqp"]
    lines += [
        "",
        "## Raw limits and bucketrun, same run",
        "",
        "| what | rate | bucketrun sustained / this |",
        "|---|---:|---:|",
    ]
    rendered = results["raw_k8s_rendered"]
    figures = [
        ("raw: bare aio-pika publish with confirms", amqp["publish_rate"], "msg/s"),
        ("raw: bare aio-pika consume + ack", amqp["consume_ack_rate"], "msg/s"),
        (
            f"raw: bare create, small Job ({results['raw_k8s_small']['in_flight']} in flight)",
            results["raw_k8s_small"]["rate"],
            "Jobs/s",
        ),
        (
            "raw: bare create, bucketrun's rendered Job ("
            + ", ".join(f"{rate:,.0f}/s at {flight}" for flight, rate in rendered["sweep"].items())
            + " in flight)",
            rendered["rate"],
            "Jobs/s",
        ),
        ("raw: bare watch events", results["raw_watch"]["rate"], "events/s"),
        *(
            (f"raw: bare PUT -> AMQP message ({name.replace('_', ' ')})", row["message_rate"], "msg/s")
            for name, row in results["raw_notify"].items()
        ),
        (
            "naive baseline: pika + sync kubernetes, one create per message",
            results["naive"]["rate"],
            "events/s",
        ),
        ("**bucketrun: sustained events -> Jobs created**", sat["rate"], "events/s"),
        *(
            (
                f"bucketrun, {direct_label(results['saturation_direct'])}",
                results["saturation_direct"]["rate"],
                "events/s",
            )
            for _ in ([1] if results.get("saturation_direct") else [])
        ),
        *(
            (
                f"bucketrun: uploads -> Jobs created ({name.replace('_', ' ')})",
                row["sustained"]["rate"],
                "events/s",
            )
            for name, row in results["upload"].items()
        ),
        ("bucketrun: burst, dispatcher process", results["burst"]["rate"], "events/s"),
        *(
            (
                "bucketrun with the naive script's Job shape (`bench/minimal_template`)",
                results["minimal_template_run"]["rate"],
                "events/s",
            )
            for _ in ([1] if results.get("minimal_template_run") else [])
        ),
    ]
    for label, rate, unit in figures:
        lines.append(f"| {label} | {rate:,.1f} {unit} | {sat['rate'] / rate:.2f} |")
    done = results["completions"]
    lines += [
        f"| raw: bare list + pods + 3 log reads + 1 PATCH per finished Job | "
        f"{done['bare']['rate']:,.1f} Jobs/s | |",
        f"| **bucketrun watcher: completions recorded** | {done['rate']:,.1f} Jobs/s | |",
        "",
        f"The control plane (the Job controller, the scheduler and the node agent) had finished "
        f"{done['jobs']:,} of the watcher phase's {done.get('jobs_created', done['jobs']):,} Jobs after "
        f"{done['finishing_s']:.0f} s; the bare loop and then the watcher were timed on those.",
        *rounds_lines(results),
        "",
        "## CPU per event of every process (ms)",
        "",
        "`bench` is this process (the bare client, or the dispatcher or watcher in-process, or the "
        "uploaders); "
        "`dispatcher` a `bucketrun dispatcher` process. A ceiling is the cores over the total.",
        "",
        *cpu_table_real(results),
        *tail_lines(results),
        *sustained_lines(results),
        "",
        "## Latency at 10%, 50%, 90% of the maximum (p50 / p95 / p99, ms)",
        "",
        "| load | publish -> created | upload -> created (queue_dir) | upload -> created (no queue_dir) "
        "| finished -> recorded |",
        "|---|---|---|---|---|",
    ]

    def cell(summary: Mapping[str, float], rate: float, unit: str) -> str:
        p50, p95, p99 = summary["p50_ms"], summary["p95_ms"], summary["p99_ms"]
        return f"{p50:,.1f} / {p95:,.1f} / {p99:,.1f} at {rate:,.1f} {unit}"

    for share in ("10", "50", "90"):
        created = results["latency"][share]
        queued = results["upload"]["queue_dir"]["latency"][share]
        direct = results["upload"]["no_queue_dir"]["latency"][share]
        recorded = results["completion_latency"][share]
        lines.append(
            f"| {share}% | {cell(created['due_to_watch'], created['achieved_rate'], 'ev/s')} | "
            f"{cell(queued['upload_to_created'], queued['achieved_rate'], 'up/s')} | "
            f"{cell(direct['upload_to_created'], direct['achieved_rate'], 'up/s')} | "
            f"{cell(recorded['finished_to_recorded'], recorded['target_rate'], 'Jobs/s')} |"
        )
    bare = results["raw_create_latency"]
    lines.append(
        f"| 50%, bare | {cell(bare['due_to_watch'], bare['target_rate'], 'creates/s')} | "
        + " | ".join(
            cell(
                results["upload"][name]["bare_at_50"]["upload_to_message"],
                results["upload"][name]["bare_at_50"]["target_rate"],
                "PUT -> msg/s",
            )
            for name in ("queue_dir", "no_queue_dir")
        )
        + " | "
        + (
            cell(recorded_bare["finished_to_recorded"], recorded_bare["target_rate"], "Jobs/s")
            if (recorded_bare := results.get("completion_latency_bare"))
            else ""
        )
        + " |"
    )
    queued_put, direct_put = results["raw_notify"]["queue_dir"], results["raw_notify"]["no_queue_dir"]
    lines += [
        "",
        'The row "50%, bare" is the same load without bucketrun: bare creates of its rendered Job at half '
        "its maximum (due instant -> the Job's ADDED event on a watch), bare PUTs at half the sustained "
        "upload rate (PUT answered -> the message on a bare consumer), and Jobs finishing at half the "
        "watcher's maximum recorded by the bare client (each as a watch sees it finished: its pods, three "
        "logs, one PATCH, 8 at once; finished seen -> PATCH answered).",
        "",
        "Bare PUT -> AMQP message (all PUTs at once): with queue_dir "
        f"{cell(queued_put['upload_to_message'], queued_put['message_rate'], 'msg/s')}; without "
        f"{cell(direct_put['upload_to_message'], direct_put['message_rate'], 'msg/s')}. "
        "MinIO's target with `queue_dir` keeps events while the broker is away and delivers them from its "
        "store; without it an event is published as the PUT completes, and lost if the broker is away.",
    ]
    burst = results["burst"]
    lines += [
        "",
        burst_line(burst),
        *profile_lines(results.get("profile")),
        *json_lines(results.get("json_costs")),
        *log_lines(results.get("log_costs")),
        *gc_lines(results),
        *handoff_lines(results),
        "",
        "## Scale: separate processes with N tracked Jobs",
        "",
        "Real stack: the pre-loaded Jobs are suspended (the Job controller makes no pods for them; they stay "
        "unfinished, so both processes track them). One service has a `max_concurrent_jobs` it never "
        "reaches: the dispatcher counts the Jobs only while some service has a cap, and this phase measures "
        "it counting them all (that service's events go through its queue, one create at a time).",
        "",
        "| backend | tracked Jobs | pre-load | dispatcher RSS / peak (MiB) | dispatcher CPU per event "
        "| watcher RSS / peak (MiB) |",
        "|---|---:|---:|---|---:|---|",
    ]
    for row in results["scale"]:
        d, w = row["dispatcher"], row["watcher"]
        lines.append(
            f"| {row['backend']} | {row['tracked_jobs']:,} | {row['preloaded']:,} in "
            f"{row['preload_s']:.0f} s | "
            f"{d['rss_mib']:.0f} / {d['peak_rss_mib']:.0f} | {d['cpu_ms_per_event']:.2f} ms | "
            f"{w['rss_mib']:.0f} / {w['peak_rss_mib']:.0f} |"
        )
    problems = results.get("problems", [])
    if problems:
        lines += ["", f"Warnings and errors logged during the run ({len(problems)}, first 5):", ""]
        lines += [f"- `{problem[:300]}`" for problem in problems[:5]]
    waited = sum(row["seconds"] for row in results.get("settles", []))
    lines += [
        "",
        f"Between phases the bench waited {waited:.0f} s in all for the control plane to become quiet "
        f"({sum(not row['quiet'] for row in results.get('settles', []))} waits hit their cap).",
        "",
        "Plots: `latency.png` (percentiles vs load), `rss.png` (RSS vs tracked Jobs), `upload_cdf.png` "
        f"(upload -> Job created beside KEDA's {KEDA_POLLING_SECONDS:.0f} s default polling interval).",
        "",
    ]
    return "\n".join(lines)


def profile_lines(profile: Mapping[str, Any] | None) -> list[str]:
    """The dispatcher's profile on the real stack (the saturation run again under cProfile)."""
    if not profile:
        return []
    lines = [
        "",
        "## Where the dispatcher's time goes (cProfile, saturation run on the real stack)",
        "",
        profile["conclusion"],
        "",
        "| function | ms per Job (profiled) | ~unprofiled |",
        "|---|---:|---:|",
    ]
    lines += [
        f"| {row['label'].strip()} (`{row['function']}`) | {row['ms_per_job']:.3f} | "
        f"{row['ms_per_job_unprofiled']:.3f} |"
        for row in profile["hot_path"]
    ]
    return lines


def json_lines(costs: Mapping[str, float] | None) -> list[str]:
    """Before and after: the per-event JSON in json and in orjson, measured in this run."""
    if not costs:
        return []
    before = costs["encode_json_us"] + costs["decode_json_us"]
    after = costs["encode_orjson_us"] + costs["decode_orjson_us"]
    return [
        "",
        "Before and after, in this run (no profiler, the rendered Jobs of the raw phase, the best of three "
        "passes): the create body written took "
        f"{costs['encode_json_us']:,.0f} µs per Job with `json.dumps` (before) and "
        f"{costs['encode_orjson_us']:,.0f} µs with orjson (`json_body`, now); one watch event of the Job "
        f"read back {costs['decode_json_us']:,.0f} µs with `json.loads` and "
        f"{costs['decode_orjson_us']:,.0f} µs with orjson: {before - after:,.0f} µs less per event and "
        "watch event.",
    ]


def log_lines(costs: Mapping[str, float] | None) -> list[str]:
    """Before and after: the dispatcher's log line per Job through production's chain, with redaction's
    patterns searched on every value and only on text they can match, measured in this run."""
    if not costs:
        return []
    return [
        "",
        "The log line, before and after, in this run (the dispatcher's one line per Job at INFO, "
        '"job created" with its context, through production\'s processors, the best of three passes): '
        f"{costs['every_pattern_us']:,.0f} µs with every redaction pattern searched on every value "
        f"(before) and {costs['guarded_us']:,.0f} µs with each pattern searched only on text it can match "
        "(`logs.redact_text`, now).",
    ]


def gc_lines(results: Mapping[str, Any]) -> list[str]:
    """Before and after: the collector's pauses and the dispatcher's CPU per event, as shipped (the
    median round) and with CPython's default thresholds (one more run after the profile)."""
    before, after = results.get("gc_default_run"), results.get("saturation")
    if not before or not after:
        return []

    def figures(run: Mapping[str, Any]) -> str:
        usage, events = run["usage"], run["events"]
        return (
            f"{usage['gc_pause_total_ms']:,.0f} ms of pauses for {events:,} events "
            f"({1000 * usage['gc_pause_total_ms'] / events:,.0f} µs per event), the longest "
            f"{usage['gc_pause_max_ms']:,.1f} ms, {usage['gc_full_collections']} full collections; "
            f"{run['cpu_ms_per_event_consuming']:.2f} ms of dispatcher CPU per event at {run['rate']:,.0f}/s"
        )

    return [
        "",
        "The garbage collector, before and after, in this run (the dispatcher in this process, as shipped): "
        f"with CPython's default thresholds (700, 10, 10; before, one more run after the profile): "
        f"{figures(before)}. With `gc.freeze()` at start and young collections every 50,000 allocations "
        f"(`dispatcher.runtime.gc_tuning`, now; the median round): {figures(after)}.",
    ]


def handoff_lines(results: Mapping[str, Any]) -> list[str]:
    """Before and after: the run as shipped (the median round; events handed to a service queue in
    batches) and with one message per event (``HANDOFF_BATCH=1``, one more run after the profile)."""
    before, after = results.get("handoff_single_run"), results.get("saturation")
    if not before or not after:
        return []

    def figures(run: Mapping[str, Any]) -> str:
        events = run["events"]
        text = (
            f"{run['rate']:,.0f} events/s, {own_ms_per_event(run):.2f} ms of dispatcher and "
            f"{ms_per(run['usage'], 'rabbitmq', events):.2f} ms of RabbitMQ CPU per event"
        )
        if "service_queue_messages" in run:
            queued = events - run["created_directly"]
            text += (
                f"; {queued:,} of the {events:,} events went through a service queue, in "
                f"{run['service_queue_messages']:,} messages"
            )
        return text

    return [
        "",
        "The hand-off to the service queues, before and after, in this run (the dispatcher in this process, "
        "as shipped: past the direct path's bound an event goes through its service queue): with one "
        "message per event (`BUCKETRUN_DISPATCH__HANDOFF_BATCH=1`; before, one more run "
        f"after the profile): {figures(before)}. With the events handed over while the previous publish "
        "awaited its confirm gathered in one message (`dispatcher.process.handoff`, now; the median round): "
        f"{figures(after)}. The two runs are not beside the same bare runs: the CPU per event is the figure "
        "to compare.",
    ]


def plot_upload_cdf(results: Mapping[str, Any], folder: Path) -> Path:
    """upload_cdf.png: the distribution of upload -> Job created at 50% load, beside KEDA's polling."""
    import matplotlib  # noqa: PLC0415 - the bench extra; only the plots need it

    matplotlib.use("Agg")
    from matplotlib import pyplot  # noqa: PLC0415

    figure, axis = pyplot.subplots(figsize=(7, 4))
    for name, row in results["upload"].items():
        values = sorted(value / 1000 for value in row["latency"]["50"]["latencies_ms"])
        if values:
            shares = [(index + 1) / len(values) for index in range(len(values))]
            axis.step(values, shares, where="post", label=f"bucketrun, MinIO {name.replace('_', ' ')}")
    # A poller at a random phase of its interval: the wait is uniform over [0, interval].
    axis.plot(
        [0, KEDA_POLLING_SECONDS],
        [0, 1],
        linestyle="--",
        color="grey",
        label="KEDA polling (30 s default), uniform wait",
    )
    axis.axvline(KEDA_POLLING_SECONDS, linestyle=":", color="grey", linewidth=0.8)
    axis.set_xscale("symlog", linthresh=0.1)
    axis.set_xlim(left=0)  # no time is negative: without it the symlog axis ticks -1 and -0.1 s
    axis.set_xlabel("upload -> Job created (s)")
    axis.set_ylabel("share of uploads")
    axis.set_title("upload -> Job created at 50% load (CDF)")
    axis.legend(fontsize=8)
    figure.tight_layout()
    path = folder / "upload_cdf.png"
    figure.savefig(path, dpi=80)
    pyplot.close(figure)
    return path


def burst_line(burst: Mapping[str, Any]) -> str:
    """The report's sentence on the burst a dispatcher process drained."""
    return (
        f"Burst: {burst['events']:,} events drained in {burst['seconds']:.1f} s by a dispatcher process; "
        f"{burst['writes_per_job']:.4f} API writes per Job; peak RSS {burst['peak_rss_mib']:.0f} MiB; "
        f"{burst['jobs_listed']:,} Jobs listed, {burst['duplicates']} duplicates, {burst['losses']} lost."
    )
