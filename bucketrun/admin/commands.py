"""``bucketrun services apply|list|delete``: look at the store and the cluster, plan, and apply the plan.

The decisions are in ``bucketrun.admin.plan`` (what to change) and ``bucketrun.admin.inventory``
(what to report); this module gathers the ``Observed`` state through the storage and cluster adapters
and carries out the ``Change`` list, printing a line per item as it goes, so a failure half-way
still shows what was done. Buckets and objects are only ever created, never deleted.

The per-service ConfigMap is rendered exactly as the dispatcher renders it (same namespace, stager
image and template directory), so the dispatcher later finds it existing and never writes it again.

Each service's Secret (its ``environment.secrets``) is written here and nowhere else in a cluster: the
running components have no access to Secrets. Its values are read back only to compare them, and are
never printed (the plan's lines name keys, ``services list`` says whether it exists and matches).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Final

from bucketrun.admin.inventory import inventory, service_names
from bucketrun.admin.plan import (
    Action,
    BucketView,
    Change,
    ConfigMapView,
    Desired,
    Observed,
    PlanError,
    SecretView,
    check_names,
    desired_state,
    plan_apply,
    plan_delete,
    summary,
)
from dispatcher.adapters.kube import deleting, fetching, patching
from dispatcher.adapters.kube.api import KubeApi
from dispatcher.adapters.kube.creating import ConfigMapCreator
from dispatcher.adapters.s3.storage import NotificationsRefusedError, Storage
from dispatcher.domain import constants as c
from dispatcher.domain import kube
from dispatcher.domain.errors import BucketrunError
from dispatcher.executors.build import cluster_of, in_cluster
from dispatcher.fdl import (
    RecordsOverlapError,
    ServiceDefinition,
    ServiceDefinitionError,
    check_records_location,
    load_services,
)
from dispatcher.rendering.context import RenderError
from dispatcher.rendering.render import renderer_from_settings
from dispatcher.rendering.secrets import secret_name
from dispatcher.runtime.settings import Settings

# The CLI's conventions (1 invalid input, 2 usage or settings), then this command's own outcomes.
EXIT_OK: Final = 0
EXIT_BAD_FDL: Final = 1
"""The definitions (or the service names) were refused; nothing was contacted."""
EXIT_NOTIFICATIONS_REFUSED: Final = 3
"""Everything was applied except bucket notifications, which the store refused."""
EXIT_STORE: Final = 4
"""The store or the cluster failed (unreachable, access denied, ...)."""

Emit = Callable[[str], None]


@dataclass
class _Backends:
    storage: Storage
    cluster: KubeApi | None
    config_maps: ConfigMapCreator | None
    """The ConfigMaps written through ``cluster`` (None with it)."""
    refused: list[NotificationsRefusedError] = field(default_factory=list)


@asynccontextmanager
async def _connected(settings: Settings) -> AsyncIterator[_Backends]:
    async with cluster_of(settings.cluster) as cluster:
        config_maps = ConfigMapCreator(cluster) if cluster is not None else None
        yield _Backends(Storage(settings.storage), cluster, config_maps)


def _load(paths: Sequence[Path], settings: Settings) -> tuple[list[ServiceDefinition], list[str]]:
    """The services of ``paths`` (for ``BUCKETRUN_SERVICES__CLUSTER`` where a service is defined for
    several clusters), then notes and warnings; raises what ``_refusal`` explains."""
    loaded = load_services(paths, cluster=settings.services.cluster)
    services = list(loaded.services)
    check_records_location(settings.storage.records_bucket, settings.storage.records_prefix, services)
    return services, [
        *(f"note: {note}" for note in loaded.notes),
        *(f"warning: {warning}" for warning in loaded.warnings),
    ]


def _desired(settings: Settings, services: Sequence[ServiceDefinition], *, notifications: bool) -> Desired:
    config_maps = None
    if in_cluster(settings.cluster):
        renderer = renderer_from_settings(settings.cluster)  # the dispatcher's own: same ConfigMaps
        config_maps = [renderer.render_config_map(service) for service in services]
    return desired_state(
        services,
        arn=settings.storage.notify_arn,
        records_bucket=settings.storage.records_bucket,
        config_maps=config_maps,
        notifications=notifications,
    )


def _refusal(error: Exception) -> str:
    if isinstance(error, ServiceDefinitionError):
        return "\n".join(f"error: {problem}" for problem in error.problems)
    return f"error: {error}"


_BAD_INPUT: Final = (ServiceDefinitionError, RecordsOverlapError, PlanError, RenderError, OSError)


# -- observing -------------------------------------------------------------------------------------


async def _rules(backends: _Backends, bucket: str) -> BucketView:
    try:
        rules = await backends.storage.bucket_notification(bucket)
    except NotificationsRefusedError as error:
        backends.refused.append(error)
        return BucketView(exists=True, rules=None)
    return BucketView(exists=True, rules=rules)


def _config_map_view(document: dict[str, Any]) -> ConfigMapView:
    labels = kube.labels(document)
    data = document.get("data") or {}
    return ConfigMapView(str(kube.meta(document).get("name", "")), labels.get(c.LABEL_SERVICE), dict(data))


def _secret_view(document: dict[str, Any]) -> SecretView:
    labels = kube.labels(document)
    data: dict[str, bytes] = {}
    for key, value in (document.get("data") or {}).items():
        try:
            data[key] = base64.b64decode(str(value), validate=True)
        except binascii.Error:
            data[key] = b""  # not what bucketrun writes: it compares as different and is replaced
    managed = labels.get(c.LABEL_MANAGED_BY) == c.MANAGED_BY
    return SecretView(str(kube.meta(document).get("name", "")), labels.get(c.LABEL_SERVICE), managed, data)


async def _observe_secrets(backends: _Backends, services: Iterable[str]) -> dict[str, SecretView] | None:
    """The Secrets of ``services`` that exist, by name; None without a cluster."""
    if backends.cluster is None:
        return None
    found = {}
    for service in sorted(set(services)):
        document = await fetching.read_secret(backends.cluster, secret_name(service))
        if document is not None:
            view = _secret_view(document)
            found[view.name] = view
    return found


async def _observe_desired(backends: _Backends, desired: Desired) -> Observed:
    """The buckets, markers, notification configurations, ConfigMaps and Secrets ``desired`` names."""
    buckets: dict[str, BucketView] = {}
    for bucket in sorted({*desired.buckets, *(desired.rules or {})}):
        if not await backends.storage.bucket_exists(bucket):
            buckets[bucket] = BucketView(exists=False)
            continue
        keys = [key for where, key in desired.markers if where == bucket]
        markers = frozenset([key for key in keys if await backends.storage.object_exists(bucket, key)])
        wired = desired.rules is not None and bucket in desired.rules
        rules = (await _rules(backends, bucket)).rules if wired else ()
        buckets[bucket] = BucketView(exists=True, markers=markers, rules=rules)
    config_maps = None
    if backends.cluster is not None and desired.config_maps is not None:
        config_maps = {}
        for document in desired.config_maps:
            found = await fetching.read_config_map(backends.cluster, str(document["metadata"]["name"]))
            if found is not None:
                view_of = _config_map_view(found)
                config_maps[view_of.name] = view_of
    return Observed(buckets, config_maps, await _observe_secrets(backends, desired.services))


async def _observe_everything(backends: _Backends) -> Observed:
    """Every bucket's notification configuration and every bucketrun ConfigMap (for list and delete)."""
    buckets = {bucket: await _rules(backends, bucket) for bucket in await backends.storage.list_buckets()}
    config_maps = None
    if backends.cluster is not None:
        views = [_config_map_view(item) for item in await fetching.list_config_maps(backends.cluster)]
        config_maps = {view.name: view for view in views}
    return Observed(buckets, config_maps)


