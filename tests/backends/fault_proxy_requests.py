"""The fault proxy's pure decisions: what a request is about (as the API server's RequestInfo reads it),
which headers pass through, and the watch-stream lines it reads or writes.

No I/O here: each rule is pinned by unit tests with canned inputs (tests/unit/test_fault_proxy_requests.py).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from tests.k8s_emulator import resources
from tests.k8s_emulator.errors import ApiError
from tests.k8s_emulator.requestinfo import is_true
from tests.k8s_emulator.watches import INITIAL_EVENTS_END

_VERBS_BY_METHOD = {
    "POST": "create",
    "GET": "get",
    "HEAD": "get",
    "PUT": "update",
    "PATCH": "patch",
    "DELETE": "delete",
}
# /api/v1/namespaces/{name}/{these} address the namespace itself, not a resource inside it.
_NAMESPACE_SUBRESOURCES = frozenset({"status", "finalize"})
# The API server's legacy path-prefix verbs (/api/v1/watch/pods); "proxy" takes no subresource.
_PATH_VERBS = frozenset({"watch", "proxy"})

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
"""Headers that describe one connection (RFC 9110 7.6.1), never forwarded."""
_RECOMPUTED = frozenset({"host", "content-length"})


@dataclass(frozen=True)
class ProxyRequest:
    """What one proxied request is about, under the names the control interface counts it by."""

    verb: str
    """get, list, watch, create, update, patch, delete, deletecollection; "discovery" for /api, /apis,
    /api/v1, /apis/GROUP/VERSION; "" for paths outside the API (/version, /healthz, /openapi/...)."""
    resource: str = ""
    subresource: str = ""
    namespace: str = ""
    """The namespace the target lives in; "" for cluster-scoped targets, namespace objects included
    (the API server's RequestInfo names a namespace object's own name here; the emulator's statistics,
    which tests were written against, do not)."""
    name: str = ""
    group: str = ""
    version: str = ""

    @property
    def counted(self) -> bool:
        """Whether statistics and faults apply: every /api and /apis request, as in the emulator."""
        return bool(self.verb)

    @property
    def is_watch(self) -> bool:
        """A watch: its response is a stream of events."""
        return self.verb == "watch"


def _api_prefix(parts: list[str]) -> tuple[str, str, list[str]] | None:
    """(group, version, rest) of a resource path; None for a discovery path."""
    if parts[0] == "api":
        return ("", parts[1], parts[2:]) if len(parts) > 2 else None
    return (parts[1], parts[2], parts[3:]) if len(parts) > 3 else None


def _locate(rest: list[str]) -> tuple[str, list[str]]:
    """(namespace, parts from the resource on), as the API server splits /namespaces/NS/..."""
    if rest[0] != "namespaces" or len(rest) < 2:
        return "", rest
    if len(rest) > 2 and rest[2] not in _NAMESPACE_SUBRESOURCES:
        return rest[1], rest[2:]
    return "", rest  # the namespace object itself: cluster-scoped (see ProxyRequest.namespace)


def parse_request(method: str, path: str, query: Mapping[str, str]) -> ProxyRequest:
    """Read *method* and *path* (with its *query*) the way the API server's RequestInfoFactory does."""
    parts = [part for part in path.split("/") if part]
    if not parts or parts[0] not in ("api", "apis"):
        return ProxyRequest("")
    prefix = _api_prefix(parts)
    if prefix is None:
        return ProxyRequest("discovery")
    group, version, rest = prefix
    verb = _VERBS_BY_METHOD.get(method.upper(), method.lower())
    path_verb = rest[0] in _PATH_VERBS and len(rest) > 1
    if path_verb:
        verb, rest = rest[0], rest[1:]
    namespace, rest = _locate(rest)
    resource = rest[0]
    name = rest[1] if len(rest) > 1 else ""
    subresource = rest[2] if len(rest) > 2 and verb != "proxy" else ""
    if not name and verb == "get":
        verb = "watch" if is_true(query.get("watch")) else "list"
    elif not name and verb == "delete":
        verb = "deletecollection"
    return ProxyRequest(verb, resource, subresource, namespace, name, group, version)


