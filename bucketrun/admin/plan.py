"""What ``bucketrun services apply|delete`` must change: desired state vs observed state, as pure data.

``desired_state`` turns service definitions into the buckets, folder markers, ConfigMaps, Secrets and
notification entries they need; ``plan_apply`` and ``plan_delete`` compare that with what the store and
the cluster hold (``Observed``, gathered by ``bucketrun.admin.commands``) and return one ``Change`` per
thing looked at, changed or not, so the same list drives ``--dry-run``, the applying and the report.

Bucket notifications are merged, never replaced: a bucket has one configuration shared by every
subscriber, and only entries with a ``bucketrun-<service>-<n>`` Id of a service being applied (or
deleted) are touched. Nothing here ever deletes a bucket or an object.

A service's Secret (``bucketrun-<service>-secrets``, its ``environment.secrets``) is written only when
its values differ, removed when the service no longer has secrets, and deleted by ``plan_delete`` only
when labelled as bucketrun's and that service's. Values never reach a ``Change``'s text or repr: a line
names the keys that change, not what they hold.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Final

from dispatcher.adapters.s3.notifications import NotificationRule, arns_match, check_filter_value, rule_id
from dispatcher.fdl import DEFAULT_PROVIDER, ServiceDefinition
from dispatcher.fdl.errors import shown
from dispatcher.fdl.names import check_bucket_name, check_service_name
from dispatcher.rendering.secrets import ServiceSecret, secret_name, service_secrets

MAX_RULES_PER_SERVICE: Final = 100
"""Notification entries one service may need (prefix filters x suffix filters, over its inputs)."""


class PlanError(ValueError):
    """The definitions ask for something bucketrun will not write to a store; the message names it."""


class Action(StrEnum):
    """What a ``Change`` does."""

    CREATE_BUCKET = "create-bucket"
    CREATE_MARKER = "create-marker"
    CREATE_CONFIG_MAP = "create-configmap"
    REPLACE_CONFIG_MAP = "replace-configmap"
    DELETE_CONFIG_MAP = "delete-configmap"
    CREATE_SECRET = "create-secret"  # noqa: S105 - an action's name, not a credential
    UPDATE_SECRET = "update-secret"  # noqa: S105 - an action's name, not a credential
    DELETE_SECRET = "delete-secret"  # noqa: S105 - an action's name, not a credential
    SET_NOTIFICATION = "set-notification"
    UNCHANGED = "unchanged"
    NOTE = "note"


@dataclass(frozen=True, slots=True)
class Change:
    """One line of the plan: a write to make, or something found already right (or skipped)."""

    action: Action
    target: str
    """Bucket, ``bucket/key``, ConfigMap or Secret name."""
    text: str
    """The line printed for it."""
    rules: tuple[NotificationRule, ...] = ()
    """``SET_NOTIFICATION``: the bucket's whole configuration to write (others' entries included)."""
    document: Mapping[str, Any] | None = None
    """``CREATE_CONFIG_MAP``/``REPLACE_CONFIG_MAP``: the ConfigMap."""
    secret: ServiceSecret | None = None
    """``CREATE_SECRET``/``UPDATE_SECRET``: the Secret to write (its values print as ``**********``)."""

    @property
    def is_write(self) -> bool:
        """Whether applying it writes to the store or the cluster."""
        return self.action not in (Action.UNCHANGED, Action.NOTE)


@dataclass(frozen=True, slots=True)
class Desired:
    """What the applied services need."""

    services: tuple[str, ...]
    buckets: tuple[str, ...]
    markers: tuple[tuple[str, str], ...]
    """(bucket, ``folder/``) of every input and output folder."""
    rules: Mapping[str, tuple[NotificationRule, ...]] | None
    """Per bucket, the services' notification entries; None when notifications are not managed."""
    config_maps: tuple[Mapping[str, Any], ...] | None
    """The services' ConfigMaps as the dispatcher renders them; None without a cluster."""
    secrets: tuple[ServiceSecret, ...] = ()
    """The Secrets of the services that have ``environment.secrets`` (the others need none)."""
    notes: tuple[str, ...] = ()
    """What is left out (paths on other storage providers)."""


