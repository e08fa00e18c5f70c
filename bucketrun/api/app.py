"""The OSCAR-compatible routes, with OSCAR's paths, methods, status codes and bodies.

Errors are plain text as OSCAR's handlers write them (oscar-cli prints the body of any status outside
200 to 204 except 401, 404 and 502, which it words itself). Every route but ``/health`` needs HTTP basic
auth or an OIDC bearer token (`bucketrun.api.auth`); a wrong credential is a bare 401. Every request is
counted by its route template (`bucketrun.api.metrics`).
"""

from __future__ import annotations

import platform
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Final

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from bucketrun.api.auth import Authenticator, UnauthorisedError
from bucketrun.api.catalog import (
    ApplyFailedError,
    InvalidServiceError,
    ServiceCatalog,
    ServiceExistsError,
    UnknownServiceError,
)
from bucketrun.api.invocations import register_invocations
from bucketrun.api.logs import logs_router
from bucketrun.api.metrics import instrument
from bucketrun.api.openapi_document import document_errors
from bucketrun.api.oscar_types import ClusterConfig, ConfigForUser, Info, MinIOProvider, Service
from bucketrun.api.plain_errors import register_plain_errors
from bucketrun.api.services_source import services_source
from bucketrun.api.settings import ApiSettings
from bucketrun.api.store_user import StoreUser
from dispatcher import __version__
from dispatcher.domain.errors import BucketrunError
from dispatcher.runtime.settings import Settings

_NOT_VALID: Final = "The service specification is not valid: "
_GO_ARCH: Final = {"x86_64": "amd64", "aarch64": "arm64", "arm64": "arm64"}


def minio_provider(settings: Settings, keys: tuple[str, str] = ("", "")) -> MinIOProvider:
    """How oscar-cli and oscar-python reach the store: the endpoint and the API users' ``keys`` (access,
    secret; ``StoreUser``), never the admin's."""
    storage = settings.storage
    scheme = "https" if storage.secure else "http"
    return MinIOProvider(
        endpoint=f"{scheme}://{storage.endpoint}",
        verify=storage.secure,
        access_key=keys[0],
        secret_key=keys[1],
        region=storage.region,
    )


def with_storage_providers(definition: dict[str, Any]) -> dict[str, Any]:
    """A kept definition as OSCAR shows a service: ``storage_providers`` always there (oscar-python's
    storage client indexes it, then takes ``minio.default`` from ``/system/config``)."""
    return {**definition, "storage_providers": definition.get("storage_providers") or {}}


def cluster_config(settings: Settings, keys: tuple[str, str] = ("", "")) -> ConfigForUser:
    """The body of ``GET /system/config``, with the API users' store ``keys``."""
    namespace = settings.cluster.namespace
    return ConfigForUser(
        config=ClusterConfig(name="bucketrun", namespace=namespace, services_namespace=namespace),
        minio_provider=minio_provider(settings, keys),
    )


def system_info() -> Info:
    """The body of ``GET /system/info``."""
    machine = platform.machine().lower()
    return Info(
        version=__version__, git_commit="", architecture=_GO_ARCH.get(machine, machine), kubernetes_version=""
    )


def not_valid(error: RequestValidationError) -> str:
    """A refused body in OSCAR's words: ``The service specification is not valid: <field>: <why>``."""
    problems = []
    for problem in error.errors():
        place = ".".join(str(part) for part in problem["loc"][1:]) or "body"
        why = problem["msg"]
        if problem["type"] == "json_invalid" and (detail := problem.get("ctx", {}).get("error")):
            why = f"{why}: {detail}"
        problems.append(f"{place}: {why}")
    return _NOT_VALID + "; ".join(problems)


