"""The fault proxy's pure decisions, with expected values written out from the API server's RequestInfo
rules (k8s.io/apiserver endpoints/request) and its watch encoding, not computed by the proxy's code."""

from __future__ import annotations

import json

import pytest

from tests.backends.fault_proxy_requests import (
    ProxyRequest,
    bearer_token,
    bookmark_line,
    error_code,
    event_mark,
    forwarded_headers,
    is_bookmark,
    known_kind,
    parse_request,
    split_lines,
)
from tests.backends.fault_proxy_watch import Relay, WatchKnobs, WatchStream


@pytest.mark.parametrize(
    ("method", "path", "query", "expected"),
    [
        ("POST", "/apis/batch/v1/namespaces/ns1/jobs", {}, ("create", "jobs", "", "ns1", "")),
        ("GET", "/apis/batch/v1/namespaces/ns1/jobs", {}, ("list", "jobs", "", "ns1", "")),
        ("GET", "/apis/batch/v1/namespaces/ns1/jobs", {"watch": "True"}, ("watch", "jobs", "", "ns1", "")),
        ("GET", "/apis/batch/v1/namespaces/ns1/jobs", {"watch": "1"}, ("watch", "jobs", "", "ns1", "")),
        ("GET", "/apis/batch/v1/namespaces/ns1/jobs", {"watch": "false"}, ("list", "jobs", "", "ns1", "")),
        ("GET", "/apis/batch/v1/jobs", {"watch": "true"}, ("watch", "jobs", "", "", "")),
        ("GET", "/apis/batch/v1/namespaces/ns1/jobs/j1", {}, ("get", "jobs", "", "ns1", "j1")),
        ("HEAD", "/apis/batch/v1/namespaces/ns1/jobs/j1", {}, ("get", "jobs", "", "ns1", "j1")),
        (
            "PUT",
            "/apis/batch/v1/namespaces/ns1/jobs/j1/status",
            {},
            ("update", "jobs", "status", "ns1", "j1"),
        ),
        ("PATCH", "/apis/batch/v1/namespaces/ns1/jobs/j1", {}, ("patch", "jobs", "", "ns1", "j1")),
        ("DELETE", "/apis/batch/v1/namespaces/ns1/jobs/j1", {}, ("delete", "jobs", "", "ns1", "j1")),
        ("DELETE", "/apis/batch/v1/namespaces/ns1/jobs", {}, ("deletecollection", "jobs", "", "ns1", "")),
        ("GET", "/api/v1/namespaces/ns1/pods/p1/log", {}, ("get", "pods", "log", "ns1", "p1")),
        (
            "POST",
            "/api/v1/namespaces/ns1/serviceaccounts/sa/token",
            {},
            ("create", "serviceaccounts", "token", "ns1", "sa"),
        ),
        (
            "GET",
            "/apis/coordination.k8s.io/v1/namespaces/ns1/leases/l1",
            {},
            ("get", "leases", "", "ns1", "l1"),
        ),
        # cluster-scoped: the namespace objects themselves (counted outside any namespace)
        ("POST", "/api/v1/namespaces", {}, ("create", "namespaces", "", "", "")),
        ("GET", "/api/v1/namespaces/ns1", {}, ("get", "namespaces", "", "", "ns1")),
        ("DELETE", "/api/v1/namespaces/ns1", {}, ("delete", "namespaces", "", "", "ns1")),
        ("PUT", "/api/v1/namespaces/ns1/finalize", {}, ("update", "namespaces", "finalize", "", "ns1")),
        ("GET", "/api/v1/namespaces/ns1/status", {}, ("get", "namespaces", "status", "", "ns1")),
        ("GET", "/api/v1/nodes/n1", {}, ("get", "nodes", "", "", "n1")),
        # the legacy path-prefix watch, and proxy, which has no subresource
        ("GET", "/api/v1/watch/namespaces/ns1/pods", {}, ("watch", "pods", "", "ns1", "")),
        ("GET", "/api/v1/watch/namespaces/ns1/pods/p1", {}, ("watch", "pods", "", "ns1", "p1")),
        ("GET", "/api/v1/proxy/namespaces/ns1/pods/p1/extra", {}, ("proxy", "pods", "", "ns1", "p1")),
        # trailing and doubled slashes do not count
        ("GET", "/apis/batch/v1/namespaces/ns1/jobs/", {}, ("list", "jobs", "", "ns1", "")),
    ],
)
def test_requests_read_as_the_api_server_reads_them(method, path, query, expected):
    info = parse_request(method, path, query)
    assert (info.verb, info.resource, info.subresource, info.namespace, info.name) == expected
    assert info.counted