@dataclass(frozen=True, slots=True)
class BucketView:
    """One bucket as found."""

    exists: bool
    markers: frozenset[str] = frozenset()
    """The wanted folder markers that exist."""
    rules: tuple[NotificationRule, ...] | None = ()
    """Its notification configuration; None when the store cannot report one."""


@dataclass(frozen=True, slots=True)
class ConfigMapView:
    """One of bucketrun's ConfigMaps as found."""

    name: str
    service: str | None
    data: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class SecretView:
    """A Secret named after a service, as found; its values stay out of every repr."""

    name: str
    service: str | None
    """Its ``bucketrun.io/service`` label."""
    managed: bool
    """Whether it is labelled as bucketrun's (``app.kubernetes.io/managed-by``)."""
    data: Mapping[str, bytes] = field(default_factory=dict, repr=False)
    """Its decoded values: compared, never printed."""

    def belongs_to(self, service: str) -> bool:
        """Whether bucketrun wrote it for *service* (only such a Secret is ever deleted)."""
        return self.managed and self.service == service


@dataclass(frozen=True, slots=True)
class Observed:
    """The store and the cluster as found."""

    buckets: Mapping[str, BucketView]
    config_maps: Mapping[str, ConfigMapView] | None
    """By name; None when no cluster is configured (local executor)."""
    secrets: Mapping[str, SecretView] | None = None
    """The services' Secrets that exist, by name; None when they were not looked up (no cluster)."""


# -- desired state ---------------------------------------------------------------------------------


def service_rules(service: ServiceDefinition, arn: str) -> list[tuple[str, NotificationRule]]:
    """(bucket, entry) for each input path x prefix filter x suffix filter of ``service`` on bucketrun's
    own storage. MinIO takes one prefix and one suffix per entry, so filters multiply; prefixes are
    relative to the input folder in the FDL and absolute keys in MinIO."""
    found: list[tuple[str, NotificationRule]] = []
    for path in service.inputs:
        if path.provider != DEFAULT_PROVIDER:
            continue
        base = f"{path.folder}/" if path.folder else ""
        for prefix in [base + item for item in path.prefix] or [base]:
            for suffix in path.suffix or ("",):
                candidate = NotificationRule("queue", arn, tuple(path.events), prefix, suffix)
                if any(bucket == path.bucket and rule == candidate for bucket, rule in found):
                    continue  # two inputs asking for the same thing: one entry serves both
                found.append((path.bucket, candidate))
    if len(found) > MAX_RULES_PER_SERVICE:
        raise PlanError(
            f"service {shown(service.name)} needs {len(found)} notification entries (its prefix and suffix "
            f"filters multiply); at most {MAX_RULES_PER_SERVICE} are written"
        )
    numbered: list[tuple[str, NotificationRule]] = []
    for index, (bucket, rule) in enumerate(found):
        for value in (rule.prefix, rule.suffix):
            try:
                check_filter_value(value)
            except ValueError as error:
                raise PlanError(f"service {shown(service.name)} input {shown(bucket)}: {error}") from None
        numbered.append((bucket, _with_id(rule, rule_id(service.name, index))))
    return numbered


def _with_id(rule: NotificationRule, identifier: str) -> NotificationRule:
    return NotificationRule(rule.kind, rule.arn, rule.events, rule.prefix, rule.suffix, identifier)


