"""Where a service reads and writes: its input and output paths and the storage providers they name.

Provider references follow OSCAR: ``minio`` (= ``minio.default``, the MinIO whose notifications reach
bucketrun), ``minio.<id>`` and ``s3.<id>`` (defined under ``storage_providers``; outputs only: an
input there could never fire, see ``unsupported``). OSCAR's
``onedata``, ``webdav`` and ``rucio`` providers are refused: bucketrun stages data with presigned S3
requests and receives S3-style notifications only, so such an input could never fire and such an
output would silently receive nothing.

Key filters: ``prefix``/``suffix`` apply to the object key *relative to the folder*; a key passes when
it starts with any prefix (or there are none) and ends with any suffix (or there are none) -- exactly
OSCAR's FaaS Supervisor rule for outputs, which bucketrun also applies to inputs.
"""

from __future__ import annotations

import re
from typing import Annotated, Final, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from dispatcher.fdl.errors import shown
from dispatcher.fdl.names import check_bucket_name, check_provider_id
from job_templates.stager.contract import filters_accept

DEFAULT_PROVIDER: Final = "minio.default"
DEFAULT_EVENTS: Final = ("s3:ObjectCreated:*",)
SUPPORTED_PROVIDER_KINDS: Final = ("minio", "s3")
UNSUPPORTED_PROVIDER_KINDS: Final = ("onedata", "webdav", "rucio", "dcache")

# MinIO event names after which the object exists, so a job can stage it in. Accessed events would
# loop (the job's own download is an access) and removed ones leave nothing to download.
_TRIGGER_EVENTS: Final = {
    "ObjectCreated": (
        "Put",
        "Post",
        "Copy",
        "CompleteMultipartUpload",
        "PutRetention",
        "PutLegalHold",
        "PutTagging",
        "DeleteTagging",
    ),
    "ObjectRestore": ("Post", "Completed"),
}
_MAX_KEY_CHARS: Final = 1024  # S3's limit on a whole key
_CONTROL: Final = re.compile(r"[\x00-\x1f\x7f]")


def normalise_provider(reference: str) -> str:
    """``kind.id`` for an OSCAR provider reference (``minio`` -> ``minio.default``); ``ValueError`` if not."""
    kind, _, identifier = reference.partition(".")
    if kind in UNSUPPORTED_PROVIDER_KINDS:
        raise ValueError(
            f"storage provider {shown(reference)} is not supported: bucketrun reads and writes only "
            "MinIO/S3 storage (minio, minio.<id>, s3.<id>)"
        )
    if kind not in SUPPORTED_PROVIDER_KINDS:
        raise ValueError(
            f"unknown storage provider {shown(reference)} (expected minio, minio.<id> or s3.<id>)"
        )
    return f"{kind}.{check_provider_id(identifier or 'default')}"


def check_event_pattern(pattern: str) -> str:
    """A MinIO event-name pattern that can start a job: ``s3:ObjectCreated:*``, ``s3:ObjectCreated:Put``..."""
    parts = pattern.split(":")
    if len(parts) == 3 and parts[0] == "s3" and parts[1] in _TRIGGER_EVENTS:
        names = _TRIGGER_EVENTS[parts[1]]
        if parts[2] == "*" or parts[2] in names:
            return pattern
    allowed = ", ".join(f"s3:{category}:*" for category in _TRIGGER_EVENTS)
    raise ValueError(
        f"event {shown(pattern)} cannot trigger a job (allowed: {allowed} or one of their event names; "
        "accessed and removed events leave no new object to process)"
    )


def _check_folder(folder: str) -> str:
    if not folder:
        return folder
    if folder.startswith("/") or folder.endswith("/"):
        raise ValueError(f"folder {shown(folder)} must not start or end with '/'")
    if len(folder) > _MAX_KEY_CHARS or _CONTROL.search(folder):
        raise ValueError(f"folder {shown(folder)} is too long or contains control characters")
    if any(part in {"", ".", ".."} for part in folder.split("/")):
        raise ValueError(f"folder {shown(folder)} has an empty, '.' or '..' segment")
    return folder


