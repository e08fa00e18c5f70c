"""The API resources the emulator serves: where each lives in the URL space and how it behaves."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Resource:
    """One REST resource (a plural under a group/version) and how the apiserver treats its objects."""

    group: str
    """API group; "" is the core group served under /api."""
    version: str
    plural: str
    kind: str
    namespaced: bool = True
    has_status: bool = False
    """A `/status` subresource exists: main writes keep status, status writes keep everything else."""
    tracks_generation: bool = False
    """metadata.generation starts at 1 and grows on every spec change."""

    @property
    def api_version(self) -> str:
        """The `apiVersion` of objects of this resource ("v1", "batch/v1")."""
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def list_kind(self) -> str:
        """The kind of list responses ("JobList")."""
        return f"{self.kind}List"

    @property
    def qualified(self) -> str:
        """`plural.group` as the apiserver names the resource in messages ("jobs.batch", "pods")."""
        return f"{self.plural}.{self.group}" if self.group else self.plural


JOBS = Resource("batch", "v1", "jobs", "Job", has_status=True, tracks_generation=True)
PODS = Resource("", "v1", "pods", "Pod", has_status=True, tracks_generation=True)
CONFIG_MAPS = Resource("", "v1", "configmaps", "ConfigMap")
SECRETS = Resource("", "v1", "secrets", "Secret")
EVENTS = Resource("", "v1", "events", "Event")
LEASES = Resource("coordination.k8s.io", "v1", "leases", "Lease")
NAMESPACES = Resource("", "v1", "namespaces", "Namespace", namespaced=False)

ALL_RESOURCES: tuple[Resource, ...] = (JOBS, PODS, CONFIG_MAPS, SECRETS, EVENTS, LEASES, NAMESPACES)

_BY_PATH = {(r.group, r.version, r.plural): r for r in ALL_RESOURCES}
_BY_PLURAL = {r.plural: r for r in ALL_RESOURCES}

SUBRESOURCES: dict[str, frozenset[str]] = {
    "jobs": frozenset({"status"}),
    "pods": frozenset({"status", "log"}),
}


def lookup(group: str, version: str, plural: str) -> Resource | None:
    """The resource served at /api(s)/group/version/plural, or None."""
    return _BY_PATH.get((group, version, plural))


def by_plural(plural: str) -> Resource:
    """The resource called *plural* ("jobs"); KeyError naming it if the emulator does not serve it."""
    try:
        return _BY_PLURAL[plural]
    except KeyError:
        raise KeyError(f"the emulator serves no resource called {plural!r}") from None