@pytest.mark.parametrize("path", ["/api", "/api/", "/apis", "/api/v1", "/apis/batch", "/apis/batch/v1"])
def test_discovery_paths(path):
    assert parse_request("GET", path, {}) == ProxyRequest("discovery")


@pytest.mark.parametrize("path", ["/version", "/healthz", "/readyz", "/openapi/v2", "/", "/metrics"])
def test_paths_outside_the_api_are_not_counted(path):
    info = parse_request("GET", path, {})
    assert not info.counted
    assert not info.is_watch


def test_group_and_version_are_kept():
    info = parse_request("GET", "/apis/coordination.k8s.io/v1/namespaces/a/leases", {"watch": "true"})
    assert (info.group, info.version, info.is_watch) == ("coordination.k8s.io", "v1", True)
    assert known_kind(info) == ("coordination.k8s.io/v1", "Lease")
    assert known_kind(parse_request("GET", "/apis/example.com/v1/widgets", {})) is None


def test_hop_by_hop_headers_and_those_connection_names_are_dropped():
    headers = [
        ("Host", "127.0.0.1:1"),
        ("Connection", "keep-alive, X-Private"),
        ("X-Private", "1"),
        ("Keep-Alive", "timeout=5"),
        ("Transfer-Encoding", "chunked"),
        ("Content-Length", "12"),
        ("Authorization", "Bearer abc"),
        ("Accept", "application/json"),
        ("accept", "application/yaml"),
        ("Upgrade", "h2c"),
    ]
    assert forwarded_headers(headers) == [
        ("Authorization", "Bearer abc"),
        ("Accept", "application/json"),
        ("accept", "application/yaml"),
    ]
    assert forwarded_headers(headers, drop=["authorization"]) == [
        ("Accept", "application/json"),
        ("accept", "application/yaml"),
    ]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("Bearer abc", True),
        ("bearer abc", True),
        ("  Bearer   abc ", True),
        ("Bearer ", False),
        ("Basic abc", False),
        ("", False),
    ],
)
def test_bearer_token(value, expected):
    assert bearer_token({"Authorization": value} if value else {}) is expected


def test_split_lines_keeps_the_incomplete_tail():
    assert split_lines(b"") == ([], b"")
    assert split_lines(b'{"a":1}') == ([], b'{"a":1}')
    assert split_lines(b'{"a":1}\n{"b"') == ([b'{"a":1}\n'], b'{"b"')
    assert split_lines(b"1\n2\n") == ([b"1\n", b"2\n"], b"")


def test_bookmark_lines():
    line = bookmark_line("batch/v1", "Job", "42")
    assert line.endswith(b"\n")
    assert json.loads(line) == {
        "type": "BOOKMARK",
        "object": {"kind": "Job", "apiVersion": "batch/v1", "metadata": {"resourceVersion": "42"}},
    }
    assert is_bookmark(line)
    assert not is_bookmark(b'{"type":"ADDED","object":{"kind":"Job"}}\n')


def _event(kind: str, rv: str, event_type: str = "ADDED", annotations: dict[str, str] | None = None) -> bytes:
    metadata: dict[str, object] = {"name": "x", "resourceVersion": rv}
    if annotations:
        metadata["annotations"] = annotations
    obj = {"kind": kind, "apiVersion": "batch/v1", "metadata": metadata}
    return json.dumps({"type": event_type, "object": obj}).encode() + b"\n"


def test_event_marks():
    mark = event_mark(_event("Job", "7", "MODIFIED"))
    assert mark is not None
    assert (mark.type, mark.api_version, mark.kind, mark.resource_version) == (
        "MODIFIED",
        "batch/v1",
        "Job",
        "7",
    )
    assert event_mark(b"not json\n") is None
    assert event_mark(b"[1, 2]\n") is None
    end = event_mark(_event("Job", "9", "BOOKMARK", {"k8s.io/initial-events-end": "true"}))
    assert end is not None
    assert end.initial_events_end


