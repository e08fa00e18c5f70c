"""Create the Job for one service task: parse, look up the service, presign, render, create.

The only step with side effects on the cluster is the last one, and it is idempotent: the Job name is
a function of (service, bucket, key, object version), so a task delivered twice meets 409 AlreadyExists
and reports `EXISTS`. Everything that can never succeed raises `PermanentError` with a reason; anything
the cluster or storage may answer differently later raises `TransientError` (from the adapters).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any

import structlog

from dispatcher.adapters.s3.storage import Storage
from dispatcher.domain.errors import PermanentError
from dispatcher.domain.events import EventError, ObjectEvent
from dispatcher.domain.identity import job_name, object_version
from dispatcher.domain.ingress import parse_task
from dispatcher.domain.jobs import CreateOutcome
from dispatcher.executors.base import Executor
from dispatcher.fdl import ServiceDefinition
from dispatcher.rendering.context import RenderError
from dispatcher.rendering.mount import (
    Listed,
    MountedObject,
    MountGrant,
    MountLimits,
    plan_mount,
    refused,
    relative_path,
)
from dispatcher.rendering.render import JobRenderer

_MAX_CACHED_CONFIG_MAPS = 1024
WORK_CONTEXT_KEYS = ("event_id", "bucket", "key", "job")
"""Log context keys `JobCreator.create` binds for the rest of a task's handling (``event_id`` is the
object version the event announces, as `identity.object_version` spells it and the Job's annotation
keeps it, so dispatcher and watcher lines of one upload share it)."""


@dataclass(frozen=True, slots=True)
class CreatedJob:
    """What happened to one task."""

    service: str
    name: str
    event: ObjectEvent
    outcome: CreateOutcome


class JobCreator:
    """Turns service tasks into Jobs, with the services current at the time of each call."""

    def __init__(
        self,
        services: Callable[[], Mapping[str, ServiceDefinition]],
        renderer: JobRenderer,
        storage: Storage,
        executor: Executor,
        grant_lifetime: Callable[[int | None], timedelta],
        *,
        mount_limits: MountLimits | None = None,
    ) -> None:
        self._mount_limits = mount_limits or MountLimits()
        self._services = services
        self._renderer = renderer
        self._storage = storage
        self._executor = executor
        self._grant_lifetime = grant_lifetime
        self._config_maps: dict[str, dict[str, Any]] = {}

    def prepare(
        self, service_name: str, body: bytes
    ) -> tuple[ServiceDefinition, ObjectEvent, dict[str, Any], dict[str, Any]]:
        """The pure half: (service, event, ConfigMap, Job) for a task, or `PermanentError`."""
        try:
            event = parse_task(body)
        except EventError as error:
            raise PermanentError(error.message, reason=str(error.reason)) from error
        return self.prepare_event(service_name, event)

    def prepare_event(
        self, service_name: str, event: ObjectEvent, *, mount: MountGrant | None = None
    ) -> tuple[ServiceDefinition, ObjectEvent, dict[str, Any], dict[str, Any]]:
        """``prepare`` for an event already parsed (the ingress consumer's direct creates); ``mount`` is
        the service's mount listing, presigned (`mount_grant`), for a service that has one."""
        service = self._service(service_name)
        grants = self._storage.grants_for(
            service,
            event.bucket,
            event.key,
            # The grants outlive the Job's deadline, the default one included.
            expires=self._grant_lifetime(self._renderer.settings.deadline(service.options.timeout)),
            version_id=event.version_id if event.version_id not in (None, "null") else None,
            job=job_name(service.name, event.bucket, event.key, object_version(event)),
        )
        if service.mount is not None:
            if mount is None:
                reason = "the mount folder was not listed"
                mount = refused(service.mount, reason, max_bytes=self._mount_limits.max_bytes)
            grants = replace(grants, mount=mount)
        try:
            config_map = self._config_map(service)
            job = self._renderer.render_job(service, event, grants)
        except RenderError as error:
            raise PermanentError(str(error), reason="invalid-manifest") from error
        return service, event, config_map, job

    def _config_map(self, service: ServiceDefinition) -> dict[str, Any]:
        # The same for every Job of one service version: render it once per content hash.
        key = service.content_hash()
        cached = self._config_maps.get(key)
        if cached is None:
            if len(self._config_maps) > _MAX_CACHED_CONFIG_MAPS:
                self._config_maps.clear()
            cached = self._config_maps[key] = self._renderer.render_config_map(service)
        return cached

    async def create_event(self, service_name: str, event: ObjectEvent) -> CreatedJob:
        """Create the Job for an event already parsed (idempotent)."""
        mount = await self.mount_grant(self._service(service_name))
        return await self._create(*self.prepare_event(service_name, event, mount=mount))

    def _service(self, name: str) -> ServiceDefinition:
        service = self._services().get(name)
        if service is None:
            raise PermanentError(f"no service named {name!r} is loaded", reason="unknown-service")
        return service

    async def mount_grant(self, service: ServiceDefinition) -> MountGrant | None:
        """The service's ``mount`` as its Job's stage-in gets it: the folder listed now (one request, at most
        ``max_objects + 1`` keys) and presigned, or the reason the Job must refuse it; None without a mount.

        A listing the store refuses for good (no such bucket, access denied) becomes that reason, so the
        Job's record says it; transient storage errors propagate and the task is retried.
        """
        mount = service.mount
        if mount is None:
            return None
        limits = self._mount_limits
        try:
            found = await self._storage.list(mount.bucket, mount.key_prefix, limit=limits.max_objects + 1)
        except PermanentError as error:
            return refused(mount, f"cannot list the mount folder: {error}", max_bytes=limits.max_bytes)
        plan = plan_mount(
            mount,
            [Listed(item.key, item.size or 0) for item in found],
            max_objects=limits.max_objects,
            max_bytes=limits.max_bytes,
        )
        if plan.refused is not None:
            return refused(mount, plan.refused, max_bytes=limits.max_bytes)
        expires = self._grant_lifetime(self._renderer.settings.deadline(service.options.timeout))
        urls = self._storage.presign_gets(mount.bucket, [item.key for item in plan.objects], expires=expires)
        objects = tuple(
            MountedObject(relative_path(mount, item.key), item.size, url)
            for item, url in zip(plan.objects, urls, strict=True)
        )
        return MountGrant(mount.directory, limits.max_bytes, objects)

    async def _create(
        self, service: ServiceDefinition, event: ObjectEvent, config_map: dict[str, Any], job: dict[str, Any]
    ) -> CreatedJob:
        name = job["metadata"]["name"]
        # The caller runs each task in its own asyncio task (its own context): every later log line
        # of this unit of work carries these, including retries' and failures'.
        structlog.contextvars.bind_contextvars(
            event_id=object_version(event), bucket=event.bucket, key=event.key, job=name
        )
        await self._executor.ensure_config_map(config_map)
        outcome = await self._executor.create_job(job)
        return CreatedJob(service.name, name, event, outcome)
