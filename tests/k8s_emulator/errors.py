"""API errors as the apiserver reports them: a `Status` object with code, reason, message and details."""

from __future__ import annotations

from typing import Any

from tests.k8s_emulator.resources import Resource

# The reason the apiserver puts in a Status for each HTTP code it answers with.
REASONS: dict[int, str] = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    406: "NotAcceptable",
    409: "Conflict",
    410: "Expired",
    415: "UnsupportedMediaType",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
    504: "Timeout",
}


def status_body(
    code: int, reason: str, message: str, details: dict[str, Any] | None = None
) -> dict[str, Any]:
    """A failure `Status` object (what kubernetes_asyncio puts in `ApiException.body`)."""
    body: dict[str, Any] = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
    if details:
        body["details"] = details
    return body


class ApiError(Exception):
    """An API request failed; the server answers with `code` and the Status `body`."""

    def __init__(
        self,
        code: int,
        message: str,
        *,
        reason: str | None = None,
        details: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason or REASONS.get(code, "Unknown")
        self.message = message
        self.details = details
        self.headers = headers or {}

    @property
    def body(self) -> dict[str, Any]:
        """The Status object for this error."""
        return status_body(self.code, self.reason, self.message, self.details)


def _details(resource: Resource, name: str) -> dict[str, Any]:
    details: dict[str, Any] = {"name": name, "kind": resource.plural}
    if resource.group:
        details["group"] = resource.group
    return details


def not_found(resource: Resource, name: str) -> ApiError:
    """404 for a missing object, worded like the apiserver."""
    return ApiError(404, f'{resource.qualified} "{name}" not found', details=_details(resource, name))


def already_exists(resource: Resource, name: str) -> ApiError:
    """409 AlreadyExists for a create whose name is taken."""
    return ApiError(
        409,
        f'{resource.qualified} "{name}" already exists',
        reason="AlreadyExists",
        details=_details(resource, name),
    )


def conflict(resource: Resource, name: str) -> ApiError:
    """409 Conflict for a write carrying a stale resourceVersion."""
    return ApiError(
        409,
        f'Operation cannot be fulfilled on {resource.qualified} "{name}": the object has been modified; '
        "please apply your changes to the latest version and try again",
        details=_details(resource, name),
    )


def precondition_failed(resource: Resource, name: str, what: str, wanted: str, actual: str) -> ApiError:
    """409 Conflict for a delete whose uid/resourceVersion precondition does not hold."""
    return ApiError(
        409,
        f"Precondition failed: {what} in precondition: {wanted}, {what} in object meta: {actual}",
        details=_details(resource, name),
    )


def invalid(resource: Resource, name: str, causes: list[dict[str, str]]) -> ApiError:
    """422 Invalid listing every failed field (causes: field, reason, message)."""
    summary = ", ".join(f"{c['field']}: {c['message']}" for c in causes)
    kind = f"{resource.kind}.{resource.group}" if resource.group else resource.kind
    details = _details(resource, name)
    details["causes"] = causes
    return ApiError(422, f'{kind} "{name}" is invalid: {summary}', details=details)


def bad_request(message: str) -> ApiError:
    """400 BadRequest with the apiserver's wording in *message*."""
    return ApiError(400, message)


def expired(message: str) -> ApiError:
    """410 Expired (a compacted resourceVersion or continue token)."""
    return ApiError(410, message, reason="Expired")
