"""The storage adapter: presigned, expiring grants for a job's transfers, and a few object helpers.

The only module of ``dispatcher`` that imports ``minio``. Every client is built with an explicit region,
so presigning is pure computation (no request to ask the server for a bucket's region); the SDK builds and
checks the URLs, `sigv4` signs them (the signing key made once a day, not on every call). The few
calls that do talk to the server run in a worker thread (the SDK blocks) and translate the SDK's
exceptions into ``TransientError`` / ``PermanentError``, raised ``from`` the original.

A job never gets a credential, only:

- a presigned GET for exactly the object (and version) that triggered it;
- per output path, a presigned POST policy: one bucket, keys under the output's folder, a size
  bound, and the same expiry. The form fields include the access key *id* inside the signed
  credential scope (S3 needs it to find the key); the secret key never leaves this process;
- a presigned PUT of exactly one key, the Job's outputs manifest in its record folder
  (``dispatcher.fdl.records_location``), where stage-out lists everything it uploaded.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final, TypeVar
from urllib.parse import urlsplit, urlunsplit

import urllib3
from minio import Minio
from minio.deleteobjects import DeleteError, DeleteObject
from minio.error import InvalidResponseError, MinioException, S3Error, ServerError
from minio.helpers import BaseURL, check_bucket_name, check_object_name
from minio.notificationconfig import (
    CloudFuncConfig,
    CommonConfig,
    NotificationConfig,
    PrefixFilterRule,
    QueueConfig,
    SuffixFilterRule,
    TopicConfig,
)

from dispatcher.adapters.s3 import lifecycle, sigv4
from dispatcher.adapters.s3.lifecycle import ExpirationRule
from dispatcher.adapters.s3.notifications import NotificationRule
from dispatcher.domain.errors import PermanentError, TransientError
from dispatcher.domain.record import outputs_manifest_key
from dispatcher.domain.timestamps import rfc3339
from dispatcher.fdl import OutputPath, ServiceDefinition
from dispatcher.fdl.storage import DEFAULT_PROVIDER, StorageProvider
from dispatcher.rendering.context import OutputGrant, StagingGrants
from dispatcher.runtime.settings import StorageSettings

_T = TypeVar("_T")

_NOT_FOUND: Final = frozenset({"NoSuchBucket", "NoSuchKey", "NoSuchVersion", "NoSuchUpload"})
_DENIED: Final = frozenset(
    {
        "AccessDenied",
        "AllAccessDisabled",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "AccountProblem",
        "InvalidToken",
        "ExpiredToken",
    }
)
# 4xx answers that still mean "try again later": a timeout, throttling, a busy server. The in-pod
# stager keeps its own copy (job_templates/stager/transfer.py) by design, since it imports nothing of
# bucketrun; tests/unit/test_storage.py checks that everything it retries is retried here too. Only
# this side adds OperationAborted, S3's answer to conflicting bucket configuration calls, which the
# stager never makes.
_TRANSIENT_STATUSES: Final = frozenset({408, 429})
_TRANSIENT_CODES: Final = frozenset(
    {"SlowDown", "RequestTimeout", "ServiceUnavailable", "InternalError", "Busy", "OperationAborted"}
)
_LIST_LIMIT: Final = 10_000
# What a store answers to a notification configuration it cannot hold: moto and AWS refuse MinIO ARNs
# ("The ARN is not well formed"), MinIO refuses a target it has not configured, other S3 servers may
# not implement notifications at all.
_NOTIFICATION_REFUSED: Final = frozenset({"InvalidArgument", "NotImplemented", "MethodNotAllowed"})
_AWS_ENDPOINT: Final = "https://s3.amazonaws.com"
# What a store answers to lifecycle configuration it will not take or show: not implemented (some S3
# servers), not allowed (a gateway, or the key's policy denies s3:PutLifecycleConfiguration).
_LIFECYCLE_REFUSED: Final = frozenset(
    {"NotImplemented", "MethodNotAllowed", "AccessDenied", "InvalidRequest"}
)


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    """What the server says about one stored object."""

    bucket: str
    key: str
    size: int | None
    etag: str | None
    version_id: str | None
    content_type: str | None = None
    last_modified: datetime | None = None


@dataclass(frozen=True, slots=True)
class _Target:
    """One S3 server as bucketrun signs for it: a client, the base URL to build presigned URLs with, and
    its signing keys (presigning is `sigv4`'s, the SDK only builds and checks the URLs)."""

    client: Minio
    base_url: BaseURL
    region: str
    keys: sigv4.SigningKeys


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _pool(*, timeout: float, verify: bool) -> urllib3.PoolManager:
    # bucketrun retries at its own level (with backoff and the broker's retry tiers), so the SDK's
    # own 5x retry of 5xx answers is replaced by a single retry of a dropped connection. Calls run on
    # asyncio's default executor (at most 32 threads), so up to 32 connections per host are kept.
    return urllib3.PoolManager(
        timeout=urllib3.Timeout(connect=timeout, read=timeout),
        maxsize=32,
        cert_reqs="CERT_REQUIRED" if verify else "CERT_NONE",
        ca_certs=os.environ.get("SSL_CERT_FILE"),  # else the system's trust store
        retries=urllib3.Retry(total=1, read=0, status=0, redirect=0, backoff_factor=0.1),
    )


def _target(
    *, url: str, access_key: str, secret_key: str, region: str, verify: bool, timeout: float
) -> _Target:
    parts = urlsplit(url)
    client = Minio(
        parts.netloc,
        access_key=access_key,
        secret_key=secret_key,
        region=region,
        secure=parts.scheme == "https",
        http_client=_pool(timeout=timeout, verify=verify),
        cert_check=verify,
    )
    base_url = BaseURL(url, region)
    return _Target(client, base_url, region, sigv4.SigningKeys(access_key, secret_key, region))


def _settings_target(settings: StorageSettings) -> _Target:
    return _target(
        url=f"{'https' if settings.secure else 'http'}://{settings.endpoint}",
        access_key=settings.access_key.get_secret_value(),
        secret_key=settings.secret_key.get_secret_value(),
        region=settings.region,
        verify=True,
        timeout=settings.request_timeout,
    )


def _provider_target(provider: StorageProvider, timeout: float) -> _Target:
    endpoint = provider.endpoint or _AWS_ENDPOINT
    # Keep only scheme://host[:port]: the SDK takes no path (the model refuses query and fragment).
    parts = urlsplit(endpoint)
    return _target(
        url=urlunsplit((parts.scheme, parts.netloc, "", "", "")),
        access_key=provider.access_key.get_secret_value(),
        secret_key=provider.secret_key.get_secret_value(),
        region=provider.region or "us-east-1",
        verify=provider.verify,
        timeout=timeout,
    )


def output_key_prefix(output: OutputPath) -> str:
    """Keys a job may write for ``output``: everything under its folder (the whole bucket without one)."""
    return f"{output.folder}/" if output.folder else ""


class Storage:
    """bucketrun's S3 access: presigned grants for jobs, and blocking SDK calls run off the event loop."""

    def __init__(self, settings: StorageSettings, *, clock: Callable[[], datetime] = _utc_now) -> None:
        """Build the client of bucketrun's own storage from ``settings``; no request is made."""
        self._settings = settings
        self._clock = clock
        self._default = _settings_target(settings)
        self._providers: dict[StorageProvider, _Target] = {}

    def __repr__(self) -> str:
        """Endpoint and region only: never the keys."""
        return f"Storage(endpoint={self._settings.endpoint!r}, region={self._settings.region!r})"

    def _target_for(self, service: ServiceDefinition, provider: str) -> _Target:
        if provider == DEFAULT_PROVIDER:
            return self._default
        definition = service.storage_providers.get(provider)
        if definition is None:
            raise PermanentError(
                f"service {service.name!r} names storage provider {provider!r} but does not define it",
                reason="unknown-provider",
            )
        target = self._providers.get(definition)
        if target is None:
            target = _provider_target(definition, self._settings.request_timeout)
            self._providers[definition] = target
        return target

    def grants_for(
        self,
        service: ServiceDefinition,
        bucket: str,
        key: str,
        *,
        expires: timedelta,
        version_id: str | None = None,
        provider: str = DEFAULT_PROVIDER,
        job: str | None = None,
    ) -> StagingGrants:
        """Presigned GET of ``bucket``/``key`` (that version, if given) and a POST policy per output;
        with the Job's name *job*, also the presigned PUT of its outputs manifest.

        Everything expires ``expires`` from now (1 second to 7 days, S3's limits). Pure computation.
        """
        if not timedelta(seconds=1) <= expires <= timedelta(days=7):
            raise ValueError(f"grants must expire within 1 s to 7 days, not {expires}")
        now = self._clock().astimezone(UTC).replace(microsecond=0)
        expires_at = now + expires
        source = self._target_for(service, provider)
        # The SDK's own checks and URL builder (path or virtual-host style, key quoting); the signing
        # is dispatcher.adapters.s3.sigv4's, equal to the SDK's for the same inputs.
        check_bucket_name(bucket, s3_check=source.base_url.is_aws_host)
        check_object_name(key)
        unsigned = source.base_url.build(
            method="GET",
            region=source.region,
            bucket_name=bucket,
            object_name=key,
            query_params={"versionId": version_id} if version_id else {},
        )
        input_url = sigv4.presign(
            source.keys, "GET", unsigned, now=now, expires_s=int(expires.total_seconds())
        )
        outputs = tuple(self._output_grant(service, output, now, expires_at) for output in service.outputs)
        manifest_url = (
            self._manifest_url(service.name, job, now, int(expires.total_seconds())) if job else None
        )
        return StagingGrants(
            input_url=input_url,
            outputs=outputs,
            expires_at=rfc3339(expires_at),
            outputs_manifest_url=manifest_url,
        )

    def presign_gets(self, bucket: str, keys: Sequence[str], *, expires: timedelta) -> tuple[str, ...]:
        """Presigned GETs of ``keys`` in ``bucket`` of bucketrun's own store, expiring ``expires`` from now
        (a service's ``mount``). Pure computation: one signature per key, no request."""
        if not timedelta(seconds=1) <= expires <= timedelta(days=7):
            raise ValueError(f"grants must expire within 1 s to 7 days, not {expires}")
        now = self._clock().astimezone(UTC).replace(microsecond=0)
        target = self._default
        check_bucket_name(bucket, s3_check=target.base_url.is_aws_host)
        urls: list[str] = []
        for key in keys:
            check_object_name(key)
            unsigned = target.base_url.build(
                method="GET", region=target.region, bucket_name=bucket, object_name=key
            )
            urls.append(
                sigv4.presign(target.keys, "GET", unsigned, now=now, expires_s=int(expires.total_seconds()))
            )
        return tuple(urls)

    def _manifest_url(self, service: str, job: str, now: datetime, expires_s: int) -> str:
        """Presigned PUT of Job *job*'s outputs manifest, in its record folder on bucketrun's storage."""
        bucket = self._settings.records_bucket
        key = outputs_manifest_key(self._settings.records_prefix, service, job)
        target = self._default
        check_bucket_name(bucket, s3_check=target.base_url.is_aws_host)
        check_object_name(key)
        unsigned = target.base_url.build(
            method="PUT", region=target.region, bucket_name=bucket, object_name=key
        )
        return sigv4.presign(target.keys, "PUT", unsigned, now=now, expires_s=expires_s)

    def _output_grant(
        self, service: ServiceDefinition, output: OutputPath, now: datetime, expires_at: datetime
    ) -> OutputGrant:
        target = self._target_for(service, output.provider)
        check_bucket_name(output.bucket, s3_check=target.base_url.is_aws_host)
        fields = sigv4.post_policy_fields(
            target.keys,
            bucket=output.bucket,
            key_prefix=output_key_prefix(output),
            max_bytes=self._settings.max_upload_bytes,
            now=now,
            expires_at=expires_at,
        )
        url = urlunsplit(
            target.base_url.build(method="POST", region=target.region, bucket_name=output.bucket)
        )
        return OutputGrant(
            provider=output.provider,
            bucket=output.bucket,
            folder=output.folder,
            prefix=output.prefix,
            suffix=output.suffix,
            url=url,
            form_fields=dict(fields),
        )

    async def put_object(
        self, bucket: str, key: str, data: bytes, *, content_type: str = "application/octet-stream"
    ) -> ObjectInfo:
        """Store ``data`` as ``bucket``/``key``; the server's eTag and version id are returned."""
        client = self._default.client

        def put() -> ObjectInfo:
            result = client.put_object(bucket, key, io.BytesIO(data), len(data), content_type=content_type)
            return ObjectInfo(bucket, key, len(data), result.etag, result.version_id, content_type)

        return await self._run(f"put {bucket}/{key}", put)

    async def get_object(
        self, bucket: str, key: str, *, version_id: str | None = None, max_bytes: int | None = None
    ) -> bytes:
        """The content of ``bucket``/``key`` (read whole: for records and small files), or only its
        first *max_bytes* bytes when it is longer (the connection is dropped rather than the rest read)."""
        client = self._default.client

        def get() -> bytes:
            response = client.get_object(bucket, key, version_id=version_id)
            try:
                return response.read() if max_bytes is None else response.read(max_bytes)
            finally:
                response.close()
                response.release_conn()

        return await self._run(f"get {bucket}/{key}", get)

    async def stat(self, bucket: str, key: str, *, version_id: str | None = None) -> ObjectInfo:
        """Size, eTag, version and type of ``bucket``/``key``."""
        client = self._default.client

        def stat() -> ObjectInfo:
            found = client.stat_object(bucket, key, version_id=version_id)
            return ObjectInfo(
                bucket,
                key,
                found.size,
                found.etag,
                found.version_id,
                found.content_type,
                found.last_modified,
            )

        return await self._run(f"stat {bucket}/{key}", stat)

    async def list(
        self,
        bucket: str,
        prefix: str = "",
        *,
        limit: int | None = _LIST_LIMIT,
        start_after: str | None = None,
    ) -> tuple[ObjectInfo, ...]:
        """Objects under ``prefix`` (recursively, in key order), at most ``limit`` of them (None: all),
        only those after the key *start_after* if given."""
        client = self._default.client

        def listing() -> tuple[ObjectInfo, ...]:
            found: list[ObjectInfo] = []
            items = client.list_objects(
                bucket, prefix=prefix or None, recursive=True, start_after=start_after
            )
            for item in items:
                if limit is not None and len(found) >= limit:
                    break
                found.append(
                    ObjectInfo(
                        bucket,
                        item.object_name or "",
                        item.size,
                        item.etag,
                        item.version_id,
                        item.content_type,
                        item.last_modified,
                    )
                )
            return tuple(found)

        return await self._run(f"list {bucket}/{prefix}", listing)

    async def folders(self, bucket: str, prefix: str = "") -> tuple[str, ...]:
        """The "folders" right under ``prefix``: the distinct next path segments of its keys, each with
        ``prefix`` before it and ending in ``/`` (one listing, not recursive)."""
        client = self._default.client

        def listing() -> tuple[str, ...]:
            items = client.list_objects(bucket, prefix=prefix or None, recursive=False)
            return tuple(item.object_name or "" for item in items if item.is_dir)

        return await self._run(f"list the folders of {bucket}/{prefix}", listing)

    async def delete_objects(self, bucket: str, keys: Sequence[str]) -> None:
        """Delete the objects *keys* of *bucket* (a key already gone is fine), up to 1,000 per request."""
        client = self._default.client

        def delete() -> None:
            for error in client.remove_objects(bucket, (DeleteObject(key) for key in keys)):
                raise _delete_error(bucket, error)

        if keys:
            await self._run(f"delete {len(keys)} object(s) from {bucket}", delete)

    async def ensure_bucket(self, bucket: str) -> bool:
        """Create ``bucket`` unless it exists; True when it was created."""
        client = self._default.client

        def ensure() -> bool:
            if client.bucket_exists(bucket):
                return False
            client.make_bucket(bucket)
            return True

        return await self._run(f"create bucket {bucket}", ensure)

    async def bucket_exists(self, bucket: str) -> bool:
        """Whether ``bucket`` exists (and is visible to bucketrun's key)."""
        client = self._default.client
        return await self._run(f"look up bucket {bucket}", lambda: client.bucket_exists(bucket))

    async def list_buckets(self) -> tuple[str, ...]:
        """Names of every bucket bucketrun's key can see."""
        client = self._default.client
        return await self._run("list buckets", lambda: tuple(item.name for item in client.list_buckets()))

    async def object_exists(self, bucket: str, key: str) -> bool:
        """Whether ``bucket``/``key`` exists (a missing bucket is an error, a missing key is False)."""
        client = self._default.client

        def exists() -> bool:
            try:
                client.stat_object(bucket, key)
            except S3Error as error:
                if error.code in ("NoSuchKey", "NoSuchVersion") or (
                    error.code != "NoSuchBucket" and error.response.status == 404
                ):
                    return False
                raise
            return True

        return await self._run(f"stat {bucket}/{key}", exists)

    async def bucket_notification(self, bucket: str) -> tuple[NotificationRule, ...]:
        """``bucket``'s notification configuration; ``NotificationsRefusedError`` if the store has none."""
        client = self._default.client

        def read() -> tuple[NotificationRule, ...]:
            try:
                config = client.get_bucket_notification(bucket)
            except S3Error as error:
                if error.code in _NOTIFICATION_REFUSED:
                    raise NotificationsRefusedError(
                        bucket, None, error.message or error.code or ""
                    ) from error
                raise
            return _rules_of(config)

        return await self._run(f"read the notification configuration of {bucket}", read)

    async def set_bucket_notification(self, bucket: str, rules: tuple[NotificationRule, ...]) -> None:
        """Replace ``bucket``'s notification configuration with ``rules`` (callers merge first).

        ``NotificationsRefusedError`` when the store refuses it (an ARN it does not know or accept).
        """
        client = self._default.client

        def write() -> None:
            try:
                if rules:
                    client.set_bucket_notification(bucket, _config_of(rules))
                else:
                    client.delete_bucket_notification(bucket)
            except S3Error as error:
                if error.code in _NOTIFICATION_REFUSED:
                    arns = ", ".join(sorted({rule.arn for rule in rules})) or None
                    raise NotificationsRefusedError(
                        bucket, arns, error.message or error.code or ""
                    ) from error
                raise

        await self._run(f"write the notification configuration of {bucket}", write)

    async def expiration_rule(self, bucket: str, rule_id: str) -> ExpirationRule | None:
        """The rule *rule_id* of ``bucket``'s lifecycle configuration, if it is an expiration rule as
        ``put_expiration_rule`` writes them; ``LifecycleRefusedError`` if the store will not say."""
        read = self._lifecycle(bucket)

        def find() -> ExpirationRule | None:
            return lifecycle.expiration_rule(read(), rule_id)

        return await self._run(f"read the lifecycle configuration of {bucket}", _refusing(bucket, find))

    async def put_expiration_rule(self, bucket: str, rule: ExpirationRule) -> bool:
        """Add *rule* to ``bucket``'s lifecycle configuration, or replace the rule of its ID; every other
        rule is kept as the store returned it. True when the configuration changed (False: it already
        held the rule). ``LifecycleRefusedError`` when the store does not take lifecycle configurations
        (or not from this key). Read, merge and write are not atomic: two writers of the same bucket's
        configuration at the same moment may lose one's change."""
        read = self._lifecycle(bucket)
        client = self._default.client

        def merge() -> bool:
            document = lifecycle.with_rule(read(), rule)
            if document is None:
                return False
            _put_lifecycle(client, bucket, document)
            return True

        return await self._run(f"write the lifecycle configuration of {bucket}", _refusing(bucket, merge))

    async def remove_lifecycle_rule(self, bucket: str, rule_id: str) -> bool:
        """Remove the rule *rule_id* from ``bucket``'s lifecycle configuration, keeping every other rule
        (the configuration is deleted when it was the only one); True when there was one."""
        read = self._lifecycle(bucket)
        client = self._default.client

        def remove() -> bool:
            changed, document = lifecycle.without_rule(read(), rule_id)
            if document is not None and changed:
                _put_lifecycle(client, bucket, document)
            elif changed:
                client.delete_bucket_lifecycle(bucket)
            return changed

        return await self._run(f"write the lifecycle configuration of {bucket}", _refusing(bucket, remove))

    def _lifecycle(self, bucket: str) -> Callable[[], bytes | None]:
        """A blocking read of ``bucket``'s lifecycle configuration as the store sent it (None: none)."""
        client = self._default.client

        def read() -> bytes | None:
            try:
                # The SDK's get_bucket_lifecycle parses into LifecycleConfig, which drops the rule elements
                # it does not model (module lifecycle): the same request, answered as the raw document.
                response = client._execute("GET", bucket, query_params={"lifecycle": ""})
            except S3Error as error:
                if error.code == "NoSuchLifecycleConfiguration":
                    return None
                raise
            return bytes(response.data)

        return read

    async def _run(self, what: str, call: Callable[[], _T]) -> _T:
        try:
            return await asyncio.to_thread(call)
        except (MinioException, urllib3.exceptions.HTTPError, OSError) as error:
            raise storage_error(what, error) from error


class NotificationsRefusedError(PermanentError):
    """The store refused (or cannot report) a bucket notification configuration.

    moto and AWS S3 answer InvalidArgument to MinIO ARNs; MinIO answers it for a target it has not been
    configured with. ``arn`` is what was being written (None when reading).
    """

    def __init__(self, bucket: str, arn: str | None, detail: str) -> None:
        what = f"the notification target {arn}" if arn else "bucket notifications"
        super().__init__(
            f"storage refused {what} on bucket {bucket}: {detail}", reason="notification-refused"
        )
        self.bucket = bucket
        self.arn = arn
        self.detail = detail


class LifecycleRefusedError(PermanentError):
    """The store does not take (or show) bucket lifecycle configurations, or not from this key: it does
    not implement them, or its policy denies them."""

    def __init__(self, bucket: str, detail: str) -> None:
        super().__init__(
            f"storage refused the lifecycle configuration of bucket {bucket}: {detail}",
            reason="lifecycle-refused",
        )
        self.bucket = bucket
        self.detail = detail


def _refusing(bucket: str, call: Callable[[], _T]) -> Callable[[], _T]:
    """*call* (lifecycle requests), with the answers that mean "not here" as ``LifecycleRefusedError``."""

    def refusing() -> _T:
        try:
            return call()
        except S3Error as error:
            if error.code in _LIFECYCLE_REFUSED or error.response.status in (405, 501):
                raise LifecycleRefusedError(bucket, error.message or error.code or "") from error
            raise
        except lifecycle.LifecycleDocumentError as error:
            raise LifecycleRefusedError(bucket, str(error)) from error

    return refusing


def _put_lifecycle(client: Minio, bucket: str, document: bytes) -> None:
    """PUT *document* as the bucket's lifecycle configuration, as the SDK's set_bucket_lifecycle sends it."""
    digest = base64.b64encode(hashlib.md5(document).digest()).decode()  # noqa: S324 - S3 requires Content-MD5
    client._execute(
        "PUT", bucket, body=document, headers={"Content-MD5": digest}, query_params={"lifecycle": ""}
    )


def _rule_of(kind: str, arn: str, config: CommonConfig) -> NotificationRule:
    prefix = config.prefix_filter_rule.value if config.prefix_filter_rule else ""
    suffix = config.suffix_filter_rule.value if config.suffix_filter_rule else ""
    return NotificationRule(
        kind,  # type: ignore[arg-type]  # one of the RuleKind literals, by construction
        arn,
        tuple(config.events),
        prefix,
        suffix,
        config.config_id,
    )


def _rules_of(config: NotificationConfig) -> tuple[NotificationRule, ...]:
    rules = [
        _rule_of("cloud-function", item.cloud_func or "", item) for item in config.cloud_func_config_list
    ]
    rules += [_rule_of("queue", item.queue or "", item) for item in config.queue_config_list]
    rules += [_rule_of("topic", item.topic or "", item) for item in config.topic_config_list]
    return tuple(rules)


def _config_of(rules: tuple[NotificationRule, ...]) -> NotificationConfig:
    lists: dict[str, list[Any]] = {"cloud-function": [], "queue": [], "topic": []}
    for rule in rules:
        common: dict[str, Any] = {
            "events": list(rule.events),
            "config_id": rule.rule_id,
            "prefix_filter_rule": PrefixFilterRule(rule.prefix) if rule.prefix else None,
            "suffix_filter_rule": SuffixFilterRule(rule.suffix) if rule.suffix else None,
        }
        if rule.kind == "queue":
            lists["queue"].append(QueueConfig(queue=rule.arn, **common))
        elif rule.kind == "topic":
            lists["topic"].append(TopicConfig(topic=rule.arn, **common))
        else:
            lists["cloud-function"].append(CloudFuncConfig(cloud_func=rule.arn, **common))
    return NotificationConfig(lists["cloud-function"], lists["queue"], lists["topic"])


def _delete_error(bucket: str, error: DeleteError) -> TransientError | PermanentError:
    """The bucketrun error for one key a multi-object delete could not delete."""
    code = error.code or ""
    text = f"storage refused to delete {bucket}/{error.name}: {code or 'no code'} ({error.message})"
    if code in _TRANSIENT_CODES:
        return TransientError(text, kind="storage-5xx")
    reason = "storage-access-denied" if code in _DENIED else "storage-refused"
    return PermanentError(text, reason=reason)


def storage_error(what: str, error: Exception) -> TransientError | PermanentError:
    """The bucketrun error for an SDK or connection failure during ``what`` (e.g. ``"get b/k"``)."""
    if isinstance(error, S3Error):
        return _s3_error(what, error)
    if isinstance(error, ServerError):
        return TransientError(
            f"storage server error during {what}: HTTP {error.status_code}", kind="storage-5xx"
        )
    if isinstance(error, InvalidResponseError):
        return TransientError(f"storage gave an unreadable answer during {what}", kind="storage-bad-response")
    return TransientError(
        f"cannot reach storage to {what}: {type(error).__name__}", kind="storage-connection"
    )


def _s3_error(what: str, error: S3Error) -> TransientError | PermanentError:
    code = error.code or ""
    status = error.response.status
    text = f"storage refused to {what}: {code or 'HTTP ' + str(status)} ({status})"
    if status >= 500 or status in _TRANSIENT_STATUSES or code in _TRANSIENT_CODES:
        return TransientError(text, retry_after=_retry_after(error), kind="storage-5xx")
    if code in _NOT_FOUND or status == 404:
        reason = "storage-not-found"
    elif code in _DENIED or status == 403:
        reason = "storage-access-denied"
    else:
        reason = "storage-refused"
    return PermanentError(text, reason=reason)


def _retry_after(error: S3Error) -> float | None:
    value = error.response.headers.get("Retry-After")
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None  # an HTTP date: rare from S3; the backoff decides instead
    return seconds if seconds >= 0 else None
