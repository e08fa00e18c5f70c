"""The template variables for one Job: a pure function of (service, event, settings, staging grants).

Everything a template can use is built here, as plain JSON-able data, and documented in
`job_templates/README.md`. Decisions (names, labels, env, resources) live here, in Python, where they
are tested; templates only lay the data out.
"""

from __future__ import annotations

import json
import posixpath
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from dispatcher.domain import constants as c
from dispatcher.domain.events import ObjectEvent
from dispatcher.domain.identity import job_name, object_version, parts_digest
from dispatcher.fdl import OutputPath, ServiceDefinition
from dispatcher.fdl.model import DEFAULT_LOG_LEVEL, LOG_LEVEL_VARIABLE
from dispatcher.fdl.storage import MOUNT_ROOT
from dispatcher.rendering.function_config import function_config
from dispatcher.rendering.mount import MountGrant, MountLimits, manifest
from dispatcher.rendering.secrets import secret_name
from job_templates.stager import contract

EPHEMERAL_STORAGE: Final = "ephemeral-storage"
"""Kubernetes' name of the resource ``ephemeral_storage_request`` asks for."""


class RenderError(ValueError):
    """The service and event cannot be turned into a valid Job; the message names the offending value."""


@dataclass(frozen=True)
class RenderSettings:
    """Deployment-wide rendering choices (not per service)."""

    namespace: str = "bucketrun"
    """Namespace the Jobs and ConfigMaps are created in."""
    stager_image: str = "ghcr.io/bucketrun/bucketrun:latest"
    """Image of the stage-in/stage-out containers (bucketrun's own image)."""
    stager_pull_policy: str = "IfNotPresent"
    """imagePullPolicy of the stager containers."""
    work_dir: str = "/bucketrun/work"
    """Where the shared emptyDir is mounted; input/, output/ and state/ live under it."""
    config_dir: str = c.OSCAR_CONFIG_DIR
    """Where the per-service ConfigMap (script, ``function_config.yaml`` and wrapper) is mounted: OSCAR's
    ``/oscar/config``."""
    default_ttl_seconds_after_finished: int | None = 3600
    """TTL of finished Jobs when a service sets none (records outlive the Job); None keeps them."""
    default_timeout: int | None = c.DEFAULT_JOB_TIMEOUT
    """``activeDeadlineSeconds`` of Jobs whose service sets no ``timeout``; None leaves them unbounded."""
    run_start_timeout: int = contract.DEFAULT_RUN_START_TIMEOUT
    """Seconds stage-out waits for the run container to start (``BUCKETRUN_RUN_START_TIMEOUT``)."""
    gpu_resource: str = c.GPU_RESOURCE
    """Extended resource name requested for GPUs."""
    default_cpu: str | None = c.DEFAULT_CPU
    """CPU of the script container (request and limit) when the service sets no ``cpu``; None leaves it
    unset. Default OSCAR's, ``0.2``."""
    default_memory: str | None = c.DEFAULT_MEMORY
    """Memory of the script container (request and limit) when the service sets no ``memory``; None
    leaves it unset. Default OSCAR's, ``256Mi``."""
    service_base_path: str | None = None
    """``OSCAR_SERVICE_BASE_PATH`` of every service, ``{service}`` standing for its name; None: empty, as
    OSCAR leaves it for a service it does not expose."""
    stager_resources: Mapping[str, Mapping[str, str]] = field(
        default_factory=lambda: {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}}
    )
    """Resources of each stager container."""

    def base_path(self, service: str) -> str:
        """The service's ``OSCAR_SERVICE_BASE_PATH`` (``{service}`` replaced, nothing else interpreted)."""
        return "" if self.service_base_path is None else self.service_base_path.replace("{service}", service)

    def deadline(self, timeout: int | None) -> int | None:
        """A Job's ``activeDeadlineSeconds``: the service's ``timeout``, else the default."""
        return timeout if timeout is not None else self.default_timeout


