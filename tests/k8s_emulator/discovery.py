"""Discovery documents (/version, /api, /apis and the per-group-version resource lists), from the registry."""

from __future__ import annotations

from typing import Any

from tests.k8s_emulator import resources
from tests.k8s_emulator.errors import ApiError

KUBERNETES_MINOR = "33"
_VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]


def version_info() -> dict[str, Any]:
    """The /version document (a Kubernetes 1.33 server that says it is the emulator)."""
    return {
        "major": "1",
        "minor": KUBERNETES_MINOR,
        "gitVersion": f"v1.{KUBERNETES_MINOR}.0-bucketrun-emulator",
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2026-01-01T00:00:00Z",
        "goVersion": "go1.24",
        "compiler": "gc",
        "platform": "linux/amd64",
    }


def _resource_list(group: str, version: str) -> dict[str, Any]:
    entries: list[dict[str, Any]] = []
    for resource in resources.ALL_RESOURCES:
        if (resource.group, resource.version) != (group, version):
            continue
        entries.append(
            {
                "name": resource.plural,
                "singularName": resource.kind.lower(),
                "namespaced": resource.namespaced,
                "kind": resource.kind,
                "verbs": _VERBS,
                **({"shortNames": list(resource.short_names)} if resource.short_names else {}),
            }
        )
        for sub in sorted(resources.SUBRESOURCES.get(resource.plural, ())):
            entries.append(
                {
                    "name": f"{resource.plural}/{sub}",
                    "singularName": "",
                    "namespaced": resource.namespaced,
                    "kind": resource.kind if sub == "status" else "Pod",
                    "verbs": ["get", "patch", "update"] if sub == "status" else ["get"],
                }
            )
    group_version = f"{group}/{version}" if group else version
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": group_version,
        "resources": entries,
    }


def _group(group: str, versions: list[str]) -> dict[str, Any]:
    listed = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
    return {"name": group, "versions": listed, "preferredVersion": listed[0]}


def document(path: str) -> dict[str, Any]:
    """The discovery document served at *path* (/api, /api/v1, /apis, /apis/g, /apis/g/v); 404 otherwise."""
    parts = [p for p in path.split("/") if p]
    groups = resources.group_versions()
    if parts == ["api"]:
        return {
            "kind": "APIVersions",
            "versions": groups[""],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}],
        }
    if len(parts) == 2 and parts[0] == "api" and parts[1] in groups[""]:
        return _resource_list("", parts[1])
    if parts == ["apis"]:
        return {
            "kind": "APIGroupList",
            "apiVersion": "v1",
            "groups": [_group(g, v) for g, v in groups.items() if g],
        }
    if len(parts) == 2 and parts[0] == "apis" and parts[1] in groups and parts[1]:
        return {"kind": "APIGroup", "apiVersion": "v1", **_group(parts[1], groups[parts[1]])}
    if len(parts) == 3 and parts[0] == "apis" and parts[2] in groups.get(parts[1], ()) and parts[1]:
        return _resource_list(parts[1], parts[2])
    raise ApiError(404, f"the server could not find the requested resource ({path})")