def desired_state(
    services: Sequence[ServiceDefinition],
    *,
    arn: str,
    records_bucket: str,
    config_maps: Sequence[Mapping[str, Any]] | None,
    notifications: bool = True,
) -> Desired:
    """Everything ``services`` need on bucketrun's own storage and cluster."""
    buckets: dict[str, None] = {}
    markers: dict[tuple[str, str], None] = {}
    rules: dict[str, list[NotificationRule]] = {}
    notes: list[str] = []
    for service in services:
        for kind, paths in (("input", service.inputs), ("output", service.outputs)):
            for path in paths:
                if path.provider != DEFAULT_PROVIDER:
                    notes.append(
                        f"skip {service.name} {kind} {path.provider}:{path.path}: only bucketrun's own "
                        "storage (minio.default) is managed"
                    )
                    continue
                buckets[path.bucket] = None
                if path.folder:
                    markers[(path.bucket, f"{path.folder}/")] = None
        if service.mount is not None:
            # As OSCAR creates its mount's bucket: the script finds an empty directory, not a failed Job.
            buckets[service.mount.bucket] = None
            if service.mount.folder:
                markers[(service.mount.bucket, f"{service.mount.folder}/")] = None
        if notifications:
            for bucket, rule in service_rules(service, arn):
                rules.setdefault(bucket, []).append(rule)
    buckets[check_bucket_name(records_bucket)] = None
    return Desired(
        services=tuple(service.name for service in services),
        buckets=tuple(sorted(buckets)),
        markers=tuple(sorted(markers)),
        rules={bucket: tuple(found) for bucket, found in sorted(rules.items())} if notifications else None,
        config_maps=tuple(config_maps) if config_maps is not None else None,
        secrets=service_secrets(services),
        notes=tuple(notes),
    )


# -- apply -----------------------------------------------------------------------------------------


def plan_apply(desired: Desired, observed: Observed) -> tuple[Change, ...]:
    """Every change that makes ``observed`` provide what ``desired`` needs, and every item already right."""
    changes = [Change(Action.NOTE, "", note) for note in desired.notes]
    changes += _bucket_changes(desired, observed)
    changes += _config_map_changes(desired, observed)
    changes += _secret_changes(desired, observed)
    changes += _notification_changes(desired, observed)
    return tuple(changes)


def _bucket_changes(desired: Desired, observed: Observed) -> list[Change]:
    changes = []
    for bucket in desired.buckets:
        view = observed.buckets.get(bucket, BucketView(exists=False))
        if view.exists:
            changes.append(Change(Action.UNCHANGED, bucket, f"bucket {bucket} unchanged"))
        else:
            changes.append(Change(Action.CREATE_BUCKET, bucket, f"create bucket {bucket}"))
    for bucket, key in desired.markers:
        view = observed.buckets.get(bucket, BucketView(exists=False))
        target = f"{bucket}/{key}"
        if view.exists and key in view.markers:
            changes.append(Change(Action.UNCHANGED, target, f"marker {target} unchanged"))
        else:
            changes.append(Change(Action.CREATE_MARKER, target, f"create marker {target}"))
    return changes


def _config_map_changes(desired: Desired, observed: Observed) -> list[Change]:
    if desired.config_maps is None or observed.config_maps is None:
        return [
            Change(
                Action.NOTE,
                "",
                "configmaps skipped: the local executor needs none "
                "(BUCKETRUN_CLUSTER__EXECUTOR=kubernetes creates them in the cluster)",
            )
        ]
    changes = []
    for document in desired.config_maps:
        name = str(document["metadata"]["name"])
        found = observed.config_maps.get(name)
        if found is None:
            changes.append(
                Change(Action.CREATE_CONFIG_MAP, name, f"create configmap {name}", document=document)
            )
        elif dict(found.data) != dict(document.get("data") or {}):
            # Immutable: a changed wrapper template (same service content) needs delete + create.
            text = f"replace configmap {name} (its data differs from what the dispatcher renders)"
            changes.append(Change(Action.REPLACE_CONFIG_MAP, name, text, document=document))
        else:
            changes.append(Change(Action.UNCHANGED, name, f"configmap {name} unchanged"))
    return changes