@dataclass(frozen=True)
class OutputGrant:
    """Permission to upload to one output path, valid until it expires (presigned POST policy)."""

    provider: str
    bucket: str
    folder: str
    prefix: tuple[str, ...]
    suffix: tuple[str, ...]
    url: str = field(repr=False)  # a credential until it expires: never in logs or reprs
    form_fields: Mapping[str, str] = field(repr=False)


@dataclass(frozen=True)
class StagingGrants:
    """Expiring, object-scoped storage permissions for one Job's stager (no long-lived credentials)."""

    input_url: str = field(repr=False)  # a credential until it expires: never in logs or reprs
    outputs: tuple[OutputGrant, ...]
    expires_at: str  # RFC 3339
    outputs_manifest_url: str | None = field(default=None, repr=False)
    """Presigned PUT of the Job's outputs manifest in its record folder (None: stage-out stores none)."""
    mount: MountGrant | None = None
    """The service's ``mount``: presigned GETs of its folder's objects, or why stage-in must refuse it."""


STAGER_SECURITY_CONTEXT: dict[str, Any] = {
    "runAsNonRoot": True,
    "runAsUser": 65532,
    "runAsGroup": 65532,
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "capabilities": {"drop": ["ALL"]},
}
# The user's image may expect root (most OSCAR images do); it still gets no privilege escalation.
RUN_SECURITY_CONTEXT: dict[str, Any] = {"allowPrivilegeEscalation": False}


def run_security_context(run_as_user: int | None) -> dict[str, Any]:
    """The script container's security context: the image's user by default (OSCAR compatibility), or
    ``bucketrun.run_as_user``: that non-root UID with every capability dropped."""
    if run_as_user is None:
        return dict(RUN_SECURITY_CONTEXT)
    return {
        **RUN_SECURITY_CONTEXT,
        "runAsNonRoot": True,
        "runAsUser": run_as_user,
        "capabilities": {"drop": ["ALL"]},
    }


def short_hash(*parts: str, length: int = 16) -> str:
    """Hex prefix of the length-prefixed SHA-256 of *parts* (unambiguous: ("a/b","c") != ("a","b/c"))."""
    return parts_digest(parts).hex()[:length]


def config_map_name(service: ServiceDefinition) -> str:
    """Name of the service's ConfigMap for its current content (changes when the script changes)."""
    return f"bucketrun-{service.name}-{service.content_hash()[:10]}"


def input_file_name(key: str) -> str:
    """The file name the input object gets in TMP_INPUT_DIR: the key's last segment, never a path."""
    name = posixpath.basename(key)
    return "input" if name in {"", ".", ".."} else name


def config_map_context(service: ServiceDefinition, wrapper: str, settings: RenderSettings) -> dict[str, Any]:
    """Template variables of the per-service ConfigMap (script and wrapper)."""
    return {
        "config_map": {
            "name": config_map_name(service),
            "namespace": settings.namespace,
            "labels": {
                c.LABEL_MANAGED_BY: c.MANAGED_BY,
                c.LABEL_SERVICE: service.name,
                c.LABEL_SERVICE_HASH: service.content_hash()[:16],
            },
            "annotations": {c.ANNOTATION_SOURCE: service.source},
            "data": {
                c.CONFIG_SCRIPT: service.script,
                c.CONFIG_FUNCTION: function_config(service),
                c.CONFIG_WRAPPER: wrapper,
            },
        }
    }


