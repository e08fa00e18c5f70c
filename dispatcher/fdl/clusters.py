"""One definition per service name, when FDLs define a service for several OSCAR clusters.

An oscar-cli FDL files each service under a cluster id (``functions: oscar: [{<cluster-id>: {...}}]``),
and one file may define the same service for several clusters (an edge and a cloud variant, say).
oscar-cli sends each entry to the cluster it is filed under; ``oscar-cli apply --cluster ID`` sends every
entry to cluster ``ID`` instead. bucketrun is one cluster, so the choice it needs is which of a service's
definitions it runs. With a cluster chosen (``--cluster ID``, ``BUCKETRUN_SERVICES__CLUSTER``):

* every service defined once is kept, whatever cluster it is filed under (as ``apply --cluster``
  keeps every entry);
* of a service defined for several clusters, the definition filed under the chosen one is kept and the
  others are set aside before they are validated (their problems, and fields bucketrun does not
  implement, cannot block the chosen one). oscar-cli with ``--cluster`` would apply them all, one after
  the other, so the last in the file would win: a choice by file order that bucketrun does not copy;
* a service defined for several clusters, none of them the chosen one, is an error naming them.

Without a choice, a service defined for several clusters is an error naming the cluster ids and the
option and setting that choose. Two definitions filed under the same cluster id (or none) stay the
plain "defined twice" error. Files are one space: the same rules hold across the files of a directory.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from dispatcher.fdl.errors import ServiceProblem
from dispatcher.fdl.model import ServiceDefinition

CHOOSE_SETTING: Final = "--cluster ID or BUCKETRUN_SERVICES__CLUSTER"
CHOOSE_CLUSTER: Final = (
    "choose its cluster with --cluster ID (bucketrun services, render, events inspect) or the setting "
    "BUCKETRUN_SERVICES__CLUSTER"
)


@dataclass(frozen=True, slots=True)
class Entry:
    """One service entry of an FDL, as found before validation."""

    source: str
    cluster_id: str | None
    name: object
    """The entry's ``name`` as written (not yet validated: anything YAML can hold)."""


def set_aside(entries: Sequence[Entry], cluster: str | None) -> frozenset[int]:
    """Positions in ``entries`` of the definitions the choice of ``cluster`` leaves out (module docstring)."""
    if cluster is None:
        return frozenset()
    chosen = {
        name for name, group in _by_name(entries).items() if cluster in {entry.cluster_id for entry in group}
    }
    return frozenset(
        position
        for position, entry in enumerate(entries)
        if entry.name in chosen and entry.cluster_id != cluster
    )


def set_aside_note(entry: Entry, cluster: str) -> str:
    """What loading says about a definition the choice of ``cluster`` set aside."""
    return (
        f"{entry.source}: service {entry.name!r} for cluster {entry.cluster_id!r} set aside: "
        f"the definition for cluster {cluster!r} is used"
    )


def cluster_problems(entries: Sequence[Entry], cluster: str | None) -> list[ServiceProblem]:
    """A problem per service name defined for several clusters that ``cluster`` does not choose among.

    Found on the entries as written, so it is reported even when the definitions have problems of their
    own (which are reported too).
    """
    problems: list[ServiceProblem] = []
    for name, group in _by_name(entries).items():
        clusters = {entry.cluster_id for entry in group}
        if len(clusters) > 1 and (cluster is None or cluster not in clusters):
            problems.append(_several_clusters(name, group, cluster))
    return problems


def name_problems(services: Sequence[ServiceDefinition]) -> list[ServiceProblem]:
    """A problem per extra definition of a name defined twice for one cluster (``cluster_problems`` reports
    the names defined for several)."""
    by_name: dict[str, list[ServiceDefinition]] = {}
    for service in services:
        by_name.setdefault(service.name, []).append(service)
    problems: list[ServiceProblem] = []
    for name, definitions in by_name.items():
        if len({service.cluster_id for service in definitions}) != 1:
            continue
        first = definitions[0]
        problems.extend(
            ServiceProblem(
                service.source,
                name,
                "name",
                f"service name {name!r} is defined twice: in {_place(first)} and in {_place(service)}",
            )
            for service in definitions[1:]
        )
    return problems


def _by_name(entries: Sequence[Entry]) -> dict[str, list[Entry]]:
    groups: dict[str, list[Entry]] = {}
    for entry in entries:
        if isinstance(entry.name, str):
            groups.setdefault(entry.name, []).append(entry)
    return groups


def _several_clusters(name: str, group: Sequence[Entry], cluster: str | None) -> ServiceProblem:
    found = ", ".join(
        f"{entry.cluster_id!r} in {entry.source}" if entry.cluster_id else f"no cluster id in {entry.source}"
        for entry in group
    )
    if cluster is None:
        choice = f"bucketrun runs one: {CHOOSE_CLUSTER}"
    else:
        choice = f"none is for the chosen cluster {cluster!r} ({CHOOSE_SETTING}): choose one of those"
    return ServiceProblem(
        group[-1].source,
        name,
        "name",
        f"service name {name!r} is defined for several OSCAR clusters: {found}; {choice}",
    )


def _place(service: ServiceDefinition) -> str:
    cluster = f" (cluster {service.cluster_id!r})" if service.cluster_id else ""
    return f"{service.source}{cluster}"
