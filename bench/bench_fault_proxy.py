"""What the test suite's fault proxy (tests/backends/fault_proxy.py) costs in front of the real API server.

A measurement, not a test. Run from the repository root, after ``make servers``:
``.venv/bin/python bench/bench_fault_proxy.py [--reads N] [--creates N] [--concurrency C]``.
It starts a control plane of its own (etcd, kube-apiserver, controller manager, scheduler) under a
temporary directory, puts the proxy in front of it with no faults, and stops both at the end.

Figures, each measured with kubernetes_asyncio straight at the API server (TLS, the admin's client
certificate) and through the proxy (plain HTTP to the proxy, TLS from there), in the same run:

- read latency: p50 and p95 of N sequential GETs of one ConfigMap, and the proxy's added p50;
- create throughput: N ConfigMaps created by C concurrent callers, creates per second.
"""

# ruff: noqa: T201 - a benchmark prints its figures
from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

# `tests` (the proxy) is not an installed package: put the repository on the path to run from anywhere.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kubernetes_asyncio import client  # noqa: TID251 - the bench calls the API directly

from bucketrun.devtools.control_plane import ServersNotBuiltError, start_control_plane
from tests.backends.fault_proxy import proxy_for
from tests.backends.kubernetes import api_client_for


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        epilog="Progress goes to stderr, the figures to stdout.",
    )
    parser.add_argument("--reads", type=int, default=500, help="sequential GETs per path (default 500)")
    parser.add_argument(
        "--creates", type=int, default=1000, help="ConfigMaps created per path (default 1000)"
    )
    parser.add_argument(
        "--concurrency", type=int, default=16, help="concurrent creating callers (default 16)"
    )
    return parser.parse_args(argv)


async def _read_latencies(api: client.ApiClient, namespace: str, count: int) -> list[float]:
    core = client.CoreV1Api(api)
    await core.create_namespaced_config_map(
        namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="probe"), data={"k": "v"})
    )
    for _ in range(20):  # warm the connection pool and the server's caches
        await core.read_namespaced_config_map("probe", namespace)
    latencies = []
    for _ in range(count):
        began = time.perf_counter()
        await core.read_namespaced_config_map("probe", namespace)
        latencies.append(time.perf_counter() - began)
    return latencies


async def _create_rate(api: client.ApiClient, namespace: str, count: int, concurrency: int) -> float:
    core = client.CoreV1Api(api)
    names = iter(range(count))

    async def worker() -> None:
        for index in names:
            body = client.V1ConfigMap(metadata=client.V1ObjectMeta(name=f"c{index}"), data={"k": "v"})
            await core.create_namespaced_config_map(namespace, body)

    began = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return count / (time.perf_counter() - began)


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def _measure(kubeconfig: Path, namespace: str, args: argparse.Namespace) -> dict[str, float]:
    async with await api_client_for(kubeconfig) as api:
        await client.CoreV1Api(api).create_namespace(
            client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace))
        )
        latencies = await _read_latencies(api, namespace, args.reads)
        rate = await _create_rate(api, namespace, args.creates, args.concurrency)
    return {"p50": statistics.median(latencies), "p95": _percentile(latencies, 0.95), "creates": rate}


def main(argv: list[str] | None = None) -> int:
    """Run the measurement; 2 when the control plane is not built."""
    args = _parse(argv)
    with tempfile.TemporaryDirectory(prefix="bench-fault-proxy-") as scratch:
        try:
            plane = start_control_plane(Path(scratch) / "control-plane")
        except ServersNotBuiltError as error:
            print(error, file=sys.stderr)
            return 2
        try:
            with proxy_for(plane) as proxy:
                through = proxy.write_kubeconfig(Path(scratch) / "proxy.kubeconfig")
                print("measuring straight at the API server ...", file=sys.stderr)
                direct = asyncio.run(_measure(plane.kubeconfig, "bench-direct", args))
                print("measuring through the fault proxy ...", file=sys.stderr)
                proxied = asyncio.run(_measure(through, "bench-proxied", args))
        finally:
            plane.stop()
    print(f"GET latency, {args.reads} sequential reads: p50 / p95")
    print(f"  straight      {direct['p50'] * 1e3:7.2f} / {direct['p95'] * 1e3:7.2f} ms")
    print(f"  through proxy {proxied['p50'] * 1e3:7.2f} / {proxied['p95'] * 1e3:7.2f} ms")
    print(f"  added p50     {(proxied['p50'] - direct['p50']) * 1e3:7.2f} ms")
    print(f"creates, {args.creates} ConfigMaps by {args.concurrency} callers")
    print(f"  straight      {direct['creates']:7.0f} /s")
    print(f"  through proxy {proxied['creates']:7.0f} /s ({proxied['creates'] / direct['creates']:.0%})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