def _secret_changes(desired: Desired, observed: Observed) -> list[Change]:
    """Each applied service's Secret: written when missing or different, removed once not needed."""
    if observed.secrets is None:
        if not desired.secrets:
            return []
        text = "secrets skipped: no cluster (`bucketrun serve` gives them to the local executor from the FDL)"
        return [Change(Action.NOTE, "", text)]
    wanted = {secret.service: secret for secret in desired.secrets}
    changes = []
    for service in desired.services:
        name = secret_name(service)
        found, secret = observed.secrets.get(name), wanted.get(service)
        if secret is None:
            if found is not None and found.belongs_to(service):
                text = f"delete secret {name} (the service has no secrets any more)"
                changes.append(Change(Action.DELETE_SECRET, name, text))
            continue
        if found is None:
            text = f"create secret {name} (keys {', '.join(secret.values)})"
            changes.append(Change(Action.CREATE_SECRET, name, text, secret=secret))
        elif not found.belongs_to(service):
            text = f"update secret {name}: take it over (it is not labelled as bucketrun's {service}'s)"
            changes.append(Change(Action.UPDATE_SECRET, name, text, secret=secret))
        elif not secret.same_values(found.data):
            text = f"update secret {name}: {'; '.join(secret_difference(secret, found.data))}"
            changes.append(Change(Action.UPDATE_SECRET, name, text, secret=secret))
        else:
            changes.append(Change(Action.UNCHANGED, name, f"secret {name} unchanged"))
    return changes


def secret_difference(secret: ServiceSecret, data: Mapping[str, bytes]) -> list[str]:
    """What turns *data* into *secret*'s values, by key name only (never a value), one phrase each."""
    wanted = {key: value.encode() for key, value in secret.plain_values().items()}
    phrases = [f"add {key}" for key in wanted if key not in data]
    phrases += [f"change {key}" for key in wanted if key in data and data[key] != wanted[key]]
    phrases += [f"remove {key}" for key in sorted(data) if key not in wanted]
    return phrases


def _notification_changes(desired: Desired, observed: Observed) -> list[Change]:
    if desired.rules is None:
        return [Change(Action.NOTE, "", "notifications skipped (--skip-notifications)")]
    owners = set(desired.services)
    changes = []
    for bucket, wanted in desired.rules.items():
        view = observed.buckets.get(bucket, BucketView(exists=False))
        if view.rules is None:
            changes.append(
                Change(
                    Action.NOTE, bucket, f"notification {bucket} skipped: the store reports no configuration"
                )
            )
            continue
        current = tuple(rule for rule in view.rules if rule.owner in owners)
        difference = describe_difference(current, wanted)
        if not difference:
            changes.append(Change(Action.UNCHANGED, bucket, f"notification {bucket} unchanged"))
            continue
        changes.append(
            Change(
                Action.SET_NOTIFICATION,
                bucket,
                f"update notification {bucket}: {'; '.join(difference)}",
                rules=merge_rules(view.rules, wanted, owners),
            )
        )
    return changes


def merge_rules(
    existing: Iterable[NotificationRule], ours: Iterable[NotificationRule], owners: Iterable[str]
) -> tuple[NotificationRule, ...]:
    """``existing`` without the entries of ``owners``, then ``ours``: others' entries are kept as found."""
    replaced = set(owners)
    kept = [rule for rule in existing if rule.owner not in replaced]
    return (*kept, *sorted(ours, key=lambda rule: rule.rule_id or ""))


