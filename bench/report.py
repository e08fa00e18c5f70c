"""Targets of issue #8 judged on one run's figures, and the run written as JSON, a markdown table and plots.

Pure functions over the results dict that ``run_all.py`` builds, except ``write_outputs`` (files) and
``plot`` (matplotlib, imported only there so the rest works without the bench extra).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

TARGET_RAW_RATIO = 0.80
TARGET_NAIVE_RATIO = 10.0
TARGET_P99_MS = 50.0
TARGET_WRITES_PER_JOB = 1.0
TARGET_DISPATCHER_RSS_MB = 150.0
TARGET_WATCHER_RSS_MB = 250.0
TARGET_SCALE_JOBS = 50_000
MIB_PER_MB = 1_000_000 / 1_048_576


def verdict(passed: bool) -> str:
    """PASS or FAIL."""
    return "PASS" if passed else "FAIL"


def targets(results: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Each target of issue #8: what was measured, the bound, PASS/FAIL, and a note."""
    lower_name, lower = lower_raw_limit(results)
    sustained = results["saturation"]["rate"]
    naive = results["naive"]["rate"]
    half = results["latency"]["50"]
    sat_api = results["saturation"]["api"]
    job_writes = (sat_api["writes"] - sat_api["config_map_writes"]) / max(sat_api["jobs_created_201"], 1)
    burst = results["burst"]
    largest = results["scale"][-1] if results["scale"] else None
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
    if largest is not None:
        note = (
            ""
            if largest["tracked_jobs"] >= TARGET_SCALE_JOBS
            else f" (only {largest['tracked_jobs']:,} in this run)"
        )
        for side, bound in (("dispatcher", TARGET_DISPATCHER_RSS_MB), ("watcher", TARGET_WATCHER_RSS_MB)):
            megabytes = largest[side]["peak_rss_mib"] / MIB_PER_MB
            rows.append(
                {
                    "target": f"{side} RSS <= {bound:.0f} MB at {TARGET_SCALE_JOBS:,} tracked Jobs",
                    "measured": f"peak {megabytes:.0f} MB at {largest['tracked_jobs']:,}{note}",
                    "passed": megabytes <= bound and not note,
                }
            )
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
        f"Burst: {burst['events']:,} events drained in {burst['seconds']:.1f} s by a dispatcher process; "
        f"{burst['writes_per_job']:.4f} API writes per Job; peak RSS {burst['peak_rss_mib']:.0f} MiB; "
        f"{burst['jobs_listed']:,} Jobs listed, {burst['duplicates']} duplicates, {burst['losses']} lost.",
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
    sizes = [row["tracked_jobs"] for row in results["scale"]]
    for side, bound in (("dispatcher", TARGET_DISPATCHER_RSS_MB), ("watcher", TARGET_WATCHER_RSS_MB)):
        line = axis.plot(
            sizes,
            [row[side]["peak_rss_mib"] / MIB_PER_MB for row in results["scale"]],
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
    md_path.write_text(markdown(results))
    written = [json_path, md_path]
    if plots:
        written += plot(results, folder)
    return written


def _json_default(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    return str(value)
