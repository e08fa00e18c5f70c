"""The dispatcher's settings: environment variables prefixed ``BUCKETRUN_``, then an optional YAML file.

Groups nest with ``__``: ``BUCKETRUN_AMQP__URL`` sets ``amqp.url``, ``BUCKETRUN_AMQP__RETRY_TIERS='[1,5,30]'``
sets a list (JSON). ``BUCKETRUN_CONFIG`` names a YAML file with the same structure (``amqp: {url: ...}``);
a value set in the environment wins over the file, which wins over the defaults.

Credentials are ``SecretStr``: masked in ``repr``, in ``describe()`` and in validation errors. Load with
``Settings.load()``, which turns pydantic's errors into one ``SettingsError`` naming each bad setting by its
environment variable and its file key.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator, Mapping
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, ClassVar, Final, Literal, get_args
from urllib.parse import unquote, urlsplit, urlunsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PositiveFloat,
    PositiveInt,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

from dispatcher.domain.constants import (
    DEFAULT_CPU,
    DEFAULT_JOB_TIMEOUT,
    DEFAULT_MEMORY,
    DEFAULT_WATCH_READ_TIMEOUT,
    LOCAL_RUN_START_TIMEOUT,
)
from dispatcher.domain.quantity import positive_quantity
from dispatcher.fdl.errors import shown
from dispatcher.fdl.names import check_bucket_name
from job_templates.stager.contract import DEFAULT_RUN_START_TIMEOUT

ENV_PREFIX: Final = "BUCKETRUN_"
ENV_DELIMITER: Final = "__"
CONFIG_ENV: Final = "BUCKETRUN_CONFIG"
"""Environment variable naming the optional YAML settings file."""
MASK: Final = "**********"
MAX_MOUNT_OBJECTS: Final = 1000
"""Highest ``mount_max_objects``: with the manifest's own byte bound, a Job stays far below etcd's 1.5 MB."""
MAX_PRESIGN_SECONDS: Final = 7 * 24 * 3600
"""S3 refuses presigned requests valid for longer than seven days."""
_MAX_AMQP_NAME_BYTES: Final = 255  # AMQP 0-9-1 short string


def _amqp_name(value: str) -> str:
    if not value or len(value.encode("utf-8")) > _MAX_AMQP_NAME_BYTES:
        raise ValueError(f"AMQP name {shown(value)} must be 1-{_MAX_AMQP_NAME_BYTES} bytes")
    if any(ord(char) < 0x20 or ord(char) == 0x7F for char in value):
        raise ValueError(f"AMQP name {shown(value)} contains control characters")
    if value.startswith("amq."):
        raise ValueError(f"AMQP name {shown(value)} uses the broker's reserved prefix 'amq.'")
    return value


AmqpName = Annotated[str, AfterValidator(_amqp_name)]


def _printable(value: str) -> str:
    if any(ord(char) < 0x20 or ord(char) == 0x7F for char in value):
        raise ValueError(f"{shown(value)} holds a control character")
    return value


def _quantity(value: str) -> str:
    positive_quantity(value)  # ValueError naming the value when it is not a positive quantity
    return value


Quantity = Annotated[str, AfterValidator(_quantity)]
"""A positive Kubernetes quantity, kept as written."""


class _Group(BaseModel):
    model_config = ConfigDict(
        frozen=True, extra="forbid", hide_input_in_errors=True, use_attribute_docstrings=True
    )


class AmqpSettings(_Group):
    """RabbitMQ: where MinIO publishes, and the queues bucketrun declares (``dispatcher.adapters.amqp``)."""

    url: SecretStr = SecretStr("amqp://guest:guest@127.0.0.1:5672/")
    """Broker URL, ``amqp://`` or ``amqps://`` with user, password and vhost. Default: RabbitMQ's ``guest``
    account on loopback (the broker accepts ``guest`` from loopback only)."""
    exchange: AmqpName = "bucketrun.events"
    """Exchange MinIO publishes bucket notifications to (``MINIO_NOTIFY_AMQP_EXCHANGE``). Default
    ``bucketrun.events``."""
    exchange_type: Literal["fanout", "direct", "topic"] = "fanout"
    """Its type (``MINIO_NOTIFY_AMQP_EXCHANGE_TYPE``). Default ``fanout``: every event reaches the ingress
    queue whatever routing key MinIO uses."""
    exchange_durable: bool = True
    """Whether the exchange survives broker restarts; must equal MinIO's ``MINIO_NOTIFY_AMQP_DURABLE``
    (set it ``on``), or whichever side declares second is refused. Default true."""
    routing_key: str = Field(default="", max_length=_MAX_AMQP_NAME_BYTES)
    """Binding key of the ingress queue: MinIO's ``MINIO_NOTIFY_AMQP_ROUTING_KEY`` for a ``direct``
    exchange, a pattern (``#``) for ``topic``; ignored by ``fanout``. Default empty."""
    ingress_queue: AmqpName = "bucketrun.ingress"
    """Durable quorum queue bound to the exchange; the dispatcher consumes it. Default
    ``bucketrun.ingress``."""
    dead_letter_exchange: AmqpName = "bucketrun.dead-letter"
    """Fanout exchange receiving refused messages. Default ``bucketrun.dead-letter``."""
    dead_letter_queue: AmqpName = "bucketrun.dead-letter"
    """Durable quorum queue holding refused messages with their reason headers. Default
    ``bucketrun.dead-letter``."""
    retry_exchange: AmqpName = "bucketrun.retry"
    """Headers exchange that parks a message in the retry tier it names. Default ``bucketrun.retry``."""
    retry_queue_prefix: AmqpName = "bucketrun.retry"
    """Retry tier queues are named ``<prefix>.<seconds>s``. Default ``bucketrun.retry``."""
    service_queue_prefix: AmqpName = "bucketrun.service"
    """Per-service queues are named ``<prefix>.<service>``. Default ``bucketrun.service``."""
    retry_tiers: tuple[PositiveInt, ...] = Field(default=(1, 5, 30, 120), min_length=1, max_length=32)
    """Seconds a message waits in each retry tier (one queue each; sorted, duplicates dropped). Default
    ``(1, 5, 30, 120)``."""
    delivery_limit: PositiveInt = 5
    """``x-delivery-limit``: deliveries of one message (crashes, rejections) before the broker
    dead-letters it. Default 5."""
    prefetch: PositiveInt = Field(default=64, le=65535)
    """Unacknowledged messages a consumer holds at once (bounds in-flight work), and the most Jobs of one
    service created at once from batched messages (``dispatch.handoff_batch``). Default 64."""
    publish_timeout: PositiveFloat = 10.0
    """Seconds to wait for the broker to confirm a publish (including a reconnection). Default 10."""
    connect_timeout: PositiveFloat = 10.0
    """Seconds to wait for the first connection. Default 10."""
    reconnect_interval: PositiveFloat = 1.0
    """Seconds between reconnection attempts after the connection dropped. Default 1."""

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: SecretStr) -> SecretStr:
        parts = urlsplit(value.get_secret_value())
        if parts.scheme not in {"amqp", "amqps"} or not parts.hostname:
            # Never echo the URL: it holds the password.
            raise ValueError("must be an amqp:// or amqps:// URL with a host")
        return value

    @field_validator("retry_tiers")
    @classmethod
    def _sort_tiers(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        return tuple(sorted(set(value)))

    @model_validator(mode="after")
    def _distinct_names(self) -> AmqpSettings:
        exchanges = (self.exchange, self.dead_letter_exchange, self.retry_exchange)
        if len(set(exchanges)) != len(exchanges):
            raise ValueError(f"exchange, dead_letter_exchange and retry_exchange must differ: {exchanges}")
        queues = (self.ingress_queue, self.dead_letter_queue)
        prefixes = (self.retry_queue_prefix, self.service_queue_prefix)
        if self.ingress_queue == self.dead_letter_queue or prefixes[0] == prefixes[1]:
            raise ValueError(
                f"ingress_queue, dead_letter_queue and the queue prefixes must differ: {queues + prefixes}"
            )
        if any(queue.startswith(f"{prefix}.") for queue in queues for prefix in prefixes):
            raise ValueError(f"queue names {queues} must not start with a queue prefix {prefixes}")
        return self

    def redacted_url(self) -> str:
        """The broker URL with its password masked: safe for logs."""
        return redact_url(self.url.get_secret_value())


class StorageSettings(_Group):
    """bucketrun's own MinIO/S3 (provider ``minio.default``): where events come from and results go."""

    endpoint: str = "localhost:9000"
    """``host[:port]`` of the S3 API (no scheme: see ``secure``). Default ``localhost:9000``."""
    access_key: SecretStr
    """Access key id used to presign the jobs' transfers. Required."""
    secret_key: SecretStr
    """Secret access key. Required."""
    region: str = Field(default="us-east-1", pattern=r"^[a-z0-9](?:[a-z0-9_-]{0,61}[a-z0-9])?$")
    """Region requests are signed for; set explicitly so presigning never asks the server. Default
    ``us-east-1`` (MinIO's default)."""
    secure: bool = False
    """Whether to use HTTPS (TLS certificates are verified). Default false (plain HTTP, as a
    cluster-internal MinIO usually serves)."""
    grant_margin: PositiveInt = Field(default=6 * 3600, le=MAX_PRESIGN_SECONDS)
    """Seconds a job's presigned URLs stay valid beyond the service's timeout (covers time queued and
    staging). Default 21600 (6 h); the total is capped at 7 days."""
    max_upload_bytes: PositiveInt = 5 * 1024**3
    """Largest file a job may upload to an output (POST policy ``content-length-range``). Default 5 GiB,
    S3's limit for one POST."""
    request_timeout: PositiveFloat = 30.0
    """Seconds to wait for the storage server to connect or answer. Default 30."""
    mount_max_bytes: PositiveInt = 2 * 1024**3
    """Largest total size, in bytes, of a service's ``mount`` folder: a Job whose folder holds more fails
    at stage-in, saying so, and downloads nothing. Default 2 GiB."""
    mount_max_objects: int = Field(default=100, ge=1, le=MAX_MOUNT_OBJECTS)
    """Most objects a ``mount`` folder may hold (one presigned GET each goes into the Job); more fail the
    Job at stage-in. Default 100, at most 1000."""
    records_bucket: str = "bucketrun-records"
    """Bucket of job records (status and logs); never a service input. Default ``bucketrun-records``."""
    records_prefix: str = "records/"
    """Key prefix of job records in that bucket. Default ``records/``."""
    notify_arn: str = Field(default="arn:minio:sqs::_:amqp", min_length=1, max_length=256)
    """ARN of MinIO's AMQP notification target that ``bucketrun services apply`` subscribes input paths
    to: ``arn:minio:sqs::<ID>:amqp``, where ``<ID>`` is the suffix of the ``MINIO_NOTIFY_AMQP_*_<ID>``
    variables (``_`` for the unsuffixed ``MINIO_NOTIFY_AMQP_ENABLE``). Default ``arn:minio:sqs::_:amqp``."""

    @field_validator("notify_arn")
    @classmethod
    def _check_notify_arn(cls, value: str) -> str:
        parts = value.split(":")
        if len(parts) != 6 or parts[0] != "arn" or not all(parts[i] for i in (1, 2, 5)):
            raise ValueError(f"{shown(value)} is not an ARN (arn:partition:service:region:account:resource)")
        if any(char.isspace() or ord(char) < 0x20 or ord(char) == 0x7F for char in value):
            raise ValueError(f"ARN {shown(value)} contains spaces or control characters")
        return value

    @field_validator("endpoint")
    @classmethod
    def _check_endpoint(cls, value: str) -> str:
        parts = urlsplit(f"//{value}")
        if "://" in value or "/" in value or not parts.hostname or parts.username or parts.password:
            raise ValueError(f"endpoint {shown(value)} must be host[:port]; choose HTTPS with 'secure'")
        try:
            _ = parts.port
        except ValueError as error:
            raise ValueError(f"endpoint {shown(value)} has an invalid port") from error
        return value

    @field_validator("records_bucket")
    @classmethod
    def _check_records_bucket(cls, value: str) -> str:
        return check_bucket_name(value)

    def grant_lifetime(self, timeout_seconds: int | None) -> timedelta:
        """How long a job's presigned URLs must live: its timeout plus the margin, at most 7 days."""
        return timedelta(seconds=min(MAX_PRESIGN_SECONDS, (timeout_seconds or 0) + self.grant_margin))


class ClusterSettings(_Group):
    """Where Jobs are created."""

    executor: Literal["kubernetes", "local"] = "local"
    """``kubernetes`` creates Jobs through the API; ``local`` runs each rendered pod's containers as
    local processes (the embedded default). Default ``local``."""
    namespace: str = Field(default="bucketrun", min_length=1, max_length=63)
    """Namespace of the Jobs and ConfigMaps. Default ``bucketrun``."""
    kubeconfig: Path | None = None
    """Kubeconfig file to use. Default none: the in-cluster service account when running in a pod
    (``KUBERNETES_SERVICE_HOST`` set), otherwise ``$KUBECONFIG`` or ``~/.kube/config``."""
    context: str | None = None
    """Kubeconfig context; default: the file's current context."""
    api_write_rate: PositiveFloat = 20.0
    """API writes per second allowed on average (token bucket refill rate). Default 20."""
    api_write_burst: PositiveInt = 40
    """API writes allowed at once (token bucket size). Default 40."""
    request_timeout: PositiveFloat = 10.0
    """Seconds to wait for one API request. Default 10."""
    watch_read_timeout: PositiveFloat = DEFAULT_WATCH_READ_TIMEOUT
    """Seconds a Job watch stream may send nothing, not even a bookmark, before its connection is taken
    for dead (half-open) and the watch reopened from the last resourceVersion. The API server sends a
    bookmark about every 60 s, so keep it above that. Default 130: two bookmarks missed, plus a margin."""
    stager_image: str = Field(default="ghcr.io/bucketrun/bucketrun:latest", min_length=1)
    """Image of the stage-in/stage-out containers (bucketrun's own). Default
    ``ghcr.io/bucketrun/bucketrun:latest``."""
    template_dir: Path | None = None
    """Directory whose templates override ``job_templates/`` file by file. Default none."""
    default_cpu: Quantity = DEFAULT_CPU
    """CPU, in cores as a Kubernetes quantity (``0.5``, ``500m``), that the script container of a service
    without ``cpu`` requests and is limited to. Default ``0.2``, OSCAR's default."""
    default_memory: Quantity = DEFAULT_MEMORY
    """Memory, in bytes as a Kubernetes quantity (``512Mi``, ``1Gi``), that the script container of a
    service without ``memory`` requests and is limited to. Default ``256Mi``, OSCAR's default."""
    default_timeout: PositiveInt = DEFAULT_JOB_TIMEOUT
    """Seconds a Job of a service without ``bucketrun.timeout`` may stay active (its
    ``activeDeadlineSeconds``): then Kubernetes fails it, whatever held it (a script that never ends, a pod
    that never starts), and its ``max_concurrent_jobs`` slot comes back. Its presigned URLs live this long
    plus ``grant_margin``. Default 86400 (24 h)."""
    run_start_timeout: PositiveInt | None = None
    """Seconds stage-out waits for the run container to start (its wrapper writes ``run.pid``) before it
    gives up: exit code 4, nothing uploaded. Default 900 (15 min: an image pull, with the kubelet's
    retries) with the ``kubernetes`` executor, 60 with the ``local`` one (nothing to pull)."""
    service_base_path: Annotated[str, AfterValidator(_printable)] | None = Field(
        default=None, max_length=1024
    )
    """What the script sees as ``OSCAR_SERVICE_BASE_PATH``: the path (or URL) under which an API in front of
    bucketrun serves each service, ``{service}`` standing for the service's name (OSCAR's own layout is
    ``/system/services/{service}/exposed``). Default none: the variable is empty, as OSCAR leaves it for
    every service it does not expose (bucketrun exposes none)."""
    local_state_dir: Path = Path("bucketrun-state")
    """``local`` executor: where Job claims, status and logs are kept (survives restarts). Default
    ``./bucketrun-state``."""
    local_max_running: PositiveInt = 4
    """``local`` executor: Jobs run at once; more wait in creation order. Default 4."""

    def run_start_bound(self) -> int:
        """``run_start_timeout``, or the executor's default when it is not set."""
        if self.run_start_timeout is not None:
            return self.run_start_timeout
        return LOCAL_RUN_START_TIMEOUT if self.executor == "local" else DEFAULT_RUN_START_TIMEOUT


def _cluster_id(value: str) -> str:
    if not value.strip() or any(ord(char) < 0x20 or ord(char) == 0x7F for char in value):
        raise ValueError(f"cluster id {shown(value)} must be non-blank text without control characters")
    return value


class ServicesSettings(_Group):
    """Where service definitions (OSCAR FDL) are read from."""

    paths: tuple[Path, ...] = ()
    """FDL files or directories of ``*.yaml``/``*.yml`` (in Kubernetes, the mounted Secret
    ``bucketrun-services``: an FDL may hold secret values). Default none."""
    reload_interval: PositiveFloat = 5.0
    """Seconds between checks for changed definitions. Default 5."""
    cluster: Annotated[str, AfterValidator(_cluster_id)] | None = None
    """The OSCAR cluster id whose definitions bucketrun runs where an FDL defines a service for several
    clusters (the same name under several ``functions: oscar: - <cluster-id>:`` entries, or bare files'
    ``cluster_id``): that service's definition filed under this id is used, the others are set aside
    unread. Services defined once load whatever cluster they are filed under, as ``oscar-cli apply
    --cluster`` applies every entry. ``--cluster`` of ``bucketrun services``, ``render`` and ``events
    inspect`` overrides it. Default none: a service defined for several clusters is an error naming them."""


class DispatchSettings(_Group):
    """How events become Jobs: retries and shutdown."""

    retry_base_delay: PositiveFloat = 1.0
    """Seconds of the first retry's backoff ceiling (doubled each attempt, full jitter). Default 1."""
    max_retry_delay: PositiveFloat = 120.0
    """Cap of the backoff delay in seconds (a longer Retry-After is still honoured). Default 120."""
    drain_timeout: PositiveFloat = 25.0
    """Seconds SIGTERM waits for in-flight creates before cancelling them; keep it below the pod's
    ``terminationGracePeriodSeconds``. Default 25."""
    max_message_bytes: PositiveInt = 1 << 20
    """Largest message body parsed; larger ones are dead-lettered as ``too-large``. Default 1 MiB."""
    direct_creates: int | None = Field(default=None, ge=0, le=4096)
    """Jobs the ingress consumer may create itself at once, for a message whose one event routes to one
    service without ``max_concurrent_jobs``: the event skips its service queue (one publish and one
    consume less, about a quarter of the dispatcher's CPU per event). Beyond this many in flight, and
    always for capped services, events go through their service queues, so one service's flood or slow
    creates never hold the ingress for the others. 0: every event goes through its service queue. Unset
    (the default): 16 while more than one service is loaded; while only one is, no bound but the ingress
    prefetch, since no other service's event can wait behind its backlog."""
    handoff_batch: int = Field(default=64, ge=1, le=1000)
    """Most events of one service handed to its queue in one message. While a publish to a service queue
    awaits the broker's confirm, the next events for that service gather and then go together: the
    publish, consume and ack are paid once per message (each record still gets its own Job, outcome and
    dead letter). 1: one message per event. Capped services always get one message per event. Default 64."""


def _default_identity() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


class WatcherSettings(_Group):
    """The watcher: completion events, leader election and job records."""

    results_exchange: AmqpName = "bucketrun.results"
    """Topic exchange completion events are published to, with the service name as routing key. Default
    ``bucketrun.results``."""
    lease_name: str = Field(default="bucketrun-watcher", pattern=r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
    """Name of the ``coordination.k8s.io/v1`` Lease the watcher replicas elect their leader with. Default
    ``bucketrun-watcher``."""
    lease_duration: PositiveFloat = 15.0
    """Seconds a leader's Lease is valid without renewal; a standby takes over once it has seen it
    unchanged for that long. Default 15."""
    lease_renew_period: PositiveFloat = 5.0
    """Seconds between the leader's renewals (and between a standby's looks at the Lease). Default 5."""
    identity: str = Field(default_factory=_default_identity, min_length=1, max_length=253)
    """This replica's name in the Lease. Default ``<hostname>-<pid>``."""
    log_tail_lines: PositiveInt = Field(default=2000, le=100_000)
    """Last lines of each container's log kept in the job record. Default 2000."""
    log_read_timeout: PositiveFloat = Field(default=30.0, le=3600)
    """Seconds the watcher spends reading one container's log, retries of 5xx, 429 and timeouts
    included: a log still unread then (its node is dead, say) is left out of the job record, whose
    ``logs_missing`` says why, and the record is written without it. Default 30."""
    concurrency: PositiveInt = Field(default=8, le=256)
    """Finished Jobs recorded at once. Default 8."""
    watch_timeout: PositiveInt = 300
    """Seconds a Job watch stream lasts before it is renewed (randomised up to twice that). Default 300."""
    stuck_grace: PositiveFloat = 300.0
    """Seconds a pod may show that it can never start (a container waiting with ``ErrImagePull``,
    ``ImagePullBackOff``, ``InvalidImageName``, ``ErrImageNeverPull``, ``CreateContainerConfigError`` or
    ``CreateContainerError``, or ``PodScheduled=False`` with reason ``Unschedulable`` where the scheduler
    says that no node could take it even empty) before the watcher records its Job with that reason and
    deletes it, which frees its ``max_concurrent_jobs`` slot. Kubernetes keeps such a pod Pending until
    the Job's deadline. A pod waiting for a busy node's capacity is left waiting. Also how long a Job
    may go on being refused its pod (the Job controller's ``FailedCreate`` Events: PodSecurity, a
    missing ServiceAccount, a quota its pod can never fit; not a quota that may free) before it is
    recorded as ``pod-create-refused`` and deleted. Raise it where a cluster autoscaler adds nodes for
    unschedulable pods (a GPU node can take 10 minutes). Default 300 (5 min)."""
    stuck_interval: PositiveFloat = 30.0
    """Seconds between two looks at bucketrun's Pending pods, and at the Jobs refused a pod, for ones
    that can never start. Default 30."""
    records_retention_days: int = Field(default=30, ge=0, le=36_500)
    """Days a job record (``status.json``, logs, ``outputs.json``) is kept after it was written; 0 keeps
    records for ever. The watcher sets it at start as an S3 lifecycle rule on the records prefix (ID
    ``bucketrun-records-retention``; the bucket's other rules are kept), or removes that rule for 0. Where
    the store refuses lifecycle configuration, where ``records_retention_method`` is ``sweep``, or where
    the records prefix is empty (a rule would cover the whole bucket), the leading watcher deletes
    expired records itself instead. Default 30."""
    records_retention_method: Literal["auto", "sweep"] = "auto"
    """How records expire: ``auto``, the lifecycle rule where the store takes it, else the watcher's sweep;
    ``sweep``, always the watcher's sweep, and the bucket's lifecycle configuration is never touched (for
    a bucket whose lifecycle another tool owns). Default ``auto``."""
    records_retention_interval: PositiveFloat = 300.0
    """Seconds between two passes of the watcher's sweep of expired records. Default 300."""
    records_retention_batch: PositiveInt = Field(default=5000, le=100_000)
    """Keys of the records location one sweep pass looks at: the next pass goes on after the last one,
    and the sweep starts over once it reached the end. A pass costs at most one listing request and one
    delete request per 1,000 keys. Default 5000 (with the default interval, 1.4 million keys a day)."""

    @model_validator(mode="after")
    def _renew_within_lease(self) -> WatcherSettings:
        if self.lease_renew_period >= self.lease_duration:
            raise ValueError(
                f"lease_renew_period ({self.lease_renew_period} s) must be shorter than lease_duration "
                f"({self.lease_duration} s), or the Lease expires between renewals"
            )
        return self


class PollerSettings(_Group):
    """The bucket poller (``bucketrun poll``): MinIO-format events for S3 stores without notifications."""

    interval: PositiveFloat = 10.0
    """Seconds between two listings of every service input path. Default 10."""
    state_file: Path = Path("bucketrun-poller.sqlite3")
    """SQLite file remembering the objects already announced (key, eTag, LastModified), so a restart
    emits nothing twice. Default ``./bucketrun-poller.sqlite3``."""
    batch_size: PositiveInt = Field(default=64, le=10_000)
    """Events published at once, then recorded in one durable commit. Default 64."""


class MetricsSettings(_Group):
    """The Prometheus endpoint."""

    host: str = "0.0.0.0"  # noqa: S104 -- Prometheus scrapes the pod's IP, so listen on every interface
    """Address to listen on. Default ``0.0.0.0`` (all interfaces)."""
    port: int = Field(default=8000, ge=0, le=65535)
    """TCP port of ``/metrics``, ``/healthz`` and ``/readyz``; 0 picks a free one. Default 8000."""
    queue_sample_interval: float = Field(default=5.0, gt=0, le=3600)
    """Seconds between two samples of the queues' depths (``bucketrun_queue_messages``). Default 5."""


class LogSettings(_Group):
    """What the processes log and how."""

    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    """Lowest level written. Libraries (aio-pika, aiohttp, ...) log from WARNING up unless DEBUG. Default
    ``INFO``."""
    format: Literal["auto", "json", "console"] = "auto"
    """``json``: one JSON object per line (for log collectors); ``console``: aligned, coloured lines;
    ``auto``: console on a terminal, JSON otherwise. Default ``auto``."""

    @property
    def json_lines(self) -> bool | None:
        """True/False for a forced format, None to decide by the terminal."""
        return None if self.format == "auto" else self.format == "json"


class SettingsError(ValueError):
    """Settings that cannot be used; the message names each bad setting's variable and file key."""


class Settings(BaseSettings):
    """Everything the dispatcher reads at start, grouped as in ``describe()``."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter=ENV_DELIMITER,
        extra="forbid",
        frozen=True,
        hide_input_in_errors=True,
        case_sensitive=False,
    )
    _groups: ClassVar[tuple[str, ...]] = (
        "amqp",
        "storage",
        "cluster",
        "services",
        "dispatch",
        "watcher",
        "poller",
        "metrics",
        "log",
    )

    amqp: AmqpSettings
    """RabbitMQ connection and topology."""
    storage: StorageSettings
    """bucketrun's own MinIO/S3."""
    cluster: ClusterSettings
    """Where Jobs run."""
    services: ServicesSettings
    """Service definitions."""
    dispatch: DispatchSettings
    """Retries and draining."""
    watcher: WatcherSettings
    """Completion events, leader election, job records."""
    poller: PollerSettings
    """The bucket poller."""
    metrics: MetricsSettings
    """Prometheus endpoint."""
    log: LogSettings
    """Log level and format."""

    @model_validator(mode="before")
    @classmethod
    def _every_group(cls, data: Any) -> Any:
        # A group nobody set is validated as empty, so a missing required field is reported by its own
        # name (storage.access_key) instead of as a missing group.
        if isinstance(data, dict):
            return {**{group: {} for group in cls._groups}, **data}
        return data

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Explicit arguments, then the environment, then the file named by ``BUCKETRUN_CONFIG``."""
        del dotenv_settings, file_secret_settings  # not used: one file format, one place
        config = os.environ.get(CONFIG_ENV)
        if not config:
            return (init_settings, env_settings)
        path = Path(config)
        if not path.is_file():
            raise SettingsError(f"{CONFIG_ENV} names {shown(config)}, which is not a readable file")
        return (init_settings, env_settings, YamlConfigSettingsSource(settings_cls, yaml_file=path))

    @classmethod
    def load(cls, **overrides: Any) -> Settings:
        """Read the settings (``overrides`` win over everything); ``SettingsError`` names every bad value."""
        try:
            return cls(**overrides)
        except ValidationError as error:
            raise SettingsError(explain(error)) from None

    def describe(self) -> dict[str, Any]:
        """The effective settings as JSON-able data, secrets masked (the broker URL keeps its host)."""
        described = self.model_dump(mode="json")
        described["amqp"]["url"] = self.amqp.redacted_url()
        return described

    def secret_values(self) -> tuple[str, ...]:
        """Every credential these settings hold, as the log redactor must scrub them: each secret field's
        value, and the broker URL's password (raw and percent-decoded)."""
        values: set[str] = set()
        for path in _SECRETS:
            node: Any = self
            for part in path:
                node = getattr(node, part, None)
            if isinstance(node, SecretStr):
                values.add(node.get_secret_value())
        password = urlsplit(self.amqp.url.get_secret_value()).password
        if password:
            values.update({password, unquote(password)})
        return tuple(value for value in values if value)


class _ServicesOnly(BaseSettings):
    """The ``services`` group alone, from the same environment and file as ``Settings``."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter=ENV_DELIMITER,
        extra="ignore",  # the other groups: not read, so not required
        frozen=True,
        hide_input_in_errors=True,
        case_sensitive=False,
    )

    services: ServicesSettings = Field(default_factory=ServicesSettings)
    # Settings' own classmethod, bound here to this class: the same sources, read the same way.
    settings_customise_sources = Settings.__dict__["settings_customise_sources"]


def load_services_settings() -> ServicesSettings:
    """Only the ``services`` group (``BUCKETRUN_SERVICES__*``, the ``BUCKETRUN_CONFIG`` file's ``services:``),
    for commands that contact no server and so need none of the store's required settings.
    ``SettingsError`` names a bad value."""
    try:
        return _ServicesOnly().services
    except ValidationError as error:
        raise SettingsError(explain(error)) from None


def redact_url(url: str) -> str:
    """``url`` with the password of its user part replaced by a mask."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{parts.username or ''}:{MASK}@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def env_name(loc: tuple[int | str, ...]) -> str:
    """The environment variable that sets the setting at ``loc`` (list indices are part of the value)."""
    return ENV_PREFIX + ENV_DELIMITER.join(_field_path(loc)).upper()


def explain(error: ValidationError) -> str:
    """One line per problem: ``BUCKETRUN_AMQP__PREFETCH (amqp.prefetch): <why>; got '0'``."""
    lines = []
    for problem in error.errors():
        loc = tuple(problem["loc"])
        path = _field_path(loc)
        where = f"{env_name(loc)} (key {'.'.join(path)} in the {CONFIG_ENV} file)"
        if problem["type"] == "missing":
            lines.append(f"{where}: required but not set")
            continue
        line = f"{where}: {problem['msg'].removeprefix('Value error, ')}"
        if problem["type"] != "extra_forbidden" and not _is_secret(path):
            line += f"; got {shown(problem.get('input'))}"
        lines.append(line)
    return "invalid settings:\n  " + "\n  ".join(lines)


def _field_path(loc: tuple[int | str, ...]) -> tuple[str, ...]:
    # Stops at the first list index: a list is one variable, set as JSON.
    path: list[str] = []
    for part in loc:
        if not isinstance(part, str):
            break
        path.append(part)
    return tuple(path)


def secret_fields(
    model: type[BaseModel] = Settings, prefix: tuple[str, ...] = ()
) -> Iterator[tuple[str, ...]]:
    """Paths of every ``SecretStr`` field under ``model``."""
    for name, info in model.model_fields.items():
        annotation = info.annotation
        options = (annotation, *get_args(annotation))
        if SecretStr in options:
            yield (*prefix, name)
        for option in options:
            if isinstance(option, type) and issubclass(option, BaseModel):
                yield from secret_fields(option, (*prefix, name))


_SECRETS: Final = frozenset(secret_fields())


def _is_secret(path: tuple[str, ...]) -> bool:
    return any(path[: len(secret)] == secret for secret in _SECRETS)


def describe_lines(described: Mapping[str, Any], prefix: str = "") -> Iterator[str]:
    """``key.path = value`` lines of ``Settings.describe()``, for a terminal or a start-up log."""
    for key, value in described.items():
        if isinstance(value, Mapping):
            yield from describe_lines(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key} = {value!r}"


def environment_reference() -> Iterator[tuple[str, str]]:
    """(environment variable, first line of its documentation) for every setting, in group order."""
    for group, field in Settings.model_fields.items():
        model = field.annotation
        if not isinstance(model, type) or not issubclass(model, BaseModel):
            continue
        for name, sub in model.model_fields.items():
            doc = (sub.description or "").split(". ")[0].replace("\n", " ").rstrip(".")
            yield f"{ENV_PREFIX}{group.upper()}{ENV_DELIMITER}{name.upper()}", doc


def settings_environment(settings: Settings) -> dict[str, str]:
    """The ``BUCKETRUN_*`` variables whose ``Settings.load()`` equals *settings* (unset where None): how
    a process configures a child (``bucketrun demo`` its API, the tests a dispatcher), as a pod is."""
    variables: dict[str, str] = {}
    for group_name in type(settings).model_fields:
        group = getattr(settings, group_name)
        if not isinstance(group, BaseModel):
            continue
        for name in type(group).model_fields:
            value = getattr(group, name)
            if value is not None:
                variable = f"{ENV_PREFIX}{group_name}{ENV_DELIMITER}{name}".upper()
                variables[variable] = _environment_value(value)
    return variables


def _environment_value(value: object) -> str:
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple | list):
        # pydantic-settings reads a complex value from one variable as JSON.
        return json.dumps([str(item) if isinstance(item, Path) else item for item in value])
    return str(value)