# -- applying --------------------------------------------------------------------------------------


async def _carry_out(change: Change, backends: _Backends) -> None:
    storage = backends.storage
    if change.action is Action.CREATE_BUCKET:
        await storage.ensure_bucket(change.target)
    elif change.action is Action.CREATE_MARKER:
        bucket, _, key = change.target.partition("/")  # bucket names hold no '/'
        await storage.put_object(bucket, key, b"")
    elif change.action is Action.SET_NOTIFICATION:
        await storage.set_bucket_notification(change.target, change.rules)
    elif backends.cluster is not None and backends.config_maps is not None:
        await _carry_out_in_cluster(change, backends.cluster, backends.config_maps)


async def _carry_out_in_cluster(change: Change, api: KubeApi, config_maps: ConfigMapCreator) -> None:
    if change.secret is not None:
        secret = change.secret
        await patching.ensure_secret(api, secret.name, secret.plain_values(), labels=secret.labels)
    elif change.action is Action.DELETE_SECRET:
        await deleting.delete_secret(api, change.target)
    elif change.document is not None:
        if change.action is Action.REPLACE_CONFIG_MAP:
            await _delete_config_map(api, config_maps, change.target)
        await config_maps.ensure(change.document)
    elif change.action is Action.DELETE_CONFIG_MAP:
        await _delete_config_map(api, config_maps, change.target)


async def _delete_config_map(api: KubeApi, config_maps: ConfigMapCreator, name: str) -> None:
    config_maps.forget(name)  # a replaced ConfigMap is ensured again right after
    await deleting.delete_config_map(api, name)


async def _run_plan(changes: Sequence[Change], backends: _Backends, *, dry_run: bool, emit: Emit) -> int:
    """Carry out (or with ``dry_run`` only print) ``changes``; the number of writes the store refused."""
    refused = 0
    for change in changes:
        if not change.is_write:
            emit(change.text)
        elif dry_run:
            emit(f"would {change.text}")
        else:
            try:
                await _carry_out(change, backends)
            except NotificationsRefusedError as error:
                backends.refused.append(error)
                emit(f"refused: {change.text}")
                refused += 1
                continue
            emit(change.text)
    return refused