def _check_filter(text: str) -> str:
    if not text:
        raise ValueError("an empty prefix/suffix matches every key; leave the list out instead")
    if len(text) > _MAX_KEY_CHARS or _CONTROL.search(text):
        raise ValueError(f"filter {shown(text)} is too long or contains control characters")
    return text


def _unique(items: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(items))


Provider = Annotated[str, AfterValidator(normalise_provider)]
Bucket = Annotated[str, AfterValidator(check_bucket_name)]
Folder = Annotated[str, AfterValidator(_check_folder)]
Filters = Annotated[tuple[Annotated[str, AfterValidator(_check_filter)], ...], AfterValidator(_unique)]
EventPatterns = Annotated[
    tuple[Annotated[str, AfterValidator(check_event_pattern)], ...],
    AfterValidator(_unique),
    Field(min_length=1),
]


def key_space(folder: str, prefix: tuple[str, ...]) -> tuple[str, ...]:
    """String prefixes covering every key a path with this folder and prefix filters can hold."""
    base = f"{folder}/" if folder else ""
    return tuple(base + item for item in prefix) if prefix else (base,)


def _prefixes_meet(left: tuple[str, ...], right: tuple[str, ...]) -> bool:
    # Two sets of strings "starting with a" and "starting with b" intersect iff one of a, b extends the other.
    return any(a.startswith(b) or b.startswith(a) for a in left for b in right)


def _suffixes_meet(left: tuple[str, ...], right: tuple[str, ...]) -> bool:
    return not left or not right or any(a.endswith(b) or b.endswith(a) for a in left for b in right)


class _Path(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)

    provider: Provider = DEFAULT_PROVIDER
    """Storage provider reference, normalised to ``kind.id`` (``minio`` becomes ``minio.default``)."""
    bucket: Bucket
    """S3 bucket name: the first segment of the FDL ``path``."""
    folder: Folder = ""
    """The rest of the FDL ``path``: ``""`` or ``"a/b"``, without leading or trailing slash."""
    prefix: Filters = ()
    """Accepted key prefixes, relative to ``folder``; empty accepts every key."""
    suffix: Filters = ()
    """Accepted key suffixes; empty accepts every key."""

    @property
    def path(self) -> str:
        """The OSCAR ``path`` this was read from: ``bucket`` or ``bucket/folder``."""
        return f"{self.bucket}/{self.folder}" if self.folder else self.bucket


class InputPath(_Path):
    """A location whose new objects trigger the service (satisfies routing's ``RoutableInput``)."""

    events: EventPatterns = DEFAULT_EVENTS
    """MinIO event-name patterns that trigger the service (the service's ``bucketrun.events``)."""

    def overlaps(self, bucket: str, prefix: str) -> bool:
        """Whether an object written under ``bucket``/``prefix`` could trigger this input.

        ``prefix`` is a folder (slashes at either end ignored; ``""`` is the whole bucket) compared at
        path boundaries: ``in`` does not overlap ``input``. The input's prefix filters narrow what it
        watches; its suffix filters are ignored, since a writer controls its own key endings.
        """
        if bucket != self.bucket:
            return False
        folder = prefix.strip("/")
        written = (f"{folder}/",) if folder else ("",)
        return _prefixes_meet(written, key_space(self.folder, self.prefix))


class OutputPath(_Path):
    """A location the job's results are uploaded to; ``prefix``/``suffix`` choose which results."""

    def accepts(self, relative_path: str) -> bool:
        """Whether a file at ``relative_path`` under ``TMP_OUTPUT_DIR`` is uploaded to this output."""
        return filters_accept(relative_path, self.prefix, self.suffix)

    def may_trigger(self, target: InputPath) -> bool:
        """Whether an object this output writes could trigger ``target`` (same storage, key spaces meet)."""
        return (
            self.provider == target.provider
            and self.bucket == target.bucket
            and _prefixes_meet(key_space(self.folder, self.prefix), key_space(target.folder, target.prefix))
            and _suffixes_meet(self.suffix, target.suffix)
        )


