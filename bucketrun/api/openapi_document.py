"""The OpenAPI document says what the API answers, errors included, not what FastAPI assumes.

FastAPI lists a 422 JSON body for every operation that reads input; this API answers a refused body or
parameter 400 in plain text (OSCAR's way: ``The service specification is not valid: ...``), a missing or
wrong credential 401 with no body, a body over the limit 413 in plain text, and some operations 404 or
409. ``describe_errors`` rewrites a generated document to that; ``document_errors`` makes an app serve
it. Schemathesis (tests/integration/test_api_schema.py) checks every answer against the result, so a
code missing here, or one declared here the app never gives the shape of, fails there.

Invariant: the rules are derived from each operation (its inputs, its security, its path parameters),
so a route added later is described without an entry here; ``ROUTE_ERRORS`` holds only the codes no
operation's shape implies.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Mapping
from typing import Any, Final

from fastapi import FastAPI

OpenApi = dict[str, Any]

_TEXT: Final = {"text/plain": {"schema": {"type": "string"}}}
REFUSED_INPUT: Final = {
    "description": "A body or parameter refused, and why, in plain text",
    "content": _TEXT,
}
UNAUTHORISED: Final = {
    "description": "No credential, or a wrong one; no body",
    "headers": {"WWW-Authenticate": {"description": "The scheme to use", "schema": {"type": "string"}}},
}
NOT_FOUND: Final = {"description": "No such service (or Job); no body"}
TOO_LARGE: Final = {"description": "A body over BUCKETRUN_API__MAX_BODY_BYTES", "content": _TEXT}
EXISTS: Final = {"description": "A service of that name exists", "content": _TEXT}

ROUTE_ERRORS: Final[Mapping[tuple[str, str], Mapping[str, Mapping[str, Any]]]] = {
    ("post", "/system/services"): {"409": EXISTS},
    ("put", "/system/services"): {"404": NOT_FOUND},  # an update of a service the API does not have
}
"""Codes that only the route itself explains, by (method, path)."""

_VALIDATION_SCHEMAS: Final = ("HTTPValidationError", "ValidationError")


_CONSTRAINTS: Final = frozenset({"pattern", "minLength", "maxLength", "enum", "const", "format"})


def can_refuse(parameter: Mapping[str, Any]) -> bool:
    """Whether a request can get a 400 for ``parameter``: a required one outside the path (a path
    without it matches no route), or one whose value must be more than any string."""
    schema = parameter.get("schema", {})
    options = schema.get("anyOf", [schema])
    constrained = any(option.get("type") != "string" or _CONSTRAINTS & option.keys() for option in options)
    return constrained or bool(parameter.get("required") and parameter.get("in") != "path")


def operation_errors(method: str, path: str, operation: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    """The error answers ``operation`` (``method`` on ``path``) can give, by status code."""
    errors: dict[str, Mapping[str, Any]] = {}
    if "requestBody" in operation or any(map(can_refuse, operation.get("parameters", ()))):
        errors["400"] = REFUSED_INPUT
    if operation.get("security"):
        errors["401"] = UNAUTHORISED
    if any(parameter.get("in") == "path" for parameter in operation.get("parameters", ())):
        errors["404"] = NOT_FOUND
    if "requestBody" in operation:
        errors["413"] = TOO_LARGE
    errors.update(ROUTE_ERRORS.get((method, path), {}))
    return errors


def describe_errors(document: Mapping[str, Any]) -> OpenApi:
    """A copy of ``document`` without FastAPI's 422 answers and with the API's own error answers (a
    description a route gave itself is kept; its content is what the app sends)."""
    described: OpenApi = copy.deepcopy(dict(document))
    for path, operations in described.get("paths", {}).items():
        for method, operation in operations.items():
            responses = operation.setdefault("responses", {})
            responses.pop("422", None)
            for code, answer in operation_errors(method, path, operation).items():
                given = responses.get(code, {})
                responses[code] = {**answer, "description": given.get("description") or answer["description"]}
    schemas = described.get("components", {}).get("schemas", {})
    others = {name: schema for name, schema in schemas.items() if name not in _VALIDATION_SCHEMAS}
    still_used = json.dumps([described.get("paths"), others])
    for name in _VALIDATION_SCHEMAS:
        if f'"#/components/schemas/{name}"' not in still_used:
            schemas.pop(name, None)
    return described


def document_errors(app: FastAPI) -> None:
    """Make ``app`` serve (``/openapi.json``) its generated document as ``describe_errors`` rewrites it."""
    generate: Callable[[], OpenApi] = app.openapi
    described: list[OpenApi] = []  # generated once, at the first request for it, as FastAPI does

    def openapi() -> OpenApi:
        if not described:
            described.append(describe_errors(generate()))
        app.openapi_schema = described[0]
        return described[0]

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented way to change the document