def poller_hint(refused: Sequence[NotificationsRefusedError], arn: str, *, dry_run: bool = False) -> str:
    """The message for a store that refused bucketrun's notification target."""
    buckets = ", ".join(sorted({error.bucket for error in refused}))
    detail = refused[0].detail if refused else ""
    return (
        f"error: the store refused the notification target {arn} on bucket(s) {buckets}"
        + (f" ({detail})" if detail else "")
        + ".\nThis store cannot deliver MinIO's AMQP notifications (moto and AWS S3 refuse MinIO ARNs), or "
        "MinIO has no AMQP target with that ID (MINIO_NOTIFY_AMQP_ENABLE_<ID>=on; "
        "BUCKETRUN_STORAGE__NOTIFY_ARN names it).\nFeed the dispatcher with the bucket poller instead: "
        "`bucketrun poll`; `bucketrun services apply --skip-notifications` applies the rest without "
        "trying.\n" + ("Nothing was changed (dry run)." if dry_run else "Everything else was applied.")
    )


async def apply_services(
    settings: Settings,
    paths: Sequence[Path],
    *,
    dry_run: bool = False,
    skip_notifications: bool = False,
    emit: Emit = print,
) -> tuple[str, int]:
    """Apply the definitions in ``paths``; (message for the error stream, exit code)."""
    try:
        services, warnings = _load(paths, settings)
        desired = _desired(settings, services, notifications=not skip_notifications)
    except _BAD_INPUT as error:
        return _refusal(error), EXIT_BAD_FDL
    for line in warnings:
        emit(line)
    try:
        async with _connected(settings) as backends:
            observed = await _observe_desired(backends, desired)
            changes = plan_apply(desired, observed)
            refused = await _run_plan(changes, backends, dry_run=dry_run, emit=emit)
    except BucketrunError as error:
        return f"error: {error}\nstopped; the lines above were applied", EXIT_STORE
    emit(summary(changes, dry_run=dry_run, refused=refused))
    if backends.refused:
        hint = poller_hint(backends.refused, settings.storage.notify_arn, dry_run=dry_run)
        return hint, EXIT_NOTIFICATIONS_REFUSED
    return "", EXIT_OK


async def list_services(
    settings: Settings, paths: Sequence[Path], *, as_json: bool = False, emit: Emit = print
) -> tuple[str, int]:
    """Report the services found, compared with ``paths``' definitions when given."""
    desired = None
    if paths:
        try:
            services, warnings = _load(paths, settings)
            desired = _desired(settings, services, notifications=True)
            for line in warnings if not as_json else ():
                emit(line)
        except _BAD_INPUT as error:
            return _refusal(error), EXIT_BAD_FDL
    try:
        async with _connected(settings) as backends:
            observed = await _observe_everything(backends)
            secrets = await _observe_secrets(backends, service_names(observed, desired))
            observed = replace(observed, secrets=secrets)
    except BucketrunError as error:
        return f"error: {error}", EXIT_STORE
    statuses = inventory(observed, desired)
    unreadable = sorted(error.bucket for error in backends.refused)
    if as_json:
        emit(
            json.dumps(
                {"services": [status.to_json() for status in statuses], "unreadable_buckets": unreadable},
                indent=2,
            )
        )
        return "", EXIT_OK
    for status in statuses:
        emit(status.line())
    if unreadable:
        emit(f"note: the store reports no notification configuration for {', '.join(unreadable)}")
    if not statuses:
        emit("no bucketrun services found")
    return "", EXIT_OK


async def delete_services(
    settings: Settings,
    names: Sequence[str],
    fdl: Sequence[Path],
    *,
    dry_run: bool = False,
    emit: Emit = print,
) -> tuple[str, int]:
    """Remove the notification entries, ConfigMaps and Secrets of the services ``names`` (and ``fdl``'s)."""
    try:
        wanted = list(check_names(names))
        if fdl:
            wanted += [service.name for service in _load(fdl, settings)[0]]
    except _BAD_INPUT as error:
        return _refusal(error), EXIT_BAD_FDL
    if not wanted:
        return "error: name at least one service (NAME... or --fdl FDL)", EXIT_BAD_FDL
    try:
        async with _connected(settings) as backends:
            observed = await _observe_everything(backends)
            observed = replace(observed, secrets=await _observe_secrets(backends, wanted))
            changes = plan_delete(wanted, observed)
            refused = await _run_plan(changes, backends, dry_run=dry_run, emit=emit)
    except BucketrunError as error:
        return f"error: {error}\nstopped; the lines above were applied", EXIT_STORE
    emit(summary(changes, dry_run=dry_run, refused=refused))
    if refused:
        return poller_hint(backends.refused, settings.storage.notify_arn), EXIT_NOTIFICATIONS_REFUSED
    return "", EXIT_OK
