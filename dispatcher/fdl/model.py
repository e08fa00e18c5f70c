"""A service bucketrun can run: the validated, immutable form of one OSCAR FDL service.

``ServiceDefinition`` is what the rest of bucketrun consumes (routing reads ``name`` and ``inputs``,
rendering the rest); it knows nothing about YAML or files -- ``loader`` builds it from FDL files.
Every field is validated on construction, so a definition built by hand in a test obeys the same rules
as one read from a file.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from functools import cached_property
from typing import Annotated, Any, Final, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    NonNegativeInt,
    PlainSerializer,
    PositiveInt,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from dispatcher.domain.quantity import positive_quantity
from dispatcher.fdl.errors import FieldValidationError, shown
from dispatcher.fdl.frozen import Annotations, Labels, Secrets, Variables, empty, freeze
from dispatcher.fdl.names import check_dns_label, check_dns_subdomain, check_image, check_service_name
from dispatcher.fdl.script import check_script_text
from dispatcher.fdl.storage import (
    DEFAULT_EVENTS,
    DEFAULT_PROVIDER,
    EventPatterns,
    InputPath,
    MountPath,
    OutputPath,
    StorageProvider,
)

# What the job contract sets for the script (OSCAR's variables plus bucketrun's wrapper's): a service
# variable or secret with one of these names would make the script see something else than documented.
RESERVED_VARIABLES: Final = frozenset(
    {
        "INPUT_FILE_PATH",
        "TMP_INPUT_DIR",
        "TMP_OUTPUT_DIR",
        "STORAGE_OBJECT_KEY",
        "EVENT",
        "EVENT_TIME",
        "JOB_UUID",
        "JOB_NAME",
        "RESOURCE_ID",
        "OSCAR_SERVICE_NAME",
        "OSCAR_SERVICE_BASE_PATH",
    }
)
RESERVED_VARIABLE_PREFIX: Final = "BUCKETRUN_"
# OSCAR's create handler upper-cases log_level and keeps it when it is one of Python's logging level names
# (the FaaS Supervisor is Python), else it silently uses INFO; bucketrun refuses anything else instead.
LOG_LEVELS: Final = ("NOTSET", "DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
DEFAULT_LOG_LEVEL: Final = "INFO"
"""The supervisor's level when the FDL sets none (OSCAR's default)."""
LOG_LEVEL_VARIABLE: Final = "LOG_LEVEL"
"""The variable OSCAR's supervisor reads its level from before the FDL's ``log_level``; the script gets it."""
_MAX_ANNOTATION_BYTES: Final = 256 * 1024  # Kubernetes' limit on all annotations of an object
_HASH_VERSION: Final = "bucketrun-service/2"
"""Changed whenever the ConfigMap a service version gets changes shape (2: ``function_config.yaml`` added),
so no Job mounts an older ConfigMap of the same name that lacks a key."""
# Pydantic's lax booleans (true/yes/on/1 ...), as the enable_gpu field itself reads them.
_BOOL: Final = TypeAdapter(bool)


def is_reserved_variable(name: str) -> bool:
    """Whether ``name`` belongs to the job contract and may not be set by a service."""
    return name in RESERVED_VARIABLES or name.startswith(RESERVED_VARIABLE_PREFIX)


def _checked_quantity(text: str) -> str:
    """Keep *text* as written once it is known to be a positive Kubernetes quantity."""
    positive_quantity(text)
    return text


class _Toleration(BaseModel):
    """One Kubernetes toleration, spelled as in a pod spec (``tolerationSeconds``)."""

    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)

    key: str | None = None
    operator: Literal["Exists", "Equal"] = "Equal"
    value: str | None = None
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None
    tolerationSeconds: int | None = Field(default=None, ge=0)  # noqa: N815 -- the pod-spec spelling users paste

    @model_validator(mode="after")
    def _consistent(self) -> _Toleration:
        if self.operator == "Exists" and self.value:
            raise ValueError("a toleration with operator 'Exists' takes no value")
        if self.key is None and self.operator != "Exists":
            raise ValueError("a toleration without a key must use operator 'Exists'")
        if self.tolerationSeconds is not None and self.effect != "NoExecute":
            raise ValueError("tolerationSeconds applies only to effect 'NoExecute'")
        return self


def _toleration(raw: Any) -> Mapping[str, Any]:
    """A validated toleration as a read-only pod-spec mapping, unset fields left out."""
    return freeze(
        _Toleration.model_validate(dict(raw) if isinstance(raw, Mapping) else raw).model_dump(
            exclude_none=True
        )
    )


Toleration = Annotated[
    Mapping[str, Any], BeforeValidator(_toleration), AfterValidator(freeze), PlainSerializer(dict)
]


class BucketrunOptions(BaseModel):
    """bucketrun's own settings for a service: the FDL's ``bucketrun:`` block (OSCAR has no such key)."""

    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)

    timeout: PositiveInt | None = None
    """Seconds a job may run before Kubernetes stops it (``activeDeadlineSeconds``); no limit when unset."""
    retries: Annotated[int, Field(ge=0, le=100)] = 0
    """Times a failed job is retried (``backoffLimit``); default 0, since scripts are rarely idempotent."""
    max_concurrent_jobs: PositiveInt | None = None
    """At most this many jobs of the service at once; unlimited when unset."""
    node_selector: Labels = Field(default_factory=empty)
    """Node labels the job's pod must match (e.g. GPU nodes)."""
    tolerations: tuple[Toleration, ...] = ()
    """Taints the job's pod tolerates, as pod-spec mappings (``key``, ``operator``, ``value``, ``effect``,
    ``tolerationSeconds``)."""
    kueue_queue: Annotated[str, AfterValidator(check_dns_label)] | None = None
    """Kueue LocalQueue to submit jobs to (jobs are then created suspended and admitted by Kueue)."""
    ttl_seconds_after_finished: NonNegativeInt | None = None
    """Seconds Kubernetes keeps a finished job (``ttlSecondsAfterFinished``); the deployment's default
    (one hour) when unset. Job records outlive the Job either way."""
    upload_outputs: Literal["on_success", "always"] = "on_success"
    """When results in ``TMP_OUTPUT_DIR`` are uploaded: only after the script succeeded, or always."""
    run_as_user: Annotated[int, Field(ge=1, le=2**31 - 1)] | None = None
    """UID the script's container runs as, non-root and without capabilities. Unset: the image's own
    user, as OSCAR runs it (most OSCAR images expect root), still without privilege escalation."""
    events: EventPatterns = DEFAULT_EVENTS
    """MinIO event-name patterns that trigger the service; default ``s3:ObjectCreated:*``."""