def job_context(
    service: ServiceDefinition,
    event: ObjectEvent,
    grants: StagingGrants,
    settings: RenderSettings,
) -> dict[str, Any]:
    """Template variables of the Job that runs *service* on the object of *event*."""
    version = object_version(event)
    name = job_name(service.name, event.bucket, event.key, version)
    options = service.options

    labels = {
        **service.labels,
        c.LABEL_MANAGED_BY: c.MANAGED_BY,
        c.LABEL_SERVICE: service.name,
        # OSCAR's own label, set after the service's labels as OSCAR's create handler sets it.
        c.LABEL_OSCAR_SERVICE: service.name,
        c.LABEL_BUCKET: event.bucket,
        c.LABEL_KEY_HASH: short_hash(event.bucket, event.key),
        c.LABEL_SERVICE_HASH: service.content_hash()[:16],
    }
    if options.kueue_queue:
        labels[c.LABEL_KUEUE_QUEUE] = options.kueue_queue
    annotations = {
        **service.annotations,
        c.ANNOTATION_BUCKET: event.bucket,
        c.ANNOTATION_KEY: event.key,
        c.ANNOTATION_VERSION: version,
        c.ANNOTATION_EVENT_NAME: event.event_name,
        c.ANNOTATION_SOURCE: service.source,
    }
    if event.event_time is not None:
        annotations[c.ANNOTATION_EVENT_TIME] = event.event_time.isoformat()

    work = settings.work_dir
    paths = {
        "work": work,
        "config": settings.config_dir,
        "input_dir": f"{work}/input",
        "output_dir": f"{work}/output",
        "state_dir": f"{work}/state",
    }
    input_path = f"{paths['input_dir']}/{input_file_name(event.key)}"
    ttl = options.ttl_seconds_after_finished
    return {
        "job": {
            "name": name,
            "namespace": settings.namespace,
            "labels": labels,
            "annotations": annotations,
            "backoff_limit": options.retries,
            "active_deadline_seconds": settings.deadline(options.timeout),
            "ttl_seconds_after_finished": ttl
            if ttl is not None
            else settings.default_ttl_seconds_after_finished,
            "suspend": bool(options.kueue_queue),
            "permanent_stage_in_exit_codes": [
                contract.EXIT_INPUT_MISSING,
                contract.EXIT_INPUT_FORBIDDEN,
                contract.EXIT_MOUNT_REFUSED,
            ],
        },
        "pod": {
            "labels": labels,
            "annotations": annotations,
            "config_map": config_map_name(service),
            "image_pull_secrets": [{"name": secret} for secret in service.image_pull_secrets],
            "node_selector": dict(options.node_selector),
            "tolerations": [dict(t) for t in options.tolerations],
        },
        "paths": paths,
        "mount": _mount_volume(service, grants),
        "run": {
            "image": service.image,
            "command": ["/bin/sh", f"{settings.config_dir}/{c.CONFIG_WRAPPER}"],
            "env": _run_env(service, event, name, paths, input_path=input_path, settings=settings)
            + _script_input_url(service, grants)
            + _mount_dir_env(service),
            "resources": _run_resources(service, settings),
            "security_context": run_security_context(options.run_as_user),
        },
        "stager": {
            "image": settings.stager_image,
            "pull_policy": settings.stager_pull_policy,
            "stage_in_command": ["python", "-m", "job_templates.stager", "in"],
            "stage_out_command": ["python", "-m", "job_templates.stager", "out"],
            "stage_in_env": [
                *_stage_in_source(service, grants),
                {"name": contract.INPUT_FILE_PATH, "value": input_path},
                {"name": contract.TMP_INPUT_DIR, "value": paths["input_dir"]},
                {"name": contract.TMP_OUTPUT_DIR, "value": paths["output_dir"]},
                {"name": contract.STATE_DIR, "value": paths["state_dir"]},
                *_mount_env(service, grants),
            ],
            "stage_out_env": [
                {"name": contract.OUTPUTS, "value": _outputs_json(grants)},
                *_manifest_env(grants),
                {"name": contract.UPLOAD_OUTPUTS, "value": options.upload_outputs},
                {"name": contract.TMP_OUTPUT_DIR, "value": paths["output_dir"]},
                {"name": contract.STATE_DIR, "value": paths["state_dir"]},
                {"name": contract.GRANTS_EXPIRE, "value": grants.expires_at},
                {"name": contract.RUN_START_TIMEOUT, "value": str(settings.run_start_timeout)},
            ],
            "resources": {k: dict(v) for k, v in settings.stager_resources.items()},
            "security_context": STAGER_SECURITY_CONTEXT,
        },
    }