def create_app(settings: Settings, api: ApiSettings, catalog: ServiceCatalog | None = None) -> FastAPI:
    """The application; ``catalog`` defaults to one over ``settings``' store and cluster."""
    store_user = StoreUser(settings, api)  # raises StoreUserError before anything listens
    if catalog is None:
        source = services_source(settings.cluster, api.services_dir, api.services_secret)
        catalog = ServiceCatalog(settings, api.definitions_bucket, on_change=store_user.grant, source=source)
    services = catalog

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await store_user.start(services.list)
        yield
        await store_user.stop()

    app = FastAPI(
        lifespan=lifespan,
        title="bucketrun (OSCAR-compatible API)",
        version=__version__,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,  # served below, behind the credential as every route but /health
        # oscar-cli sends JSON bodies without a Content-Type, and OSCAR reads them as JSON all the same.
        strict_content_type=False,
        max_body_size=api.max_body_bytes,  # 413 from the declared length or the bytes received so far
    )
    authenticator = Authenticator(api)
    auth = authenticator.dependencies()

    @app.exception_handler(RequestValidationError)
    async def refused_body(_: Request, error: RequestValidationError) -> Response:
        return PlainTextResponse(not_valid(error), status_code=400)

    @app.exception_handler(UnauthorisedError)
    async def unauthorised(_: Request, __: UnauthorisedError) -> Response:
        return Response(status_code=401, headers={"WWW-Authenticate": authenticator.challenge})

    @app.exception_handler(UnknownServiceError)
    async def unknown(_: Request, __: UnknownServiceError) -> Response:
        return Response(status_code=404)

    @app.exception_handler(InvalidServiceError)
    async def invalid(_: Request, error: InvalidServiceError) -> Response:
        return PlainTextResponse(str(error), status_code=400)

    @app.exception_handler(ServiceExistsError)
    async def exists(_: Request, error: ServiceExistsError) -> Response:
        return PlainTextResponse(f"A service with the name {error} already exists", status_code=409)

    @app.exception_handler(ApplyFailedError)
    async def failed(_: Request, error: ApplyFailedError) -> Response:
        return PlainTextResponse(str(error), status_code=500)

    @app.exception_handler(BucketrunError)
    async def backend(_: Request, error: BucketrunError) -> Response:
        return PlainTextResponse(f"error: {error}", status_code=500)

    @app.get("/health", response_class=PlainTextResponse)
    async def health() -> str:
        return "Ok"

    @app.get("/system/info", dependencies=auth)
    async def info() -> Info:
        return system_info()

    @app.get("/system/config", dependencies=auth)
    @app.get("/system/config/", dependencies=auth, include_in_schema=False)  # oscar-python's spelling
    async def config() -> ConfigForUser:
        return cluster_config(settings, store_user.keys)

    @app.get("/system/services", dependencies=auth)
    async def list_services() -> list[dict[str, Any]]:
        return [with_storage_providers(definition) for definition in await services.list()]

    @app.post("/system/services", dependencies=auth, status_code=201, response_class=Response)
    async def create_service(service: Service) -> Response:
        await services.create(service)
        return Response(status_code=201)

    @app.put("/system/services", dependencies=auth, status_code=204, response_class=Response)
    async def update_service(service: Service) -> Response:
        await services.update(service)
        return Response(status_code=204)

    @app.get("/system/services/{name}", dependencies=auth)
    async def read_service(name: str) -> JSONResponse:
        return JSONResponse(with_storage_providers(await services.get(name)))

    @app.delete("/system/services/{name}", dependencies=auth, status_code=204, response_class=Response)
    async def delete_service(name: str) -> Response:
        await services.delete(name)
        return Response(status_code=204)

    app.include_router(logs_router(settings, api, services), dependencies=auth)
    register_invocations(app, settings, api.definitions_bucket, services, authenticator)
    instrument(app)  # bucketrun_api_* by route template, served on the metrics port
    register_plain_errors(app)  # the framework's own errors (unreadable body, 404, 405) as text too
    document_errors(app)  # the answers the app gives: 400 text, not FastAPI's 422 JSON

    @app.get("/openapi.json", dependencies=auth, include_in_schema=False)
    async def openapi_document() -> JSONResponse:
        return JSONResponse(app.openapi())

    return app