def forwarded_headers(
    headers: Iterable[tuple[str, str]], *, drop: Iterable[str] = ()
) -> list[tuple[str, str]]:
    """*headers* without hop-by-hop ones, Host, Content-Length (the sender recomputes both), those the
    Connection header names, and those in *drop* (case-insensitive)."""
    pairs = list(headers)
    named = {
        token.strip().lower()
        for key, value in pairs
        if key.lower() == "connection"
        for token in value.split(",")
    }
    skip = HOP_BY_HOP | _RECOMPUTED | named | {name.lower() for name in drop}
    return [(key, value) for key, value in pairs if key.lower() not in skip]


def bearer_token(headers: Mapping[str, str]) -> bool:
    """True when the request authenticates with `Authorization: Bearer ...` (case-insensitive scheme)."""
    scheme, _, token = headers.get("Authorization", "").strip().partition(" ")
    return scheme.lower() == "bearer" and bool(token.strip())


def status_json(error: ApiError) -> bytes:
    """The `Status` body the API server answers *error* with."""
    return json.dumps(error.body, separators=(",", ":")).encode()


def split_lines(buffer: bytes) -> tuple[list[bytes], bytes]:
    """Complete newline-terminated lines of *buffer* (each with its newline) and the incomplete rest."""
    end = buffer.rfind(b"\n") + 1
    if end == 0:
        return [], buffer
    return buffer[:end].splitlines(keepends=True), buffer[end:]


def is_bookmark(line: bytes) -> bool:
    """Whether a watch event line is a BOOKMARK (the API server writes `{"type":"BOOKMARK",...`)."""
    return line.lstrip().startswith(b'{"type":"BOOKMARK"')


def error_code(line: bytes) -> int | None:
    """The Status code of a watch ERROR event line (the API server writes `{"type":"ERROR",...`; 410
    when the resourceVersion asked for is gone), 0 when it names none; None for any other line."""
    if not line.lstrip().startswith(b'{"type":"ERROR"'):
        return None
    try:
        code = json.loads(line)["object"]["code"]
    except (ValueError, KeyError, TypeError):
        return 0
    return code if isinstance(code, int) else 0


@dataclass(frozen=True)
class EventMark:
    """What the fault proxy keeps of one watch event: its type and its object's identity."""

    type: str
    api_version: str
    kind: str
    resource_version: str
    """"" when the object carries none (a Status in an ERROR event)."""
    initial_events_end: bool = False


def event_mark(line: bytes) -> EventMark | None:
    """Type, apiVersion, kind and resourceVersion of one watch event line; None if it is not JSON."""
    try:
        event: Any = json.loads(line)
        obj = event.get("object") or {}
        metadata = obj.get("metadata") or {}
    except (ValueError, AttributeError):
        return None
    annotations = metadata.get("annotations") or {}
    return EventMark(
        str(event.get("type", "")),
        str(obj.get("apiVersion", "")),
        str(obj.get("kind", "")),
        str(metadata.get("resourceVersion", "")),
        annotations.get(INITIAL_EVENTS_END) == "true",
    )


def known_kind(request: ProxyRequest) -> tuple[str, str] | None:
    """(apiVersion, kind) of what *request* watches, for the resources the emulator knows; else None."""
    resource = resources.lookup(request.group, request.version, request.resource)
    return (resource.api_version, resource.kind) if resource is not None else None


def bookmark_line(api_version: str, kind: str, resource_version: str) -> bytes:
    """A BOOKMARK event as the API server writes it: the kind and the resourceVersion only."""
    obj = {"kind": kind, "apiVersion": api_version, "metadata": {"resourceVersion": resource_version}}
    return json.dumps({"type": "BOOKMARK", "object": obj}, separators=(",", ":")).encode() + b"\n"
