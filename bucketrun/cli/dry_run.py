"""The dry-run commands for people debugging their set-up: no server is contacted.

Each function returns (text to print, exit code) so the CLI stays a thin shell around them and the
tests can call them directly.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from dispatcher.domain.events import EventError, ObjectEvent, build_message, parse_message
from dispatcher.domain.identity import job_name, object_version
from dispatcher.domain.ingress import IGNORED_REASONS
from dispatcher.domain.routing import Router
from dispatcher.fdl import LoadedServices, ServiceDefinition, ServiceDefinitionError, load_services
from dispatcher.rendering.context import RenderError, RenderSettings, placeholder_grants
from dispatcher.rendering.render import JobRenderer

EXIT_OK = 0
EXIT_INVALID = 1


def validate_services(paths: Sequence[Path], *, strict: bool = False) -> tuple[str, int]:
    """Load FDL files/directories, report problems and warnings, and render each service once."""
    try:
        loaded = load_services(paths)
    except ServiceDefinitionError as error:
        problems = [f"error: {problem}" for problem in error.problems]
        return "\n".join([*problems, f"{len(error.problems)} problem(s); nothing loaded"]), EXIT_INVALID
    renderer = JobRenderer()
    lines: list[str] = []
    failures = 0
    for service in loaded.services:
        lines.append(_describe(service))
        if not service.inputs:
            continue
        sample = _sample_event(service.inputs[0].bucket, _sample_key(service.inputs[0].folder))
        try:
            renderer.render(service, sample, placeholder_grants(service, sample))
        except RenderError as error:
            failures += 1
            lines.append(f"  error: does not render: {error}")
    lines += [f"warning: {warning}" for warning in loaded.warnings]
    failed = failures > 0 or (strict and bool(loaded.warnings))
    summary = (
        f"{len(loaded.services)} service(s), {len(loaded.warnings)} warning(s), {failures} render error(s)"
    )
    if strict and loaded.warnings:
        summary += " (--strict: warnings fail)"
    lines.append(summary)
    return "\n".join(lines), EXIT_INVALID if failed else EXIT_OK


def render_manifests(
    paths: Sequence[Path],
    service_name: str,
    bucket: str,
    key: str,
    *,
    version_id: str | None = None,
    settings: RenderSettings | None = None,
    template_dirs: Sequence[Path] = (),
) -> tuple[str, int]:
    """The ConfigMap and Job an upload of bucket/key would create for *service_name*, as YAML."""
    loaded = load_services(paths)
    service = loaded.by_name(service_name)
    event = _sample_event(bucket, key, version_id=version_id)
    routes = Router(loaded.services).route(event)
    notes = []
    if all(route.service.name != service.name for route in routes):
        notes.append(
            f"# note: an upload of {bucket}/{key} would not trigger {service.name!r} (rendered anyway)"
        )
    renderer = JobRenderer(settings, template_dirs)
    rendered = renderer.render(service, event, placeholder_grants(service, event))
    notes.append("# presigned URLs are placeholders; the dispatcher signs real ones per Job")
    body = yaml.safe_dump_all([rendered.config_map, rendered.job], sort_keys=False, allow_unicode=True)
    return "\n".join([*notes, body]), EXIT_OK


def inspect_events(body: bytes, paths: Sequence[Path] = (), *, as_json: bool = False) -> tuple[str, int]:
    """Parse one AMQP message body as the dispatcher would, and say where each record would go."""
    loaded = load_services(paths) if paths else None
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


def _describe(service: ServiceDefinition) -> str:
    inputs = ", ".join(i.path for i in service.inputs) or "no inputs (not triggerable)"
    outputs = ", ".join(o.path for o in service.outputs) or "none"
    gpu = f", {service.gpus} GPU" if service.enable_gpu else ""
    resources = f"cpu {service.cpu or '-'}, memory {service.memory or '-'}{gpu}"
    return f"ok: {service.name} ({service.image}; {resources}): {inputs} -> {outputs}"


def _sample_key(folder: str) -> str:
    return f"{folder}/sample.dat" if folder else "sample.dat"


def _sample_event(bucket: str, key: str, *, version_id: str | None = None) -> ObjectEvent:
    body = build_message(
        event_name="s3:ObjectCreated:Put",
        bucket=bucket,
        key=key,
        size=0,
        etag="d41d8cd98f00b204e9800998ecf8427e",
        version_id=version_id,
        sequencer="0000000000000000",
    )
    (event,) = parse_message(body)
    return event
