"""What ``bucketrun services list`` reports: the services found in the store and the cluster, and, given
FDL, whether each one's wiring is in place or has drifted. Pure: it reads ``Observed`` and ``Desired``.
Of a service's Secret it reports whether it exists and matches the FDL, never what it holds."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from bucketrun.admin.plan import Desired, Observed, describe_difference
from dispatcher.adapters.s3.notifications import NotificationRule
from dispatcher.domain import constants as c
from dispatcher.rendering.secrets import ServiceSecret, secret_name


@dataclass(frozen=True, slots=True)
class ServiceStatus:
    """One service as found, compared with its definition when one was given."""

    name: str
    in_fdl: bool | None
    """Whether the given FDL defines it; None when no FDL was given."""
    buckets: tuple[str, ...]
    """Buckets holding its notification entries."""
    entries: int
    """Its notification entries, over all buckets."""
    config_maps: tuple[str, ...]
    """Its ConfigMaps (one per version of its script)."""
    notifications: str
    """``wired``, ``drifted``, ``missing`` or ``not needed`` against the FDL; else ``present``/``none``."""
    config_map: str
    """``present``, ``drifted``, ``outdated`` (older versions only) or ``missing`` against the FDL; else
    ``present``/``none``; ``not checked`` without a cluster."""
    drift: tuple[str, ...] = ()
    """What ``services apply`` would change in its notifications."""
    secret: str = "not checked"  # noqa: S105 - a state, not a credential
    """Its Secret (``environment.secrets``): ``present`` or ``none``; against the FDL ``present``,
    ``drifted`` (other values), ``missing``, ``not needed`` or ``left over`` (the FDL has no secrets
    any more); ``not checked`` without a cluster. Never a value."""

    def line(self) -> str:
        """``name: notifications wired (2 entries), configmap present, buckets photos`` (plus
        ``, secret present`` and the like when the service has or needs one)."""
        notifications = self.notifications + (f" ({self.entries} entries)" if self.entries else "")
        secret = "" if self.secret in _QUIET_SECRET_STATES else f", secret {self.secret}"
        text = (
            f"{self.name}: notifications {notifications}, configmap {self.config_map}{secret}, "
            f"buckets {', '.join(self.buckets) or '-'}"
        )
        if self.in_fdl is False:
            text += " (not in the given FDL)"
        return "\n".join([text, *(f"  drift: {item}" for item in self.drift)])

    def to_json(self) -> dict[str, Any]:
        """The status as JSON-able data."""
        return asdict(self)


_QUIET_SECRET_STATES = frozenset({"none", "not needed", "not checked"})


def _ours(observed: Observed, name: str) -> list[tuple[str, NotificationRule]]:
    return [
        (bucket, rule)
        for bucket, view in sorted(observed.buckets.items())
        for rule in view.rules or ()
        if rule.owner == name
    ]


def _wanted(desired: Desired, name: str) -> list[tuple[str, NotificationRule]]:
    return [
        (bucket, rule)
        for bucket, rules in (desired.rules or {}).items()
        for rule in rules
        if rule.owner == name
    ]


def _notification_drift(
    current: Sequence[tuple[str, NotificationRule]], wanted: Sequence[tuple[str, NotificationRule]]
) -> list[str]:
    drift = []
    for bucket in sorted({bucket for bucket, _ in (*current, *wanted)}):
        have = [rule for where, rule in current if where == bucket]
        want = [rule for where, rule in wanted if where == bucket]
        drift += [f"{bucket}: {phrase}" for phrase in describe_difference(have, want)]
    return drift


def _config_map_state(observed: Observed, wanted: Mapping[str, Any] | None, found: tuple[str, ...]) -> str:
    if observed.config_maps is None:
        return "not checked"
    if wanted is None:
        return "present" if found else "none"
    current = observed.config_maps.get(str(wanted["metadata"]["name"]))
    if current is None:
        return "outdated" if found else "missing"
    return "present" if dict(current.data) == dict(wanted.get("data") or {}) else "drifted"


def _secret_state(observed: Observed, name: str, *, defined: bool, wanted: ServiceSecret | None) -> str:
    if observed.secrets is None:
        return "not checked"
    found = observed.secrets.get(secret_name(name))
    ours = found is not None and found.belongs_to(name)
    if not defined:
        return "present" if ours else "none"
    if wanted is None:
        return "left over" if ours else "not needed"
    if found is None:
        return "missing"
    return "present" if ours and wanted.same_values(found.data) else "drifted"


def service_names(observed: Observed, desired: Desired | None) -> set[str]:
    """The services with bucketrun notification entries or ConfigMaps, plus every defined one."""
    return (
        {rule.owner for view in observed.buckets.values() for rule in view.rules or () if rule.owner}
        | {view.service for view in (observed.config_maps or {}).values() if view.service}
        | (set(desired.services) if desired is not None else set())
    )


def inventory(observed: Observed, desired: Desired | None) -> tuple[ServiceStatus, ...]:
    """Every service with bucketrun notification entries or ConfigMaps, plus every defined one."""
    config_maps = observed.config_maps or {}
    defined = set(desired.services) if desired is not None else set()
    wanted_maps = {
        str(document["metadata"]["labels"][c.LABEL_SERVICE]): document
        for document in (desired.config_maps or () if desired is not None else ())
    }
    wanted_secrets = {secret.service: secret for secret in (desired.secrets if desired is not None else ())}
    found = []
    for name in sorted(service_names(observed, desired)):
        current = _ours(observed, name)
        maps = tuple(sorted(view.name for view in config_maps.values() if view.service == name))
        drift: list[str] = []
        if name in defined and desired is not None:
            wanted = _wanted(desired, name)
            drift = _notification_drift(current, wanted)
            if not wanted and not current:
                state = "not needed"
            elif not drift:
                state = "wired"
            else:
                state = "missing" if not current else "drifted"
        else:
            state = "present" if current else "none"
        config_map = _config_map_state(observed, wanted_maps.get(name), maps)
        found.append(
            ServiceStatus(
                name=name,
                in_fdl=(name in defined) if desired is not None else None,
                buckets=tuple(sorted({bucket for bucket, _ in current})),
                entries=len(current),
                config_maps=maps,
                notifications=state,
                config_map=config_map,
                drift=tuple(drift),
                secret=_secret_state(
                    observed, name, defined=name in defined, wanted=wanted_secrets.get(name)
                ),
            )
        )
    return tuple(found)
