"""``services validate``'s dry run, shared by the CLI and the OSCAR API: load FDL, report every problem
and warning, and render each service's Job for a sample upload. Contacts no server."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Final

from dispatcher.domain.events import ObjectEvent, build_message, parse_message
from dispatcher.fdl import ServiceDefinition, ServiceDefinitionError, load_services
from dispatcher.rendering.context import RenderError, placeholder_grants
from dispatcher.rendering.render import JobRenderer

EXIT_OK: Final = 0
EXIT_INVALID: Final = 1
"""The CLI's code for invalid input (``bucketrun.cli.common.EXIT_INVALID``)."""


def sample_upload(bucket: str, key: str, *, version_id: str | None = None) -> ObjectEvent:
    """The event of an empty object put at bucket/key, parsed as the dispatcher parses MinIO's."""
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


def validate_services(
    paths: Sequence[Path], *, strict: bool = False, cluster: str | None = None
) -> tuple[str, int]:
    """Load FDL files/directories, report problems and warnings, and render each service once.

    ``cluster`` chooses among a service's definitions for several OSCAR clusters.
    """
    try:
        loaded = load_services(paths, cluster=cluster)
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
        sample = sample_upload(service.inputs[0].bucket, _sample_key(service.inputs[0].folder))
        try:
            renderer.render(service, sample, placeholder_grants(service, sample))
        except RenderError as error:
            failures += 1
            lines.append(f"  error: does not render: {error}")
    lines += [f"note: {note}" for note in loaded.notes]
    lines += [f"warning: {warning}" for warning in loaded.warnings]
    failed = failures > 0 or (strict and bool(loaded.warnings))
    summary = (
        f"{len(loaded.services)} service(s), {len(loaded.warnings)} warning(s), {failures} render error(s)"
    )
    if strict and loaded.warnings:
        summary += " (--strict: warnings fail)"
    lines.append(summary)
    return "\n".join(lines), EXIT_INVALID if failed else EXIT_OK


def _describe(service: ServiceDefinition) -> str:
    inputs = ", ".join(i.path for i in service.inputs)
    if not service.triggerable:
        inputs = "no inputs (not triggerable)"
    outputs = ", ".join(o.path for o in service.outputs) or "none"
    gpu = f", {service.gpus} GPU" if service.enable_gpu else ""
    disk = service.ephemeral_storage_request
    storage = f", ephemeral storage {disk}" if disk else ""
    resources = f"cpu {service.cpu or '-'}, memory {service.memory or '-'}{storage}{gpu}"
    return f"ok: {service.name} ({service.image}; {resources}): {inputs} -> {outputs}"


def _sample_key(folder: str) -> str:
    return f"{folder}/sample.dat" if folder else "sample.dat"