# As kube-apiserver writes the answer to a watch at a resourceVersion its watch cache no longer holds:
# one line, the type first, then the Status with its code.
EXPIRED_LINE = (
    b'{"type":"ERROR","object":{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure",'
    b'"message":"too old resource version: 4 (3210)","reason":"Expired","code":410}}\n'
)


def test_error_codes_of_watch_lines():
    assert error_code(EXPIRED_LINE) == 410
    assert error_code(b'{"type":"ERROR","object":{"kind":"Status","code":500}}\n') == 500
    assert error_code(b'{"type":"ERROR","object":{"kind":"Status"}}\n') == 0  # no code: still an error
    assert error_code(b'{"type":"ERROR" broken\n') == 0
    assert error_code(_event("Job", "7", "MODIFIED")) is None
    assert error_code(bookmark_line("batch/v1", "Job", "8")) is None
    # A Job whose name or data spells an ERROR event is still a MODIFIED event.
    assert error_code(_event("Job", "9", "MODIFIED", {"x": '{"type":"ERROR"'})) is None


class _Written:
    """A stand-in for the client's response: what was written to it."""

    def __init__(self) -> None:
        self.body = b""

    async def write(self, data: bytes) -> None:
        self.body += data


async def test_the_relay_counts_the_error_events_it_passes_on_by_code():
    response = _Written()
    relay = Relay(_stream(rv="1"), upstream=None, response=response, knobs=WatchKnobs())  # type: ignore[arg-type]
    # An event, then the 410 split across two reads: counted once, when its line is complete.
    assert not await relay._relay(_event("Job", "2") + EXPIRED_LINE[:30])
    assert relay.error_events == {}
    assert not await relay._relay(EXPIRED_LINE[30:])
    assert relay.error_events == {410: 1}
    assert response.body == _event("Job", "2") + EXPIRED_LINE


def _stream(path: str = "/apis/batch/v1/namespaces/a/jobs", rv: str = "", **kwargs: bool) -> WatchStream:
    return WatchStream(parse_request("GET", path, {"watch": "true"}), True, rv, **kwargs)


def test_synthesized_bookmarks_carry_the_last_relayed_position():
    stream = _stream(rv="10")
    assert json.loads(stream.bookmark() or b"null")["object"]["metadata"]["resourceVersion"] == "10"
    stream.note([_event("Job", "11"), _event("Job", "12")])
    assert json.loads(stream.bookmark() or b"null")["object"] == {
        "kind": "Job",
        "apiVersion": "batch/v1",
        "metadata": {"resourceVersion": "12"},
    }
    status = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "code": 410}
    stream.note([json.dumps({"type": "ERROR", "object": status}).encode() + b"\n"])
    assert b'"12"' in (stream.bookmark() or b"")


def test_no_bookmark_without_a_known_position_or_kind():
    assert _stream(rv="").bookmark() is None  # a watch from "now": no position until the first event
    unknown = _stream("/apis/example.com/v1/namespaces/a/widgets", rv="5")
    assert unknown.bookmark() is None
    unknown.note([_event("Widget", "6")])
    assert unknown.bookmark() is not None


def test_no_bookmark_before_a_streaming_list_ends_its_initial_events():
    stream = _stream(rv="", awaiting_initial_end=True)
    stream.note([_event("Job", "3")])
    assert stream.bookmark() is None
    stream.note([_event("Job", "4", "BOOKMARK", {"k8s.io/initial-events-end": "true"})])
    assert stream.bookmark() is not None


def test_drop_releases_a_stalled_stream():
    stream = _stream(rv="1")
    stream.stall()
    assert stream.stalled
    assert stream.signal.is_set()
    assert not stream.release.is_set()
    stream.drop()
    assert stream.dropped
    assert stream.release.is_set()


def test_watch_knobs_start_with_no_faults():
    knobs = WatchKnobs()
    assert (
        knobs.drop_after_events,
        knobs.drop_after_seconds,
        knobs.bookmark_interval,
        knobs.expire_next,
    ) == (
        None,
        None,
        None,
        0,
    )