def _run_env(
    service: ServiceDefinition,
    event: ObjectEvent,
    name: str,
    paths: Mapping[str, str],
    *,
    input_path: str,
    settings: RenderSettings,
) -> list[dict[str, Any]]:
    # OSCAR's values, each as its code sets it (the golden tests in tests/unit/test_oscar_contract.py
    # name the source lines): the supervisor's INPUT_FILE_PATH, TMP_*_DIR, STORAGE_OBJECT_KEY, EVENT and
    # EVENT_TIME, the job handler's JOB_UUID and RESOURCE_ID, and ToPodSpec's OSCAR_SERVICE_* variables.
    env: list[dict[str, Any]] = [{"name": k, "value": v} for k, v in sorted(service.variables.items())]
    env += [
        {"name": k, "valueFrom": {"secretKeyRef": {"name": secret_name(service.name), "key": k}}}
        for k in sorted(service.secrets)
    ]
    env += _log_level_env(service)
    env += [
        # Under file_stage_in OSCAR's supervisor downloads nothing and leaves INPUT_FILE_PATH unset.
        *([] if service.file_stage_in else [{"name": contract.INPUT_FILE_PATH, "value": input_path}]),
        {"name": contract.TMP_INPUT_DIR, "value": paths["input_dir"]},
        {"name": contract.TMP_OUTPUT_DIR, "value": paths["output_dir"]},
        {"name": "STORAGE_OBJECT_KEY", "value": event.key},
        {"name": "EVENT", "value": oscar_event_text(event)},
        {"name": "EVENT_TIME", "value": raw_event_time(event)},
        {"name": "JOB_UUID", "value": name},
        {"name": "RESOURCE_ID", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
        {"name": "OSCAR_SERVICE_NAME", "value": service.name},
        {"name": "OSCAR_SERVICE_BASE_PATH", "value": settings.base_path(service.name)},
        {"name": "JOB_NAME", "value": name},
        {"name": "BUCKETRUN_SCRIPT", "value": f"{paths['config']}/{c.CONFIG_SCRIPT}"},
        {"name": contract.STATE_DIR, "value": paths["state_dir"]},
    ]
    return env


def _mount_volume(service: ServiceDefinition, grants: StagingGrants) -> dict[str, Any] | None:
    if service.mount is None:
        return None
    if grants.mount is None:
        raise RenderError(f"service {service.name!r} has a mount, but its grants carry no listing of it")
    # The emptyDir is bounded like the mount, so the node accounts for it (and evicts past it).
    return {"volume": "mount", "path": MOUNT_ROOT, "size_limit": str(grants.mount.max_bytes)}


def _mount_env(service: ServiceDefinition, grants: StagingGrants) -> list[dict[str, str]]:
    if service.mount is None or grants.mount is None:
        return []
    return [{"name": contract.MOUNT, "value": manifest(grants.mount)}]


def _mount_dir_env(service: ServiceDefinition) -> list[dict[str, Any]]:
    # OSCAR gives the script no variable for it: scripts name /mnt/<path>. This one names the same
    # directory for scripts that run under the local executor too, which rewrites paths only in values.
    if service.mount is None:
        return []
    return [{"name": contract.MOUNT_DIR, "value": service.mount.directory}]


def _stage_in_source(service: ServiceDefinition, grants: StagingGrants) -> list[dict[str, str]]:
    # file_stage_in: stage-in only prepares the directories and never holds the input's grant.
    if service.file_stage_in:
        return [{"name": contract.DOWNLOAD_INPUT, "value": "false"}]
    return [{"name": contract.INPUT_URL, "value": grants.input_url}]


def _script_input_url(service: ServiceDefinition, grants: StagingGrants) -> list[dict[str, Any]]:
    # file_stage_in: the script downloads the object itself. It gets the one grant that lets it (a GET of
    # this object version, expiring with the Job's other grants) and no storage credential.
    if not service.file_stage_in:
        return []
    return [{"name": contract.INPUT_URL, "value": grants.input_url}]


def oscar_event_text(event: ObjectEvent) -> str:
    """``EVENT`` as OSCAR's supervisor sets it: Python's ``json.dumps`` of the MinIO notification (default
    separators, non-ASCII escaped), the envelope MinIO's webhook posts to OSCAR for this record."""
    return json.dumps(event.envelope())


def raw_event_time(event: ObjectEvent) -> str:
    """``EVENT_TIME`` as OSCAR's supervisor sets it: the record's ``eventTime`` string, unparsed."""
    value = event.record.get("eventTime")
    return value if isinstance(value, str) else ""


def _log_level_env(service: ServiceDefinition) -> list[dict[str, Any]]:
    # OSCAR's supervisor takes its level from a LOG_LEVEL variable, else from the FDL's log_level (OSCAR
    # stores it upper-cased, INFO when unset): the script sees that level under that name. A service's own
    # LOG_LEVEL variable or secret wins, as it does for the supervisor.
    if LOG_LEVEL_VARIABLE in service.variables or LOG_LEVEL_VARIABLE in service.secrets:
        return []
    return [{"name": LOG_LEVEL_VARIABLE, "value": service.log_level or DEFAULT_LOG_LEVEL}]


def _run_resources(service: ServiceDefinition, settings: RenderSettings) -> dict[str, dict[str, Any]]:
    # Requests equal limits: the scheduler reserves what the script may use (Guaranteed QoS when
    # both are set), as OSCAR does. A service without cpu or memory gets the deployment's defaults, as
    # OSCAR gives it its own, rather than no requests at all (BestEffort: first evicted, unbounded).
    amounts: dict[str, Any] = {}
    cpu = service.cpu if service.cpu is not None else settings.default_cpu
    memory = service.memory if service.memory is not None else settings.default_memory
    if cpu is not None:
        amounts["cpu"] = cpu
    if memory is not None:
        amounts["memory"] = memory
    limits: dict[str, Any] = dict(amounts)
    if service.enable_gpu:
        limits[settings.gpu_resource] = service.gpus
    requests = dict(amounts)
    if service.ephemeral_storage_request is not None:
        # As OSCAR sets it: a request (what the scheduler and Kueue count), no limit (no eviction at it).
        requests[EPHEMERAL_STORAGE] = service.ephemeral_storage_request
    resources: dict[str, dict[str, Any]] = {}
    if requests:
        resources["requests"] = requests
    if limits:
        resources["limits"] = limits
    return resources


def _outputs_json(grants: StagingGrants) -> str:
    return json.dumps(
        [
            {
                "provider": o.provider,
                "bucket": o.bucket,
                "folder": o.folder,
                "prefix": list(o.prefix),
                "suffix": list(o.suffix),
                "url": o.url,
                "fields": dict(o.form_fields),
            }
            for o in grants.outputs
        ],
        ensure_ascii=False,
        separators=(",", ":"),
    )


def _manifest_env(grants: StagingGrants) -> list[dict[str, str]]:
    if grants.outputs_manifest_url is None:
        return []
    return [{"name": contract.OUTPUTS_MANIFEST_URL, "value": grants.outputs_manifest_url}]


def placeholder_grants(service: ServiceDefinition, event: ObjectEvent) -> StagingGrants:
    """Grants for dry runs (`bucketrun render`): shaped like the real ones, granting nothing."""
    return StagingGrants(
        input_url=f"https://presigned.invalid/get/{short_hash(event.bucket, event.key)}",
        outputs=tuple(_placeholder_output(o) for o in service.outputs),
        expires_at="1970-01-01T00:00:00Z",
        outputs_manifest_url="https://presigned.invalid/put/outputs.json",
        mount=None
        if service.mount is None
        else MountGrant(service.mount.directory, max_bytes=MountLimits().max_bytes),
    )


def _placeholder_output(output: OutputPath) -> OutputGrant:
    return OutputGrant(
        provider=output.provider,
        bucket=output.bucket,
        folder=output.folder,
        prefix=tuple(output.prefix),
        suffix=tuple(output.suffix),
        url=f"https://presigned.invalid/post/{output.bucket}",
        form_fields={},
    )
