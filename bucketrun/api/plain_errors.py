"""Errors the framework raises are answered in plain text, as OSCAR's (Gin's) are, never FastAPI's JSON.

Starlette and FastAPI raise ``HTTPException`` for what no route handles: an unknown path (404), a method
a path does not serve (405), a body they cannot read (400, "There was an error parsing the body", for
bytes that are not UTF-8). Their default answer is ``{"detail": ...}`` in JSON; here it is the detail
as ``text/plain``, with the same status and headers (``Allow`` on a 405), so every error of the API has
the one shape clients and the OpenAPI document (``bucketrun.api.openapi_document``) expect.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import PlainTextResponse, Response
from starlette.exceptions import HTTPException


async def plain_http_error(_: Request, error: Exception) -> Response:
    """``error`` (an ``HTTPException``) as its status, its headers and its detail in plain text; no body
    for the statuses that may not carry one."""
    if not isinstance(error, HTTPException):  # registered for that class only
        raise error
    if error.status_code in {204, 304}:
        return Response(status_code=error.status_code, headers=error.headers)
    return PlainTextResponse(str(error.detail), status_code=error.status_code, headers=error.headers)


def register_plain_errors(app: FastAPI) -> None:
    """Answer ``app``'s ``HTTPException``s with ``plain_http_error``."""
    app.add_exception_handler(HTTPException, plain_http_error)