MOUNT_ROOT: Final = "/mnt"
"""Where OSCAR mounts a service's ``mount`` (grycap/oscar ``pkg/backends/resources/mount.go``: rclone mounts
the bucket path at ``/mnt/<path>``); bucketrun stages it there."""


def _mountable(provider: str) -> str:
    if provider != DEFAULT_PROVIDER:
        raise ValueError(
            f"storage provider {shown(provider)} cannot be mounted: only bucketrun's own store "
            f"(minio, i.e. {DEFAULT_PROVIDER}) can, as its objects are staged with its presigned URLs"
        )
    return provider


class MountPath(BaseModel):
    """OSCAR's ``mount``: a bucket path the script reads as a local directory, ``/mnt/<bucket>/<folder>``.

    bucketrun stages it in read-only (see ``job_templates/README.md``, "mount"), from its own store only.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)

    provider: Annotated[Provider, AfterValidator(_mountable)] = DEFAULT_PROVIDER
    """Storage provider reference: bucketrun's own store, ``minio.default``."""
    bucket: Bucket
    """S3 bucket name: the first segment of the FDL ``path``."""
    folder: Folder = ""
    """The rest of the FDL ``path`` (``""``: the whole bucket)."""

    @property
    def path(self) -> str:
        """The OSCAR ``path``: ``bucket`` or ``bucket/folder``."""
        return f"{self.bucket}/{self.folder}" if self.folder else self.bucket

    @property
    def key_prefix(self) -> str:
        """The keys staged: everything under the folder (the whole bucket without one)."""
        return f"{self.folder}/" if self.folder else ""

    @property
    def directory(self) -> str:
        """Where the script finds it: ``/mnt/<bucket>/<folder>``, as under OSCAR."""
        return f"{MOUNT_ROOT}/{self.path}"


class StorageProvider(BaseModel):
    """Credentials and endpoint of a MinIO or S3 storage other than bucketrun's own MinIO.

    The dispatcher uses them to presign the job's transfers; they are never logged (``SecretStr``) and
    never rendered into pods.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)

    kind: Literal["minio", "s3"]
    """Provider type, the part before the dot in ``minio.<id>``."""
    id: str
    """Provider id, the part after the dot."""
    endpoint: str | None = None
    """``http(s)://host[:port]`` of the server; required for MinIO, AWS's when absent for S3."""
    region: str | None = None
    """Region to sign requests for (``us-east-1`` when absent)."""
    access_key: SecretStr
    """Access key id."""
    secret_key: SecretStr
    """Secret access key."""
    verify: bool = True
    """Whether TLS certificates are verified."""

    @property
    def reference(self) -> str:
        """How inputs and outputs name this provider: ``kind.id``."""
        return f"{self.kind}.{self.id}"

    @field_validator("id")
    @classmethod
    def _check_id(cls, value: str) -> str:
        return check_provider_id(value)

    @field_validator("endpoint")
    @classmethod
    def _check_endpoint(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in {"http", "https"} or not parts.hostname:
            raise ValueError(f"endpoint {shown(value)} is not an http(s)://host[:port] URL")
        if parts.username is not None or parts.password is not None:
            raise ValueError("endpoint must not embed credentials; use access_key and secret_key")
        if parts.query or parts.fragment or _CONTROL.search(value):
            raise ValueError(f"endpoint {shown(value)} must not have a query, fragment or control characters")
        return value

    @field_validator("access_key", "secret_key")
    @classmethod
    def _check_key(cls, value: SecretStr) -> SecretStr:
        if not value.get_secret_value():
            raise ValueError("must not be empty")
        return value

    @model_validator(mode="after")
    def _check_complete(self) -> StorageProvider:
        if self.reference == DEFAULT_PROVIDER:
            raise ValueError(
                "'minio.default' is bucketrun's own MinIO (set in its settings); give this storage another id"
            )
        if self.kind == "minio" and self.endpoint is None:
            raise ValueError(f"MinIO provider {self.reference!r} needs an endpoint")
        return self