def describe_difference(current: Sequence[NotificationRule], wanted: Sequence[NotificationRule]) -> list[str]:
    """What turns ``current`` into ``wanted`` (entries matched by Id), one phrase each; [] when equal."""
    have = {rule.rule_id: rule for rule in current}
    want = {rule.rule_id: rule for rule in wanted}
    phrases = []
    for identifier, rule in want.items():
        old = have.get(identifier)
        if old is None:
            phrases.append(f"add {identifier} ({rule.describe()})")
        elif not old.same_wiring(rule):
            phrases.append(f"replace {identifier} ({_delta(old, rule)})")
    phrases += [f"remove {identifier}" for identifier in have if identifier not in want]
    if len(current) != len(have):
        phrases.append("drop duplicate entries")
    return phrases


def _delta(old: NotificationRule, new: NotificationRule) -> str:
    """The fields that differ, ``field old -> new`` each."""
    pairs = [
        ("kind", old.kind, new.kind, old.kind == new.kind),
        ("target", old.arn, new.arn, arns_match(old.arn, new.arn)),
        ("events", ",".join(old.events), ",".join(new.events), set(old.events) == set(new.events)),
        ("prefix", shown(old.prefix), shown(new.prefix), old.prefix == new.prefix),
        ("suffix", shown(old.suffix), shown(new.suffix), old.suffix == new.suffix),
    ]
    return ", ".join(f"{name} {before} -> {after}" for name, before, after, same in pairs if not same)


# -- delete ----------------------------------------------------------------------------------------


def check_names(names: Iterable[str]) -> tuple[str, ...]:
    """Service names as given to ``services delete``, each a valid service name (``PlanError`` otherwise)."""
    checked = []
    for name in names:
        try:
            checked.append(check_service_name(name))
        except ValueError as error:
            raise PlanError(f"service name {error}") from None
    return tuple(dict.fromkeys(checked))


def plan_delete(names: Sequence[str], observed: Observed) -> tuple[Change, ...]:
    """Remove the notification entries, ConfigMaps and Secrets of the services ``names``; nothing else
    (a Secret only when labelled as bucketrun's and that service's)."""
    doomed = set(check_names(names))
    changes: list[Change] = []
    found: set[str] = set()
    for bucket, view in sorted(observed.buckets.items()):
        if view.rules is None:
            continue
        ours = [rule for rule in view.rules if rule.owner in doomed]
        if not ours:
            continue
        found.update(rule.owner for rule in ours if rule.owner)
        removed = ", ".join(sorted(rule.rule_id or "" for rule in ours))
        changes.append(
            Change(
                Action.SET_NOTIFICATION,
                bucket,
                f"update notification {bucket}: remove {removed}",
                rules=merge_rules(view.rules, (), doomed),
            )
        )
    if observed.config_maps is None:
        changes.append(Change(Action.NOTE, "", "configmaps skipped: no cluster (local executor)"))
    else:
        for name, config_map in sorted(observed.config_maps.items()):
            if config_map.service in doomed:
                found.add(config_map.service)
                changes.append(Change(Action.DELETE_CONFIG_MAP, name, f"delete configmap {name}"))
    for service in sorted(doomed):
        secret = (observed.secrets or {}).get(secret_name(service))
        if secret is not None and secret.belongs_to(service):
            found.add(service)
            changes.append(Change(Action.DELETE_SECRET, secret.name, f"delete secret {secret.name}"))
    changes += [
        Change(Action.NOTE, name, f"service {name}: nothing of bucketrun's found")
        for name in sorted(doomed - found)
    ]
    return tuple(changes)


def summary(changes: Sequence[Change], *, dry_run: bool, refused: int = 0) -> str:
    """The last line of a report: how many writes (``refused`` of them refused), or that there were none."""
    writes = sum(change.is_write for change in changes)
    unchanged = sum(change.action is Action.UNCHANGED for change in changes)
    if writes == 0:
        return f"no changes ({unchanged} item(s) checked)"
    if dry_run:
        return f"dry run: {writes} change(s) planned, {unchanged} unchanged; nothing was changed"
    text = f"{writes - refused} change(s) applied"
    return text + (f", {refused} refused" if refused else "") + f", {unchanged} unchanged"
