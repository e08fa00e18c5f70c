"""Kubernetes API answers and client failures become bucketrun's transient or permanent errors."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import aiohttp
import pytest

from dispatcher.adapters.kube.errors import (
    already_exists,
    error_for_exception,
    error_for_status,
    retry_after_seconds,
    status_object,
)
from dispatcher.domain.errors import PermanentError, TransientError


def status(code: int, message: str = "", reason: str = "", **details) -> bytes:
    body = {"kind": "Status", "status": "Failure", "code": code, "message": message}
    if reason:
        body["reason"] = reason
    if details:
        body["details"] = details
    return json.dumps(body).encode()


@pytest.mark.parametrize(
    ("code", "kind"),
    [(500, "api-5xx"), (502, "api-5xx"), (503, "api-5xx"), (504, "api-5xx"), (429, "api-429")],
)
def test_server_errors_and_throttling_are_transient(code, kind):
    error = error_for_status(code, {}, status(code, "busy"), action="create Job ns/x")
    assert isinstance(error, TransientError)
    assert error.kind == kind
    assert str(error).startswith(f"create Job ns/x: HTTP {code} busy")


@pytest.mark.parametrize(
    ("code", "reason"),
    [
        (400, "invalid-manifest"),
        (422, "invalid-manifest"),
        (403, "forbidden"),
        (404, "api-not-found"),
        (401, "api-4xx"),
        (405, "api-4xx"),
        (413, "api-4xx"),
    ],
)
def test_client_errors_are_permanent_with_a_reason(code, reason):
    error = error_for_status(code, {}, status(code, "no"), action="create Job ns/x")
    assert isinstance(error, PermanentError)
    assert error.reason == reason


# The Status bodies below are the API server's own wording (k8s.io/apimachinery errors.NewAlreadyExists,
# NewConflict; the quota admission plugin's NewForbidden "exceeded quota").
ALREADY_EXISTS = status(409, 'jobs.batch "a" already exists', reason="AlreadyExists")
QUOTA_CONFLICT = status(
    409,
    'Operation cannot be fulfilled on resourcequotas "q": the object has been modified; '
    "please apply your changes to the latest version and try again",
    reason="Conflict",
)
QUOTA_EXCEEDED = status(
    403,
    'jobs.batch "a" is forbidden: exceeded quota: q, requested: count/jobs.batch=1, '
    "used: count/jobs.batch=2, limited: count/jobs.batch=2",
    reason="Forbidden",
)


def test_only_a_409_whose_reason_is_already_exists_means_the_name_is_taken():
    assert already_exists(409, ALREADY_EXISTS)
    assert not already_exists(409, QUOTA_CONFLICT)
    assert not already_exists(409, b"")  # no Status at all: nothing says the object exists
    assert not already_exists(409, status(409, "already exists"))  # the message is not the reason
    assert not already_exists(200, ALREADY_EXISTS)


@pytest.mark.parametrize("body", [QUOTA_CONFLICT, b"", status(409, "gone", reason="Conflict")])
def test_every_other_409_is_a_transient_conflict(body):
    error = error_for_status(409, {}, body, action="create Job ns/a")
    assert isinstance(error, TransientError)
    assert error.kind == "api-409"


def test_an_exceeded_quota_is_transient_and_other_403s_are_not():
    error = error_for_status(403, {}, QUOTA_EXCEEDED, action="create Job ns/a")
    assert isinstance(error, TransientError)
    assert error.kind == "api-quota"
    assert "exceeded quota: q" in str(error)
    refused = error_for_status(
        403, {}, status(403, 'jobs.batch is forbidden: User "x" cannot create'), action="a"
    )
    assert isinstance(refused, PermanentError)


def test_a_422_names_the_fields_even_when_the_message_does_not():
    body = status(
        422,
        'Job.batch "x" is invalid',
        causes=[{"field": "spec.template.spec.restartPolicy", "reason": "FieldValueNotSupported"}],
    )
    error = error_for_status(422, {}, body, action="create Job ns/x")
    assert "spec.template.spec.restartPolicy" in str(error)
    worded = status(422, "spec.backoffLimit: Invalid value", causes=[{"field": "spec.backoffLimit"}])
    assert str(error_for_status(422, {}, worded, action="a")).count("spec.backoffLimit") == 1


def test_retry_after_comes_from_the_header_then_the_status_details():
    body = status_object(status(429, "slow down", retryAfterSeconds=7))
    assert retry_after_seconds({"Retry-After": "3"}, body) == 3.0
    assert retry_after_seconds({"retry-after": "3"}, body) == 3.0
    assert retry_after_seconds({}, body) == 7.0
    assert retry_after_seconds({"Retry-After": "soon"}, body) == 7.0
    assert retry_after_seconds({}, {}) is None
    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
    assert retry_after_seconds({"Retry-After": "Thu, 01 Jan 2026 12:00:30 GMT"}, {}, now=now) == 30.0
    assert retry_after_seconds({"Retry-After": "-5"}, {}) == 0.0
    error = error_for_status(429, {"Retry-After": "2"}, status(429), action="a")
    assert isinstance(error, TransientError)
    assert error.retry_after == 2.0


def test_bodies_that_are_not_status_objects_still_give_a_message():
    error = error_for_status(502, {}, b"<html>Bad gateway</html>", action="list Jobs")
    assert "Bad gateway" in str(error)
    assert "(empty body)" in str(error_for_status(503, {}, b"", action="list Jobs"))
    assert status_object(b"\xff\xfe") == {}
    assert status_object(b"[1]") == {}
    long = error_for_status(500, {}, status(500, "x" * 10_000), action="a")
    assert len(str(long)) <= 2000


def test_client_side_failures_are_connection_or_timeout_errors():
    timeout = error_for_exception(TimeoutError(), action="a")
    assert timeout is not None
    assert timeout.kind == "api-timeout"
    assert error_for_exception(aiohttp.ServerTimeoutError("read"), action="a").kind == "api-timeout"
    refused = error_for_exception(aiohttp.ClientConnectionError("refused"), action="a")
    assert refused is not None
    assert refused.kind == "api-connection"
    assert error_for_exception(ConnectionResetError(), action="a").kind == "api-connection"
    assert error_for_exception(ValueError("bug"), action="a") is None
