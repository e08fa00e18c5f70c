"""bucketrun.api.openapi_document: the error answers the document declares, from canned documents."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from bucketrun.api.openapi_document import (
    NOT_FOUND,
    REFUSED_INPUT,
    TOO_LARGE,
    UNAUTHORISED,
    can_refuse,
    describe_errors,
    document_errors,
)

_422 = {
    "description": "Validation Error",
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/HTTPValidationError"}}},
}


def _document(paths: dict[str, Any]) -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "paths": paths,
        "components": {
            "schemas": {
                "HTTPValidationError": {
                    "properties": {"detail": {"items": {"$ref": "#/components/schemas/ValidationError"}}}
                },
                "ValidationError": {"type": "object"},
                "Service": {"type": "object"},
            }
        },
    }


def _named(where: str, name: str, schema: dict[str, Any], *, required: bool = True) -> dict[str, Any]:
    return {"in": where, "name": name, "required": required, "schema": schema}


SECURED = [{"HTTPBasic": []}]


def test_a_refused_body_is_400_text_not_422_json_and_the_validation_schemas_go() -> None:
    body = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Service"}}}}
    document = _document(
        {
            "/system/services": {
                "post": {
                    "requestBody": body,
                    "security": SECURED,
                    "responses": {"201": {"description": "Created"}, "422": _422},
                }
            },
        }
    )
    described = describe_errors(document)
    responses = described["paths"]["/system/services"]["post"]["responses"]
    assert set(responses) == {"201", "400", "401", "409", "413"}
    assert responses["400"]["content"] == {"text/plain": {"schema": {"type": "string"}}}
    assert responses["401"] == UNAUTHORISED
    assert responses["413"] == TOO_LARGE
    assert "text/plain" in responses["409"]["content"]
    assert set(described["components"]["schemas"]) == {"Service"}
    assert "422" in document["paths"]["/system/services"]["post"]["responses"], "the input is left as it was"


def test_a_path_parameter_may_name_nothing_and_a_plain_string_cannot_be_refused() -> None:
    name = _named("path", "name", {"type": "string"})
    document = _document(
        {
            "/system/services/{name}": {
                "get": {
                    "parameters": [name],
                    "security": SECURED,
                    "responses": {"200": {"description": "OK"}, "422": _422},
                }
            },
            "/health": {"get": {"responses": {"200": {"description": "OK"}}}},
        }
    )
    described = describe_errors(document)
    assert described["paths"]["/system/services/{name}"]["get"]["responses"] == {
        "200": {"description": "OK"},
        "401": UNAUTHORISED,
        "404": NOT_FOUND,
    }
    assert described["paths"]["/health"]["get"]["responses"] == {"200": {"description": "OK"}}


def test_a_description_the_route_gave_is_kept() -> None:
    page = _named("query", "page", {"type": "integer"}, required=False)
    document = _document(
        {
            "/system/logs/{service}": {
                "get": {
                    "parameters": [page],
                    "responses": {"400": {"description": "A page token no page gave"}},
                }
            },
        }
    )
    (answer,) = describe_errors(document)["paths"]["/system/logs/{service}"]["get"]["responses"].values()
    assert answer == {**REFUSED_INPUT, "description": "A page token no page gave"}


def test_which_parameters_can_be_refused() -> None:
    assert not can_refuse(_named("path", "name", {"type": "string"}))
    assert not can_refuse(_named("query", "page", {"type": "string", "default": ""}, required=False))
    assert can_refuse(_named("query", "page", {"type": "string"}, required=True))
    assert can_refuse(_named("query", "all", {"type": "boolean"}, required=False))
    assert can_refuse(
        _named(
            "header",
            "x-request-id",
            {"anyOf": [{"type": "string", "pattern": "^[a-z]+$"}, {"type": "null"}]},
            required=False,
        )
    )


def test_an_app_serves_the_described_document() -> None:
    app = FastAPI()

    @app.post("/items/{item}")
    async def create(item: int) -> dict[str, int]:
        return {"item": item}

    document_errors(app)
    served = app.openapi()
    assert app.openapi() is served, "generated once"
    responses = served["paths"]["/items/{item}"]["post"]["responses"]
    assert set(responses) == {"200", "400", "404"}
    assert "HTTPValidationError" not in served.get("components", {}).get("schemas", {})
