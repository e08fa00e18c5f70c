"""``bucketrun events inspect``: parse a MinIO notification as the dispatcher would and say where it goes.

No server is contacted: the services come from FDL files, and a record that routes nowhere gets the
reason the dispatcher would give and what it would do (ack and ignore, or dead-letter).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bucketrun.cli.common import EXIT_INVALID, EXIT_OK, Commands, add_cluster_option, chosen_cluster
from dispatcher.domain.events import EventError, ObjectEvent, parse_message
from dispatcher.domain.identity import job_name, object_version
from dispatcher.domain.ingress import IGNORED_REASONS
from dispatcher.domain.routing import Router
from dispatcher.fdl import LoadedServices, load_services


def add_commands(commands: Commands) -> None:
    """Add ``events inspect``."""
    events = commands.add_parser("events", help="inspect MinIO event payloads")
    events_commands = events.add_subparsers(dest="events_command", metavar="SUBCOMMAND", required=True)
    inspect = events_commands.add_parser(
        "inspect",
        help="parse a MinIO notification as the dispatcher would and show where it routes",
        description="Parse a MinIO bucket notification (any envelope MinIO has used) and print, per "
        "record: event name, bucket, decoded key, object version and - with --fdl - the services it "
        "routes to and their Job names, or why it routes nowhere.",
    )
    inspect.add_argument("source", help="file with the message body, or - for standard input")
    inspect.add_argument("--fdl", nargs="+", type=Path, default=[], help="FDL file(s) to route against")
    inspect.add_argument("--json", action="store_true", help="print JSON instead of text")
    add_cluster_option(inspect)
    inspect.set_defaults(handler=_inspect)


def _inspect(args: argparse.Namespace) -> tuple[str, int]:
    body = sys.stdin.buffer.read() if args.source == "-" else Path(args.source).read_bytes()
    cluster = chosen_cluster(args.cluster) if args.fdl else None
    return inspect_events(body, args.fdl, as_json=args.json, cluster=cluster)


def inspect_events(
    body: bytes, paths: Sequence[Path] = (), *, as_json: bool = False, cluster: str | None = None
) -> tuple[str, int]:
    """Parse one AMQP message body as the dispatcher would, and say where each record would go (with
    ``paths``' services; ``cluster`` chooses among a service's definitions for several OSCAR clusters)."""
    loaded = load_services(paths, cluster=cluster) if paths else None
    try:
        events = parse_message(body)
    except EventError as error:
        if as_json:
            return json.dumps(
                {"error": {"reason": str(error.reason), "message": error.message}}
            ), EXIT_INVALID
        return f"refused ({error.reason}): {error.message}", EXIT_INVALID
    reports = [_inspect_one(index, event, loaded) for index, event in enumerate(events, 1)]
    if as_json:
        return json.dumps(reports, ensure_ascii=False, indent=2), EXIT_OK
    return "\n".join(_format_report(report) for report in reports), EXIT_OK


def _inspect_one(index: int, event: ObjectEvent, loaded: LoadedServices | None) -> dict[str, Any]:
    report: dict[str, Any] = {
        "record": index,
        "event": event.event_name,
        "kind": str(event.kind),
        "bucket": event.bucket,
        "key": event.key,
        "size": event.size,
    }
    try:
        report["version"] = object_version(event)
    except EventError as error:
        report["version_error"] = error.message
    if loaded is not None:
        router = Router(loaded.services)
        routes = router.route(event)
        report["routes"] = [
            {
                "service": route.service.name,
                "job": job_name(route.service.name, event.bucket, event.key, report["version"])
                if "version" in report
                else None,
            }
            for route in routes
        ]
        if not routes and (why := router.explain(event)) is not None:
            report["no_route"] = {
                "reason": str(why.reason),
                "message": why.message,
                "dispatcher": "acked, ignored" if why.reason in IGNORED_REASONS else "dead-lettered",
            }
    return report


def _format_report(report: dict[str, Any]) -> str:
    lines = [
        f"record {report['record']}: {report['event']} ({report['kind']})",
        f"  bucket:  {report['bucket']}",
        f"  key:     {report['key']!r}",
        f"  version: {report.get('version') or 'none: ' + report.get('version_error', '')}",
    ]
    if "routes" in report:
        for route in report["routes"]:
            lines.append(f"  routes to: {route['service']} (Job {route['job']})")
        if "no_route" in report:
            no_route = report["no_route"]
            lines.append(f"  routes nowhere ({no_route['reason']}): {no_route['message']}")
            lines.append(f"  the dispatcher: {no_route['dispatcher']}")
    return "\n".join(lines)
