"""Parse + route + render throughput of one core: 10k MinIO messages against 50 services.

A measurement, not a test. Run from the repository root:
``.venv/bin/python bench/bench_parse_route.py [events] [services]``.
Prints events per second for parsing alone, routing alone (pre-parsed events, one prebuilt Router), the
pure path a consumer runs per message before rendering (parse, route, object version, Job name), and the
whole path including rendering and checking the Job manifest. The baseline, measured in the same run,
is bare ``json.loads`` of the same bodies: every consumer must at least do that, so each stage is also
shown as a multiple of its cost.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from dispatcher.domain.events import ObjectEvent, build_message, parse_message
from dispatcher.domain.identity import job_name, object_version
from dispatcher.domain.routing import Router
from dispatcher.fdl import ServiceDefinition, load_services_text
from dispatcher.rendering.context import placeholder_grants
from dispatcher.rendering.render import JobRenderer

BUCKETS = 10
SUFFIXES = (".jpg", ".png", ".tif", ".csv")


@dataclass(frozen=True)
class Input:
    """A service input as routing sees it."""

    bucket: str
    folder: str
    prefix: tuple[str, ...] = ()
    suffix: tuple[str, ...] = ()
    events: tuple[str, ...] = ("s3:ObjectCreated:*",)
    provider: str = "minio.default"


@dataclass(frozen=True)
class Service:
    """A service as routing sees it."""

    name: str
    inputs: tuple[Input, ...]


def make_services(count: int) -> list[Service]:
    """``count`` services over BUCKETS buckets, one folder each, half of them with a suffix filter."""
    return [
        Service(
            f"service-{index}",
            (Input(f"bucket-{index % BUCKETS}", f"in/s{index}", suffix=SUFFIXES[:2] if index % 2 else ()),),
        )
        for index in range(count)
    ]


def make_messages(count: int, services: int) -> list[bytes]:
    """Realistic bodies: most route to one service, some miss on folder or suffix, some are deletes."""
    stamp = datetime(2025, 1, 1, tzinfo=UTC)
    messages = []
    for index in range(count):
        target = index % services
        folder = f"in/s{target}" if index % 10 else "elsewhere"
        messages.append(
            build_message(
                event_name="s3:ObjectRemoved:Delete" if index % 25 == 0 else "s3:ObjectCreated:Put",
                bucket=f"bucket-{target % BUCKETS}",
                key=f"{folder}/batch {index // 100}/file+{index}{SUFFIXES[index % len(SUFFIXES)]}",
                size=1000 + index,
                etag=f"{index:032x}",
                sequencer=f"{1_800_000_000_000_000_000 + index:X}",
                event_time=stamp,
                content_type="application/octet-stream",
                user_metadata={"content-type": "application/octet-stream"},
            )
        )
    return messages


def real_services(services: list[Service]) -> list[ServiceDefinition]:
    """The same services as OSCAR FDL, loaded the way the dispatcher loads them (for rendering)."""
    lines = ["functions:", "  oscar:"]
    for service in services:
        (item,) = service.inputs
        lines += [
            "  - bench:",
            f"      name: {service.name}",
            "      image: busybox:1.36",
            "      cpu: '0.5'",
            "      memory: 256Mi",
            "      script: |",
            '        tr a-z A-Z < "$INPUT_FILE_PATH" > "$TMP_OUTPUT_DIR/out.txt"',
            "      input:",
            "      - storage_provider: minio",
            f"        path: {item.bucket}/{item.folder}",
        ]
        if item.suffix:
            lines.append(f"        suffix: {list(item.suffix)}")
        lines += [
            "      output:",
            "      - storage_provider: minio",
            f"        path: {item.bucket}/out/{service.name}",
        ]
    return list(load_services_text("\n".join(lines), source="bench.yaml", base_dir=None).services)


def measure(label: str, count: int, work: Callable[[], str], baseline: float | None = None) -> float:
    """Run ``work`` once, print events/s (and the cost relative to the baseline rate); return the rate."""
    started = time.perf_counter()
    produced = work()
    elapsed = time.perf_counter() - started
    rate = count / elapsed
    relative = f"  cost x{baseline / rate:.1f} of json.loads" if baseline else ""
    sys.stdout.write(
        f"{label:<40} {rate:>10,.0f} events/s  ({elapsed * 1000:.0f} ms, {produced}){relative}\n"
    )
    return rate


def main(argv: list[str]) -> None:
    """Build the corpus, then time each stage on this process's single core."""
    events_count = int(argv[1]) if len(argv) > 1 else 10_000
    services_count = int(argv[2]) if len(argv) > 2 else 50
    services = make_services(services_count)
    messages = make_messages(events_count, services_count)
    router = Router(real_services(services))
    renderer = JobRenderer()
    parsed: list[ObjectEvent] = [event for body in messages for event in parse_message(body)]
    sys.stdout.write(
        f"{events_count} messages, {services_count} services over {BUCKETS} buckets, "
        f"avg body {sum(map(len, messages)) // len(messages)} bytes\n"
    )

    def parse_all() -> int:
        return sum(len(parse_message(body)) for body in messages)

    def route_all() -> int:
        return sum(len(router.route(event)) for event in parsed)

    def consume_all() -> int:
        names = 0
        for body in messages:
            for event in parse_message(body):
                for found in router.route(event):
                    job_name(found.service.name, event.bucket, event.key, object_version(event))
                    names += 1
        return names

    def render_all() -> int:
        jobs = 0
        for body in messages:
            for event in parse_message(body):
                for found in router.route(event):
                    renderer.render_job(found.service, event, placeholder_grants(found.service, event))
                    jobs += 1
        return jobs

    def json_all() -> int:
        return sum(len(json.loads(body)["Records"]) for body in messages)

    base = measure("baseline: json.loads", events_count, lambda: f"{json_all()} records")
    measure("parse_message", events_count, lambda: f"{parse_all()} events", base)
    measure("Router.route (prebuilt)", events_count, lambda: f"{route_all()} routes", base)
    measure("parse + route + job_name", events_count, lambda: f"{consume_all()} job names", base)
    measure("parse + route + render + check", events_count, lambda: f"{render_all()} Jobs rendered", base)


if __name__ == "__main__":
    main(sys.argv)
