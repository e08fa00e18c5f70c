"""What an API request is about: verb, resource, namespace, name, subresource (apiserver's RequestInfo)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from tests.k8s_emulator import resources
from tests.k8s_emulator.errors import ApiError
from tests.k8s_emulator.resources import Resource

_TRUE = frozenset({"1", "t", "T", "true", "True", "TRUE"})
# /api/v1/namespaces/{name}/{these} address the namespace itself, not a resource inside it.
_NAMESPACE_SUBRESOURCES = frozenset({"status", "finalize"})


@dataclass(frozen=True)
class RequestInfo:
    """The parsed target of an /api or /apis request."""

    verb: str
    """get, list, watch, create, update, patch, delete, deletecollection ("unknown" until resolved)."""
    resource: Resource | None = None
    namespace: str | None = None
    name: str | None = None
    subresource: str | None = None

    @property
    def resource_name(self) -> str:
        """The resource plural ("" until resolved), as faults and stats name it."""
        return self.resource.plural if self.resource else ""


def is_true(value: str | None) -> bool:
    """Go's strconv.ParseBool truthy spellings (kubernetes_asyncio sends `watch=True`)."""
    return value in _TRUE


def _verb(method: str, name: str | None, query: Mapping[str, str]) -> str:
    if method in ("GET", "HEAD"):
        if name:
            return "get"
        return "watch" if is_true(query.get("watch")) else "list"
    if method == "POST":
        return "create"
    if method == "PUT":
        return "update"
    if method == "PATCH":
        return "patch"
    if method == "DELETE":
        return "delete" if name else "deletecollection"
    raise ApiError(405, f"the server does not allow this method on the requested resource: {method}")


def _not_found(path: str) -> ApiError:
    return ApiError(404, f"the server could not find the requested resource ({path})")


def _split_prefix(parts: list[str]) -> tuple[str, str, list[str]] | None:
    """(group, version, rest) of a resource path; None for a discovery path (/api, /api/v1, /apis/g/v)."""
    if parts[0] == "api":
        return ("", parts[1], parts[2:]) if len(parts) > 2 else None
    return (parts[1], parts[2], parts[3:]) if len(parts) > 3 else None


def _locate(rest: list[str], namespaced: bool) -> tuple[str | None, str | None, str | None]:
    """(namespace, name, subresource) from the path after group/version."""
    namespace: str | None = None
    if rest[0] == "namespaces" and len(rest) > 1:
        namespace = rest[1]
        if len(rest) > 2 and rest[2] not in _NAMESPACE_SUBRESOURCES:
            rest = rest[2:]
    subresource = rest[2] if len(rest) > 2 else None
    if not namespaced:
        # /api/v1/namespaces/{name}[/status]: the "namespace" read above is the object's own name.
        return None, namespace if rest[0] == "namespaces" else None, subresource
    return namespace, rest[1] if len(rest) > 1 else None, subresource


def resolve(method: str, path: str, query: Mapping[str, str]) -> RequestInfo:
    """Parse /api/v1/... or /apis/group/version/...; 404 for paths the emulator does not serve."""
    parts = [p for p in path.split("/") if p]
    if not parts or parts[0] not in ("api", "apis"):
        raise _not_found(path)
    prefix = _split_prefix(parts)
    if prefix is None:  # discovery documents: no client of the emulator reads them
        raise _not_found(path)
    group, version, rest = prefix
    namespaced_path = rest[0] == "namespaces" and len(rest) > 2 and rest[2] not in _NAMESPACE_SUBRESOURCES
    plural = rest[2] if namespaced_path else rest[0]
    resource = resources.lookup(group, version, plural)
    if resource is None or len(rest) - (2 if namespaced_path else 0) > 3:
        raise _not_found(path)
    namespace, name, subresource = _locate(rest, resource.namespaced)
    if subresource is not None and subresource not in resources.SUBRESOURCES.get(
        resource.plural, frozenset()
    ):
        raise _not_found(path)
    verb = _verb(method, name, query)
    if subresource == "log" and verb != "get":
        raise ApiError(405, f"the server does not allow this method on the requested resource: {method} log")
    return RequestInfo(verb, resource, namespace, name, subresource)