def _upper_log_level(value: str) -> str:
    level = value.upper()
    if level not in LOG_LEVELS:
        raise ValueError(
            f"invalid log level {shown(value)} (expected one of {', '.join(LOG_LEVELS)}, in any case; "
            f"OSCAR would silently run its supervisor at {DEFAULT_LOG_LEVEL} instead)"
        )
    return level


def _unset_when_empty(value: Any) -> Any:
    # OSCAR reads an empty log_level as its default, as if the key were absent.
    return None if value == "" else value


def _check_variable_name(name: str) -> str:
    if is_reserved_variable(name):
        raise ValueError(
            f"variable name {shown(name)} is reserved for the job contract "
            f"({', '.join(sorted(RESERVED_VARIABLES))} and {RESERVED_VARIABLE_PREFIX}*)"
        )
    return name


class ServiceDefinition(BaseModel):
    """One OSCAR service as bucketrun runs it: frozen, validated, with its script text resolved."""

    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)

    name: Annotated[str, AfterValidator(check_service_name)]
    """Service name: a DNS-1123 label of at most 39 characters, unique among loaded services."""
    image: Annotated[str, AfterValidator(check_image)]
    """Container image the script runs in (needs only ``/bin/sh``)."""
    script: Annotated[str, AfterValidator(check_script_text)]
    """The script's text (a script file named in the FDL has been read)."""
    cpu: Annotated[str, AfterValidator(_checked_quantity)] | None = None
    """CPU limit as a Kubernetes quantity (``'1.0'``, ``500m``); none when unset."""
    memory: Annotated[str, AfterValidator(_checked_quantity)] | None = None
    """Memory limit as a Kubernetes quantity (``1Gi``, ``512Mi``); none when unset."""
    ephemeral_storage_request: Annotated[str, AfterValidator(_checked_quantity)] | None = None
    """Ephemeral-storage request of the script's container (``2Gi``), as OSCAR sets it: a request only, no
    limit; none when unset."""
    enable_gpu: bool = False
    """Whether the job requests GPUs."""
    gpus: NonNegativeInt = 0
    """GPUs requested: ``bucketrun.gpus`` when ``enable_gpu``, default 1; always 0 without ``enable_gpu``."""
    image_pull_secrets: tuple[Annotated[str, AfterValidator(check_dns_subdomain)], ...] = ()
    """Names of Secrets used to pull the image."""
    variables: Variables = Field(default_factory=empty)
    """Environment variables for the script (``environment.variables``)."""
    secrets: Secrets = Field(default_factory=empty)
    """Secret environment variables (``environment.secrets``): rendered only as references to a Secret."""
    labels: Labels = Field(default_factory=empty)
    """Labels added to the job and its pod."""
    annotations: Annotations = Field(default_factory=empty)
    """Annotations added to the job and its pod."""
    log_level: Annotated[
        Annotated[str, AfterValidator(_upper_log_level)] | None, BeforeValidator(_unset_when_empty)
    ] = None
    """OSCAR's supervisor log level, upper-cased (``NOTSET``, ``DEBUG`` .. ``CRITICAL``); none when unset
    (the script's ``LOG_LEVEL`` is then ``INFO``, OSCAR's default)."""
    file_stage_in: bool = False
    """OSCAR's ``file_stage_in``: when true, stage-in downloads nothing and the script fetches its input
    itself, through the presigned GET URL in ``BUCKETRUN_INPUT_URL``."""
    mount: MountPath | None = None
    """OSCAR's ``mount``: a folder of bucketrun's own store the script reads, read-only, at
    ``/mnt/<bucket>/<folder>`` (staged in, bounded in size); none when unset."""
    inputs: tuple[InputPath, ...] = ()
    """Where new objects trigger the service; none means the service is never triggered."""
    outputs: tuple[OutputPath, ...] = ()
    """Where results are uploaded."""
    storage_providers: Annotated[
        Mapping[str, StorageProvider], PlainSerializer(dict, return_type=dict[str, StorageProvider])
    ] = Field(default_factory=empty)
    """The providers (other than ``minio.default``) that inputs and outputs use, by ``kind.id``."""
    options: BucketrunOptions = Field(default_factory=BucketrunOptions)
    """bucketrun's own options (the FDL's ``bucketrun:`` block)."""
    source: str = ""
    """The FDL file this came from (for messages and the ConfigMap's annotation)."""
    cluster_id: str | None = None
    """The OSCAR cluster id the FDL filed the service under (informational)."""

    @field_validator("variables", "secrets", mode="after")
    @classmethod
    def _unreserved(cls, value: Mapping[str, Any]) -> Mapping[str, Any]:
        for name in value:
            _check_variable_name(name)
        return value

    @field_validator("annotations", mode="after")
    @classmethod
    def _annotations_fit(cls, value: Mapping[str, str]) -> Mapping[str, str]:
        size = sum(
            len(key.encode()) + len(text.encode("utf-8", errors="surrogatepass"))
            for key, text in value.items()
        )
        if size > _MAX_ANNOTATION_BYTES:
            raise ValueError(f"annotations total {size} bytes; Kubernetes allows {_MAX_ANNOTATION_BYTES}")
        return value

    @field_validator("storage_providers", mode="after")
    @classmethod
    def _freeze_providers(cls, value: Mapping[str, StorageProvider]) -> Mapping[str, StorageProvider]:
        for key, provider in value.items():
            if key != provider.reference:
                raise ValueError(f"provider {provider.reference!r} is filed under {key!r}")
        return freeze(value)

    @model_validator(mode="before")
    @classmethod
    def _default_gpus(cls, data: Any) -> Any:
        # One GPU when enabled without a count: OSCAR's behaviour, so plain OSCAR FDLs keep it.
        if not isinstance(data, dict) or data.get("gpus") is not None:
            return data
        try:
            enabled = _BOOL.validate_python(data.get("enable_gpu", False))
        except ValidationError:
            return data  # the field reports the bad value
        return {**data, "gpus": 1} if enabled else data

    @model_validator(mode="after")
    def _consistent(self) -> ServiceDefinition:
        errors: list[tuple[str, str]] = []
        if self.enable_gpu and self.gpus == 0:
            errors.append(("bucketrun.gpus", "must be at least 1 when enable_gpu is true"))
        if not self.enable_gpu and self.gpus:
            errors.append(("bucketrun.gpus", "is set but enable_gpu is not true"))
        errors.extend(
            (f"environment.secrets.{name}", "is also defined under environment.variables")
            for name in sorted(set(self.variables).intersection(self.secrets))
        )
        errors.extend(self._provider_errors())
        for out_index, output in enumerate(self.outputs):
            for target in self.inputs:
                if output.may_trigger(target):
                    errors.append(
                        (
                            f"output[{out_index}].path",
                            f"{output.path!r} feeds this service's own input {target.path!r}: every "
                            "result would trigger it again (use another folder, or "
                            "prefix/suffix filters that separate them)",
                        )
                    )
        if errors:
            raise FieldValidationError(errors)
        return self

    def _provider_errors(self) -> list[tuple[str, str]]:
        errors: list[tuple[str, str]] = []
        used: set[str] = set()
        paths: list[tuple[str, InputPath | OutputPath]] = [
            *((f"input[{index}]", path) for index, path in enumerate(self.inputs)),
            *((f"output[{index}]", path) for index, path in enumerate(self.outputs)),
        ]
        for place, path in paths:
            if path.provider == DEFAULT_PROVIDER:
                continue
            used.add(path.provider)
            if path.provider not in self.storage_providers:
                errors.append(
                    (
                        f"{place}.storage_provider",
                        f"storage provider {path.provider!r} is not defined under storage_providers",
                    )
                )
        errors.extend(
            (f"storage_providers.{reference}", "is not used by any input or output of this service")
            for reference in sorted(set(self.storage_providers) - used)
        )
        return errors

    @property
    def triggerable(self) -> bool:
        """Whether any input can start a job (a service without inputs is synchronous-only in OSCAR)."""
        return bool(self.inputs)

    @cached_property
    def _hash(self) -> str:
        document = {
            "version": _HASH_VERSION,
            "name": self.name,
            "image": self.image,
            "script": self.script,
            "cpu": self.cpu,
            "memory": self.memory,
            # Only when set, so services without it keep the hashes (and ConfigMap names) they had.
            **(
                {"ephemeral_storage_request": self.ephemeral_storage_request}
                if self.ephemeral_storage_request is not None
                else {}
            ),
            "gpus": self.gpus,
            "image_pull_secrets": list(self.image_pull_secrets),
            "variables": dict(self.variables),
            # Names only: values go to a Secret, and a digest of a short secret would help guess it.
            "secrets": sorted(self.secrets),
            "labels": dict(self.labels),
            "annotations": dict(self.annotations),
            "log_level": self.log_level,
            **({"file_stage_in": True} if self.file_stage_in else {}),
            **({"mount": self.mount.model_dump()} if self.mount is not None else {}),
            "inputs": [path.model_dump() for path in self.inputs],
            "outputs": [path.model_dump() for path in self.outputs],
            "storage_providers": {
                key: provider.model_dump(exclude={"access_key", "secret_key"})
                for key, provider in self.storage_providers.items()
            },
            "options": self.options.model_dump(mode="json"),
        }
        canonical = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
        return hashlib.sha256(canonical.encode("ascii")).hexdigest()

    def content_hash(self) -> str:
        """SHA-256 hex digest of everything that shapes the job's pod (to name the per-service ConfigMap).

        Stable across processes and Python versions. ``source`` and ``cluster_id`` are left out (moving
        a file changes nothing the pod sees), and so are secret *values* (only their names): a changed
        secret value is picked up from the Secret, not through a new hash.
        """
        return self._hash

    def __hash__(self) -> int:
        """Hash by name and content, consistent with field-by-field equality."""
        return hash((self.name, self._hash))
